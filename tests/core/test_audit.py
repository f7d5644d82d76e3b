"""The audit log's HMAC chain and ``carebridge audit verify``."""

from __future__ import annotations

import asyncio

import pytest

from bridge.config import load_config
from bridge.store import Store
from tests.core.test_store_kit import cli, write_config


def _append(config, count: int) -> None:
    async def go() -> None:
        store = await Store.open(load_config(config).store)
        try:
            for i in range(count):
                await store.write(
                    lambda tx, i=i: tx.audit.append("agent:alice", "login", f"agent:{i}", {"ip": "127.0.0.1"})
                )
        finally:
            await store.close()

    asyncio.run(go())


@pytest.fixture
def logged(tmp_path, backend):
    config = backend.write_config(tmp_path)
    _append(config, 5)
    return tmp_path, config, backend


def _tamper(backend, tmp_path, *statements: str) -> None:
    conn = backend.raw(tmp_path)
    if backend.postgresql:  # the table's owner can switch its triggers off
        conn.execute("ALTER TABLE audit_log DISABLE TRIGGER USER")
    else:
        conn.execute("DROP TRIGGER audit_log_no_update")
        conn.execute("DROP TRIGGER audit_log_no_delete")
    for statement in statements:
        conn.execute(statement)
    conn.close()


def test_intact_log_verifies_and_entries_read_back(logged) -> None:
    tmp_path, config, _ = logged
    result = cli("audit", "verify", "-c", str(config), cwd=tmp_path)
    assert (result.returncode, result.stdout.strip()) == (0, "audit log intact: 5 entries")

    async def entries():
        store = await Store.open(load_config(config).store)
        try:
            return await store.read(lambda tx: tx.audit.entries("agent:3"))
        finally:
            await store.close()

    [entry] = asyncio.run(entries())
    assert (entry.actor, entry.action, entry.detail) == ("agent:alice", "login", {"ip": "127.0.0.1"})


def test_append_only_triggers(logged) -> None:
    tmp_path, _, backend = logged
    conn = backend.raw(tmp_path)
    with pytest.raises(backend.database_error, match="append-only"):
        conn.execute("UPDATE audit_log SET action = 'x' WHERE id = 1")
    with pytest.raises(backend.database_error, match="append-only"):
        conn.execute("DELETE FROM audit_log WHERE id = 1")
    if backend.postgresql:
        with pytest.raises(backend.database_error, match="append-only"):
            conn.execute("TRUNCATE audit_log")
    conn.close()


@pytest.mark.parametrize(
    ("statements", "message"),
    [
        (["UPDATE audit_log SET action = 'logout' WHERE id = 3"], "entry 3: its hash does not match its content"),
        (["UPDATE audit_log SET detail = (SELECT detail FROM audit_log WHERE id = 1) WHERE id = 2"],
         "entry 2: its hash does not match its content"),
        (["DELETE FROM audit_log WHERE id = 2"], "entry 3: its prev_hash does not match the previous entry"),
        (["DELETE FROM audit_log WHERE id = 5"], "entry 5: entries after 4 are missing (head is 5)"),
        (["DELETE FROM meta WHERE name = 'audit_head'"], "entry 5: the audit head record is missing"),
    ],
)  # fmt: skip
def test_tampering_is_named(logged, statements, message) -> None:
    tmp_path, config, backend = logged
    _tamper(backend, tmp_path, *statements)
    result = cli("audit", "verify", "-c", str(config), cwd=tmp_path)
    assert result.returncode == 1
    assert result.stderr.strip() == f"carebridge: audit log broken at {message}"


def test_recomputed_plain_hash_does_not_pass(logged) -> None:
    """Someone with only the file cannot re-chain: the chain is keyed."""
    import hashlib

    tmp_path, config, backend = logged
    conn = backend.raw(tmp_path)
    rows = conn.execute("SELECT id, prev_hash FROM audit_log ORDER BY id").fetchall()
    conn.close()
    fake = hashlib.sha256(bytes(rows[-1][1]) + b"forged").digest()
    literal = f"'\\x{fake.hex()}'::bytea" if backend.postgresql else f"x'{fake.hex()}'"
    _tamper(backend, tmp_path, f"UPDATE audit_log SET action = 'forged', hash = {literal} WHERE id = 5")
    result = cli("audit", "verify", "-c", str(config), cwd=tmp_path)
    assert result.returncode == 1 and "entry 5" in result.stderr


def test_empty_log_verifies(tmp_path) -> None:
    config = write_config(tmp_path)
    _append(config, 0)
    result = cli("audit", "verify", "-c", str(config), cwd=tmp_path)
    assert (result.returncode, result.stdout.strip()) == (0, "audit log intact: 0 entries")
    missing = cli("audit", "verify", "-c", str(tmp_path / "nope.toml"), cwd=tmp_path)
    assert missing.returncode == 1
