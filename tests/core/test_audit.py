"""The audit log's HMAC chain and ``carebridge audit verify``."""

from __future__ import annotations

import asyncio

import pytest

from bridge.config import load_config
from bridge.store import open_store
from tests.core.test_store_kit import Backend, cli, raw, write_config


def _append(config, count: int) -> None:
    async def go() -> None:
        store = await open_store(load_config(config).store)
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
        store = await open_store(load_config(config).store)
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


def _anchor(tmp_path, config) -> str:
    result = cli("audit", "anchor", "-c", str(config), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def test_truncated_chain_with_a_restored_head_is_caught_by_its_anchor(tmp_path) -> None:
    """Cut entries off the end and put back the sealed head of that moment: only an anchor shows it."""
    config = write_config(tmp_path)
    db = load_config(config).store.path
    _append(config, 3)
    conn = raw(db)  # the head record as it was after entry 3 (an old backup, or re-sealed with the key)
    head_at_3 = conn.execute("SELECT value FROM meta WHERE name = 'audit_head'").fetchone()[0]
    conn.close()
    _append(config, 2)
    anchor = _anchor(tmp_path, config)
    assert anchor.endswith(":5") and len(anchor.split(":")[0]) == 64
    assert cli("audit", "verify", "--anchor", anchor, "-c", str(config), cwd=tmp_path).returncode == 0
    _tamper(Backend("sqlite"), tmp_path, "DELETE FROM audit_log WHERE id > 3")
    conn = raw(db)
    conn.execute("UPDATE meta SET value = ? WHERE name = 'audit_head'", (head_at_3,))
    conn.close()
    plain = cli("audit", "verify", "-c", str(config), cwd=tmp_path)
    assert (plain.returncode, plain.stdout.strip()) == (0, "audit log intact: 3 entries")  # the chain alone cannot tell
    caught = cli("audit", "verify", "--anchor", anchor, "-c", str(config), cwd=tmp_path)
    assert caught.returncode == 1
    assert caught.stderr.strip() == (
        "carebridge: audit log broken at its end: the anchor of entry 5 is past its end (3 entries): entries were removed"
    )


def test_an_anchor_that_does_not_match_its_entry_is_refused(logged) -> None:
    tmp_path, config, _db = logged
    digest, count = _anchor(tmp_path, config).split(":")
    forged = ("0" if digest[0] != "0" else "1") + digest[1:]
    result = cli("audit", "verify", "--anchor", f"{forged}:{count}", "-c", str(config), cwd=tmp_path)
    assert result.returncode == 1 and "entry 5: it is entry 5 but does not carry the anchor's hash" in result.stderr
    bad = cli("audit", "verify", "--anchor", "nothex:5", "-c", str(config), cwd=tmp_path)
    assert bad.returncode == 2 and "expected HASH:COUNT" in bad.stderr
    assert cli("audit", "verify", "--anchor", f"{'0' * 64}:0", "-c", str(config), cwd=tmp_path).returncode == 0


async def test_the_daemon_logs_an_anchor_at_every_start(tmp_path) -> None:
    from tests.daemon import DaemonProcess
    from tests.daemon import write_config as daemon_config

    config = daemon_config(tmp_path)
    async with DaemonProcess(config) as daemon:
        pass
    assert daemon.returncode == 0, daemon.stderr
    [line] = [line for line in daemon.stderr.splitlines() if "audit anchor" in line]
    anchor = line.split("audit anchor ", 1)[1].split()[0]
    await asyncio.to_thread(_append, config, 2)
    result = cli("audit", "verify", "--anchor", anchor, "-c", str(config), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    async with DaemonProcess(config) as daemon:
        pass
    assert any(f"audit anchor {_anchor(tmp_path, config)}" in line for line in daemon.stderr.splitlines())
