"""Opening, key checks, migrations and the group-committing writer, on real SQLite files."""

from __future__ import annotations

import asyncio
import logging
import stat
import threading

import pytest

from bridge.errors import KeyMismatchError, StoreError
from bridge.store import KeyOwner, open_store
from bridge.store import schema as store_schema
from bridge.store.keyfile import generate_key, write_key_file
from bridge.store.schema import register_migration
from tests.core.test_store_kit import env_key_settings, raw, settings


async def test_new_store_generates_key_and_migrates(tmp_path, caplog) -> None:
    cfg = settings(tmp_path)
    with caplog.at_level(logging.WARNING, logger="carebridge.store"):
        store = await open_store(cfg)
    try:
        key_path = tmp_path / "var" / "master.key"
        assert stat.S_IMODE(key_path.stat().st_mode) == 0o600
        assert "generated a new master key" in caplog.text
        health = store.health()
        assert health == {
            "status": "ok",
            "backend": "sqlite",
            "schema_version": store_schema.latest_version(),
            "path": str(cfg.path),
            "writable": True,
            "write_error": None,
            "failed_commits": 0,
            "wal_bytes": health["wal_bytes"],
        }
        assert health["wal_bytes"] > 0
        assert stat.S_IMODE(cfg.path.stat().st_mode) == 0o600
        conn = raw(cfg.path)
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        assert {"keys", "meta", "contacts", "contact_identities", "agents", "agent_identities", "shifts",
                "totp_used", "conversations", "messages", "attachments", "events", "outbox",
                "audit_log", "schema_migrations"} <= tables  # fmt: skip
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        conn.close()
    finally:
        await store.close()
    assert store.health()["status"] == "error"


async def test_pragmas_on_both_connections(tmp_path) -> None:
    store = await open_store(settings(tmp_path))
    try:

        def pragmas(tx):
            return [
                tx._session.conn.execute(f"PRAGMA {p}").fetchone()[0]
                for p in ("synchronous", "foreign_keys", "secure_delete")
            ]

        assert await store.write(pragmas) == [2, 1, 1]  # FULL, on, on
        assert await store.read(pragmas) == [2, 1, 1]
    finally:
        await store.close()
    store = await open_store(settings(tmp_path, synchronous="normal"))
    try:
        assert (await store.write(pragmas))[0] == 1
    finally:
        await store.close()


async def test_bad_synchronous_setting_is_named(tmp_path) -> None:
    with pytest.raises(StoreError, match="store.synchronous"):
        await open_store(settings(tmp_path, synchronous="fast"))


async def _populate(cfg) -> None:
    store = await open_store(cfg)
    try:
        await store.write(lambda tx: tx.contacts.create(name="Someone"))
    finally:
        await store.close()


async def test_wrong_key_refused_before_any_write(tmp_path, monkeypatch, backend) -> None:
    await _populate(backend.settings(tmp_path))
    before = _snapshot(tmp_path, backend)
    wrong = env_key_settings(tmp_path, generate_key(), monkeypatch)
    if backend.postgresql:
        wrong = backend.settings(tmp_path, key=wrong.key)
    with pytest.raises(KeyMismatchError, match="^the master key does not match this database$"):
        await open_store(wrong)
    assert _snapshot(tmp_path, backend) == before


def _snapshot(tmp_path, backend) -> object:
    """The database as it is: file bytes and mtime, or on PostgreSQL the rows of the key tables and the version."""
    if not backend.postgresql:
        db = settings(tmp_path).path
        return (db.read_bytes(), db.stat().st_mtime_ns)
    conn = backend.raw(tmp_path)
    try:
        return [conn.execute(f"SELECT * FROM {t} ORDER BY 1").fetchall() for t in ("keys", "meta", "schema_migrations")]
    finally:
        conn.close()


async def test_missing_key_with_existing_database_is_refused(tmp_path, backend) -> None:
    cfg = backend.settings(tmp_path)
    await _populate(cfg)
    (tmp_path / "var" / "master.key").unlink()
    with pytest.raises(StoreError, match="master key .* not found; refusing to open an existing database without it"):
        await open_store(cfg)
    assert not (tmp_path / "var" / "master.key").exists()  # no new key was made


async def test_admin_open_requires_existing_store_and_key(tmp_path) -> None:
    with pytest.raises(StoreError, match="no store at"):
        await open_store(settings(tmp_path), must_exist=True)
    with pytest.raises(StoreError, match="master key .* not found"):
        await open_store(settings(tmp_path), create_missing_key=False)


async def test_newer_schema_is_refused(tmp_path, backend) -> None:
    cfg = backend.settings(tmp_path)
    await _populate(cfg)
    conn = backend.raw(tmp_path)
    conn.execute("INSERT INTO schema_migrations(number, name, applied_at) VALUES (9999, 'future', 0)")
    conn.close()
    latest = store_schema.latest_version()
    with pytest.raises(StoreError, match=f"database schema version 9999 is newer than this Carebridge \\({latest}\\)"):
        await open_store(cfg)


async def test_not_a_database(tmp_path) -> None:
    cfg = settings(tmp_path)
    write_key_file(tmp_path / "var" / "master.key", generate_key())
    cfg.path.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(StoreError, match="not a Carebridge database"):
        await open_store(cfg)


async def test_registered_migration_runs_once(tmp_path, backend) -> None:
    def m990_extra(db) -> None:
        db.execute("CREATE TABLE extra_things(id INTEGER PRIMARY KEY)")

    register_migration(990, m990_extra)
    try:
        with pytest.raises(ValueError, match="already registered"):
            register_migration(990, lambda db: None)
        for _ in range(2):
            store = await open_store(backend.settings(tmp_path))
            assert store.schema_version == 990
            await store.close()
        conn = backend.raw(tmp_path)
        assert conn.execute("SELECT name FROM schema_migrations WHERE number = 990").fetchone() == ("m990_extra",)
        conn.close()
    finally:
        store_schema._MIGRATIONS.pop(990)


async def test_group_commit_one_transaction_and_resolves_after_commit(tmp_path, backend) -> None:
    cfg = backend.settings(tmp_path)
    store = await open_store(cfg)
    try:
        contact = await store.write(lambda tx: tx.contacts.create(name="C"))
        conv = await store.write(lambda tx: tx.conversations.create(contact, None, "whatsapp").id)
        gate, started = threading.Event(), threading.Event()

        def blocker(tx) -> None:
            started.set()
            assert gate.wait(10)

        def insert(i: int):
            def fn(tx):
                mid = tx.messages.insert(conv, direction="in", channel="whatsapp", text=f"m{i}", external_id=f"x{i}")
                if i == 7:
                    raise ValueError("boom")
                return mid

            return fn

        first = asyncio.ensure_future(store.write(blocker))
        assert await asyncio.to_thread(started.wait, 10)
        batches = store.batches
        tasks = [asyncio.ensure_future(store.write(insert(i))) for i in range(40)]
        await asyncio.sleep(0)  # every task has queued its function
        gate.set()
        await first
        outcomes = await asyncio.gather(*tasks, return_exceptions=True)
        assert store.batches == batches + 2  # the blocker's batch, then the 40 queued writes in ONE
        assert isinstance(outcomes[7], ValueError)
        assert all(isinstance(o, int) for i, o in enumerate(outcomes) if i != 7)
        # the future resolved after COMMIT: another connection sees every row right away
        conn = backend.raw(tmp_path)
        ids = {r[0] for r in conn.execute("SELECT id FROM messages")}
        conn.close()
        assert ids == {o for i, o in enumerate(outcomes) if i != 7}
        texts = await store.read(lambda tx: [m.text for m in tx.messages.recent(conv, 100)])
        assert texts == [f"m{i}" for i in range(40) if i != 7]
    finally:
        await store.close()


async def test_failed_function_loses_its_new_key_but_not_others(tmp_path, backend) -> None:
    store = await open_store(backend.settings(tmp_path))
    try:

        def create_then_fail(tx):
            tx.contacts.create(name="ghost")
            raise RuntimeError("no")

        with pytest.raises(RuntimeError):
            await store.write(create_then_fail)
        contact = await store.write(lambda tx: tx.contacts.create(name="real"))
        assert (await store.read(lambda tx: tx.contacts.get(contact))).name == "real"
        await store.close()
        store = await open_store(backend.settings(tmp_path))
        assert (await store.read(lambda tx: tx.contacts.get(contact))).name == "real"
    finally:
        await store.close()


async def test_a_rolled_back_savepoint_forgets_the_keys_it_created(tmp_path, backend) -> None:
    """Nothing may be sealed under a data key whose row a savepoint rolled back."""
    store = await open_store(backend.settings(tmp_path))
    undone: list[str] = []
    try:

        def partly_undone(tx):
            with pytest.raises(RuntimeError):
                with tx.savepoint():
                    owner = KeyOwner.contact(tx.contacts.create(name="inside"))
                    tx.on_rollback(lambda: undone.append("file"))
                    raise RuntimeError("undo the block")
            assert not tx._session.has_key(owner)
            # The same owner id sealed again must get a fresh key with a committed row.
            return owner, tx._session.seal(owner, "contacts", "name", owner.id, "after")

        owner, blob = await store.write(partly_undone)
        assert undone == ["file"]
        await store.close()
        store = await open_store(backend.settings(tmp_path))
        assert await store.read(lambda tx: tx._session.open_text(owner, "contacts", "name", owner.id, blob)) == "after"
    finally:
        await store.close()


async def test_write_refuses_coroutine_functions_and_reads_are_read_only(tmp_path, backend) -> None:
    store = await open_store(backend.settings(tmp_path))
    try:

        async def not_sync(tx):
            return 1

        with pytest.raises(TypeError, match="plain function"):
            await store.write(not_sync)
        with pytest.raises(backend.database_error, match="readonly|read-only|query_only"):
            await store.read(lambda tx: tx._session.conn.execute("DELETE FROM contacts"))
        with pytest.raises(StoreError, match="needs store.write"):
            await store.read(lambda tx: tx._session.new_key(KeyOwner.agent(1)))
    finally:
        await store.close()
    with pytest.raises(StoreError, match="closed"):
        await store.write(lambda tx: None)


async def test_injected_clock(tmp_path, backend) -> None:
    store = await open_store(backend.settings(tmp_path), clock=lambda: 1234.5)
    try:
        contact = await store.write(lambda tx: tx.contacts.create())
        assert (await store.read(lambda tx: tx.contacts.get(contact))).created_at == 1234.5
    finally:
        await store.close()


async def test_loose_key_file_mode_is_warned(tmp_path, caplog) -> None:
    key_path = write_key_file(tmp_path / "var" / "master.key", generate_key())
    key_path.chmod(0o644)
    with caplog.at_level(logging.WARNING, logger="carebridge.store"):
        store = await open_store(settings(tmp_path))
    await store.close()
    assert f"master key {key_path} is readable by other users" in caplog.text


async def test_unwritable_location_is_a_store_error(tmp_path) -> None:
    blocker = tmp_path / "var"
    blocker.write_text("a file where the directory should be")
    with pytest.raises(StoreError):
        await open_store(settings(tmp_path, key=f"file:{tmp_path / 'master.key'}"))


async def test_cancelled_caller_still_commits(tmp_path, backend) -> None:
    store = await open_store(backend.settings(tmp_path))
    try:
        gate = threading.Event()
        blocker = asyncio.ensure_future(store.write(lambda tx: gate.wait(10)))
        task = asyncio.ensure_future(store.write(lambda tx: tx.contacts.create(name="kept")))
        await asyncio.sleep(0)
        task.cancel()
        gate.set()
        await blocker
        with pytest.raises(asyncio.CancelledError):
            await task
        await store.write(lambda tx: None)  # FIFO: every earlier function is committed now
        names = await store.read(
            lambda tx: [tx.contacts.get(r[0]).name for r in tx._session.conn.execute("SELECT id FROM contacts")]
        )
        assert names == ["kept"]
    finally:
        await store.close()


async def test_failing_migration_is_named_and_rolled_back(tmp_path) -> None:
    def m991_broken(db) -> None:
        db.execute("CREATE TABLE half_done(id INTEGER PRIMARY KEY)")
        db.execute("INSERT INTO no_such_table VALUES (1)")

    register_migration(991, m991_broken)
    try:
        with pytest.raises(StoreError, match=r"migration 991 \(m991_broken\) failed: no such table"):
            await open_store(settings(tmp_path))
    finally:
        store_schema._MIGRATIONS.pop(991)
    conn = raw(settings(tmp_path).path)
    assert conn.execute("SELECT count(*) FROM sqlite_master WHERE name = 'half_done'").fetchone()[0] == 0
    conn.close()
    store = await open_store(settings(tmp_path))  # and without it, the store opens fine
    await store.close()
