"""The PostgreSQL backend's own parts: the dialect translator, shared-database behaviour, health, metrics."""

from __future__ import annotations

import asyncio
import threading

import pytest

from bridge.errors import StoreError
from bridge.store import KeyOwner, open_store
from bridge.store import schema as store_schema
from bridge.store.keyfile import generate_key, write_key_file
from bridge.store.postgres import dialect
from bridge.store.schema import register_migration
from tests.core.test_store_kit import Backend
from tests.e2e.harness import CHANNELS, make_bridge
from tests.pg import running_server


def test_statements_get_placeholders_and_keep_literals() -> None:
    sql = "SELECT a FROM t WHERE b = ? AND c LIKE '50% off?' AND d IS ? AND e IS NOT ? AND f IS NOT NULL"
    assert dialect.statement(sql) == (
        "SELECT a FROM t WHERE b = %s AND c LIKE '50%% off?' AND d IS NOT DISTINCT FROM %s"
        " AND e IS DISTINCT FROM %s AND f IS NOT NULL"
    )
    assert dialect.statement("DELETE FROM temp.purge_ids") == "DELETE FROM pg_temp.purge_ids"


def test_create_table_types_ids_and_forward_references() -> None:
    out = dialect.ddl(
        "CREATE TABLE agents(\n  id INTEGER PRIMARY KEY AUTOINCREMENT,\n  name TEXT NOT NULL UNIQUE,\n"
        "  score REAL, secret BLOB, queues TEXT NOT NULL DEFAULT '[\"default\"]',\n"
        "  current_conversation_id INTEGER REFERENCES conversations(id) ON DELETE SET NULL)"
    )
    [create] = out.statements
    assert "id BIGSERIAL PRIMARY KEY" in create and "AUTOINCREMENT" not in create
    assert "score DOUBLE PRECISION" in create and "secret BYTEA" in create
    assert "'[\"default\"]'" in create and "REFERENCES" not in create
    [key] = out.foreign_keys
    assert key.statement() == (
        "ALTER TABLE agents ADD FOREIGN KEY (current_conversation_id) REFERENCES conversations(id)"
        " ON DELETE SET NULL DEFERRABLE INITIALLY IMMEDIATE"
    )
    plain = dialect.ddl("CREATE TABLE routing(agent_id INTEGER PRIMARY KEY, at REAL) WITHOUT ROWID")
    assert plain.statements == ("CREATE TABLE routing(agent_id BIGINT PRIMARY KEY, at DOUBLE PRECISION)",)
    rowid = dialect.ddl("CREATE TABLE notes(id INTEGER PRIMARY KEY, body BLOB NOT NULL)")
    assert rowid.statements == ("CREATE TABLE notes(id BIGSERIAL PRIMARY KEY, body BYTEA NOT NULL)",)
    assert dialect.ddl("PRAGMA foreign_keys = ON").statements == ()


def test_triggers_become_plpgsql_functions() -> None:
    out = dialect.ddl(
        "CREATE TRIGGER line_status AFTER UPDATE OF status ON outbox"
        " WHEN OLD.status IS NOT NEW.status AND (OLD.status = 'pending' OR NEW.status = 'pending')"
        " BEGIN UPDATE outbox SET in_line = 0 WHERE id IS NOT (SELECT MIN(id) FROM outbox WHERE status = 'pending');"
        " UPDATE outbox SET in_line = 1 WHERE id = NEW.id; END"
    )
    function, trigger = out.statements
    assert function.startswith("CREATE OR REPLACE FUNCTION line_status_fn() RETURNS trigger LANGUAGE plpgsql")
    assert "IF (OLD.status IS DISTINCT FROM NEW.status AND" in function and "IS NOT TRUE THEN RETURN NULL;" in function
    assert "WHERE id IS DISTINCT FROM (SELECT MIN(id)" in function and function.count("RETURN NULL;") == 2
    assert trigger == (
        "CREATE TRIGGER line_status AFTER UPDATE OF status ON outbox FOR EACH ROW EXECUTE FUNCTION line_status_fn()"
    )
    refuse = dialect.ddl("CREATE TRIGGER no_delete BEFORE DELETE ON log BEGIN SELECT RAISE(ABORT, 'append-only'); END;")
    assert "RAISE EXCEPTION 'append-only';" in refuse.statements[0] and "RETURN OLD;" in refuse.statements[0]
    assert dialect.ddl("DROP TRIGGER IF EXISTS no_delete").drop_trigger == ("no_delete", True)


async def test_a_plain_sqlite_migration_runs_on_both_backends(tmp_path, backend) -> None:
    """A later migration written in SQLite's dialect only, with a trigger: PostgreSQL runs it through the translator."""

    def m995_tags(db) -> None:
        db.execute(
            "CREATE TABLE tags(id INTEGER PRIMARY KEY AUTOINCREMENT,"
            " conversation_id INTEGER NOT NULL REFERENCES conversations(id) ON DELETE CASCADE,"
            " label BLOB NOT NULL, weight REAL NOT NULL DEFAULT 1.5, uses INTEGER NOT NULL DEFAULT 0)"
        )
        db.execute("CREATE INDEX tags_conversation ON tags(conversation_id) WHERE uses > 0")
        db.execute(
            "CREATE TRIGGER tags_used AFTER INSERT ON tags WHEN NEW.uses IS NOT 0"
            " BEGIN UPDATE tags SET weight = weight + 1 WHERE id = NEW.id; END"
        )

    register_migration(995, m995_tags)
    try:
        store = await open_store(backend.settings(tmp_path))
        try:

            def use(tx) -> list[tuple[float, int]]:
                contact = tx.contacts.create(name="x")
                conv = tx.conversations.create(contact, None, "whatsapp").id
                for uses in (0, 2):
                    tag = tx._session.next_id("tags")
                    tx._session.execute(
                        "INSERT INTO tags(id, conversation_id, label, uses) VALUES (?, ?, ?, ?)",
                        (tag, conv, b"\x00label", uses),
                    )
                return [tuple(r) for r in tx._session.execute("SELECT weight, uses FROM tags ORDER BY id")]

            assert await store.write(use) == [(1.5, 0), (2.5, 2)]
        finally:
            await store.close()
    finally:
        store_schema._MIGRATIONS.pop(995)


async def test_two_stores_on_one_database_share_ids_keys_and_take_turns(tmp_path, pg_dsn) -> None:
    backend = Backend("postgresql", pg_dsn)
    write_key_file(tmp_path / "var" / "master.key", generate_key())  # the operator gives every node the key
    first, second = await asyncio.gather(*(open_store(backend.settings(tmp_path)) for _ in range(2)))
    try:
        ids = await asyncio.gather(
            *(
                store.write(lambda tx, i=i: tx.contacts.create(name=f"n{i}"))
                for i in range(20)
                for store in (first, second)
            )
        )
        assert len(set(ids)) == 40  # one sequence, no collisions
        names = await second.read(lambda tx: sorted(tx.contacts.get(i).name for i in ids))
        assert len(names) == 40
        await asyncio.gather(
            *(
                store.write(lambda tx, i=i: tx.audit.append("test", "x", f"s:{i}"))
                for i in range(20)
                for store in (first, second)
            )
        )
        check = await first.read(lambda tx: tx.audit.verify())
        assert (check.ok, check.count) == (True, 40)  # the chain stays one chain with two writers
        await first.write(lambda tx: tx.gdpr.erase_contact(ids[1]))
        await second.write(lambda tx: None)  # its next transaction notices the shredded key
        assert second._keyring.cached(KeyOwner.contact(ids[1])) is None
        async with first.exclusive("job") as mine, second.exclusive("job") as theirs:
            assert (mine, theirs) == (True, False)
        async with second.exclusive("job") as again:
            assert again
        woken = asyncio.Event()
        second.subscribe("outbox", woken.set)
        await first.write(lambda tx: tx._session.notify("outbox"))
        await asyncio.wait_for(woken.wait(), 5)
    finally:
        await first.close()
        await second.close()


async def test_unreachable_database_and_wrong_dsn_are_store_errors(tmp_path, pg_server) -> None:
    backend = Backend("postgresql", pg_server.dsn("no_such_database"))
    with pytest.raises(StoreError, match="cannot connect to the postgresql database no_such_database"):
        await open_store(backend.settings(tmp_path))
    with pytest.raises(StoreError, match="no Carebridge store"):
        await open_store(Backend("postgresql", pg_server.new_database()).settings(tmp_path), must_exist=True)


async def test_healthz_and_metrics_report_the_backend_pool_and_primary(tmp_path, pg_dsn) -> None:
    store_keys = f'backend = "postgresql"\ndsn = "{pg_dsn}"\npool_size = 3\n'  # into the [store] table
    bridge = await make_bridge(tmp_path, channels=store_keys + CHANNELS)
    try:
        for _ in range(100):
            if bridge.store.health()["primary"] is not None:
                break
            await asyncio.sleep(0.05)
        store = bridge.health()["store"]
        assert (store["status"], store["backend"], store["primary"]) == ("ok", "postgresql", True)
        assert store["pool"]["max"] == 3 and "dsn" not in store and pg_dsn not in str(bridge.health())
        text = bridge.metrics.render()[0].decode()
        assert 'carebridge_store_up{backend="postgresql"} 1.0' in text
        assert 'carebridge_store_pool_connections{state="max"} 3.0' in text
        assert "carebridge_store_writable 1.0" in text and "carebridge_store_failed_commits_total 0.0" in text
        assert "carebridge_store_wal_bytes" not in text and "wal_bytes" not in store  # the server's WAL is its own
    finally:
        await bridge.close()


async def test_on_sqlite_healthz_and_metrics_name_the_backend_and_keep_the_wal_figures(tmp_path) -> None:
    bridge = await make_bridge(tmp_path)
    try:
        store = bridge.health()["store"]
        assert (store["status"], store["backend"], store["writable"]) == ("ok", "sqlite", True)
        assert store["wal_bytes"] >= 0 and "pool" not in store
        text = bridge.metrics.render()[0].decode()
        assert 'carebridge_store_up{backend="sqlite"} 1.0' in text and "carebridge_store_writable 1.0" in text
        assert "carebridge_store_wal_bytes" in text and 'carebridge_store_checkpoints_total{result="restart"}' in text
        assert "carebridge_store_pool_connections" not in text
    finally:
        await bridge.close()


def test_store_backend_settings_are_checked_and_the_dsn_stays_secret(tmp_path, monkeypatch) -> None:
    from bridge.config import load_config
    from bridge.errors import ConfigError

    path = tmp_path / "bridge.toml"
    path.write_text('[store]\nbackend = "postgresql"\n')
    with pytest.raises(ConfigError, match="store.dsn: required when store.backend is postgresql"):
        load_config(path)
    path.write_text('[store]\nbackend = "mysql"\n')
    with pytest.raises(ConfigError, match="store.backend: expected one of sqlite, postgresql"):
        load_config(path)
    monkeypatch.setenv("CB_TEST_DSN", "host=127.0.0.1 password=hunter2-secret dbname=cb")
    path.write_text('[store]\nbackend = "postgresql"\ndsn = "env:CB_TEST_DSN"\npool_size = 2\n')
    store = load_config(path).store
    assert (store.backend, store.dsn, store.pool_size) == (
        "postgresql",
        "host=127.0.0.1 password=hunter2-secret dbname=cb",
        2,
    )
    assert "hunter2" not in repr(store)
    assert load_config(None).store.backend == "sqlite"


async def test_the_store_reconnects_after_the_database_restarts(tmp_path) -> None:
    """A restarted (or failed-over) server: the next write and read reconnect by themselves."""
    with running_server() as server:
        store = await open_store(Backend("postgresql", server.new_database()).settings(tmp_path))
        try:
            first = await store.write(lambda tx: tx.contacts.create(name="before"))
            await asyncio.to_thread(server.restart)
            second = await store.write(lambda tx: tx.contacts.create(name="after"))
            names = await store.read(lambda tx: [tx.contacts.get(i).name for i in (first, second)])
            assert names == ["before", "after"]
            for _ in range(100):  # the listener is back too
                if store.health()["status"] == "ok":
                    break
                await asyncio.sleep(0.05)
            assert store.health()["status"] == "ok"
        finally:
            await store.close()


async def test_a_deadlock_between_two_daemons_is_run_again(tmp_path, pg_dsn) -> None:
    """Two daemons' writes take the same two turns in opposite order: PostgreSQL aborts one, which runs again."""
    backend = Backend("postgresql", pg_dsn)
    write_key_file(tmp_path / "var" / "master.key", generate_key())
    first, second = await asyncio.gather(*(open_store(backend.settings(tmp_path)) for _ in range(2)))
    both_hold_one = threading.Barrier(2, timeout=10)
    runs: list[str] = []

    def crossing(mine: str, theirs: str):
        def fn(tx) -> str:
            runs.append(mine)
            tx._session.serialize(mine)
            if runs.count(mine) == 1:
                both_hold_one.wait()
            tx._session.serialize(theirs)
            return tx.contacts.create(name=mine)

        return fn

    try:
        a, b = await asyncio.gather(first.write(crossing("x", "y")), second.write(crossing("y", "x")))
        assert a != b and sorted(runs) in (["x", "x", "y"], ["x", "y", "y"])  # one of them ran twice
    finally:
        await first.close()
        await second.close()
