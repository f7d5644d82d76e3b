"""Key rotation retires keys: no old wrapping stays in the files, and ``--rekey`` replaces the data keys.

An auditor holding the files (database, WAL, media) and the OLD master key
after a rotation must find no old wrapped key; after ``--rekey``, no old data
key may open anything left. Checked by opening every cell with every key
(``tests.core.cellscan``), while a daemon keeps the store open and writing.
"""

from __future__ import annotations

import asyncio
import json
import os
import pty
import sqlite3
import subprocess
import sys

from bridge.config import load_config
from bridge.store import open_store
from bridge.store.keyfile import generate_key, load_master_key, write_key_file
from tests.core.cellscan import cells_naming, data_keys, raw_hits, readable_cells
from tests.core.test_store_kit import ROOT, cli, write_config
from tests.daemon import DaemonProcess, run_cli
from tests.daemon import write_config as daemon_config
from tests.fakes.whatsapp_cloud import FakeWhatsAppCloud


def _column(db, sql: str) -> list[bytes]:
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        return [row[0] for row in conn.execute(sql)]
    finally:
        conn.close()


def _fill(tx, n: int) -> None:
    """Contacts with messages, events, an attachment, an outbox row; an agent."""
    for i in range(n):
        ident, _ = tx.contacts.get_or_create_identity("whatsapp", f"+3161234{i:04d}", name=f"Person {i} SECRETNAME")
        conv = tx.conversations.create(ident.contact_id, ident.id, "whatsapp")
        mid = tx.messages.insert(conv.id, direction="in", channel="whatsapp", text=f"text {i} SECRETTEXT",
                                 external_id=f"wamid.{i}", meta={"subject": "SECRETMETA"})  # fmt: skip
        tx.attachments.add(mid, 0, "image", mime="image/png", meta={"caption": "SECRETCAPTION"}, data=b"SECRETPIX" * 9)
        tx.events.write(conv.id, ident.contact_id, "transferred", detail={"note": "SECRETNOTE"})
        tx.outbox.enqueue(channel="whatsapp", recipient=f"+3161234{i:04d}", recipient_kind="contact",
                          recipient_id=ident.contact_id, text="SECRETREPLY", key_owner=tx.conversations.owner(conv.id),
                          conversation_id=conv.id, message_id=mid)  # fmt: skip
    tx.agents.insert(name="alice", role="agent", channel="whatsapp", address="+31699999999", email="a@example.org",
                     queues=["default"], capacity=5, totp_secret="JBSWY3DPEHPK3PXP", password_hash="hash")  # fmt: skip
    tx.audit.append("cli:test", "seeded", None, {"n": n})


SECRETS = ("SECRETNAME", "SECRETTEXT", "SECRETMETA", "SECRETCAPTION", "SECRETNOTE", "SECRETREPLY", "SECRETPIX",
           "+31612340001", "a@example.org", "JBSWY3DPEHPK3PXP")  # fmt: skip


async def test_rotate_leaves_no_old_wrapping_in_the_files_while_a_daemon_holds_the_store(tmp_path) -> None:
    config = write_config(tmp_path)
    cfg = load_config(config).store
    daemon = await open_store(cfg)  # the running daemon: its connections keep the WAL alive
    try:
        await daemon.write(lambda tx: _fill(tx, 5))
        old_master = load_master_key(cfg.key)
        old_wrapped = _column(cfg.path, "SELECT wrapped FROM keys")
        old_check = _column(cfg.path, "SELECT value FROM meta WHERE name = 'key_check'")
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "bridge", "keys", "rotate", "-c", str(config), cwd=tmp_path,
            env={**os.environ, "PYTHONPATH": str(ROOT)}, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        out, err = await proc.communicate()
        assert proc.returncode == 0, err.decode()
        # with the old master key and the files as they are now, no old wrapping is left to unwrap
        assert raw_hits(cfg.path, *old_wrapped, *old_check) == []
        # and the daemon still reads everything
        assert (await daemon.read(lambda tx: tx.contacts.get(1))).name == "Person 0 SECRETNAME"
    finally:
        await daemon.close()
    assert raw_hits(cfg.path, *old_wrapped, *old_check) == []
    assert data_keys(cfg.path, load_master_key(cfg.key))  # every key opens under the new master
    assert old_master != load_master_key(cfg.key)


async def test_rekey_replaces_every_data_key_and_no_old_key_opens_anything(tmp_path) -> None:
    config = write_config(tmp_path)
    cfg = load_config(config).store
    daemon = await open_store(cfg)
    try:
        await daemon.write(lambda tx: _fill(tx, 6))
        # the daemon has every key cached, as after a day of work
        assert (await daemon.read(lambda tx: tx.contacts.get(3))).name == "Person 2 SECRETNAME"
        old_keys = data_keys(cfg.path, load_master_key(cfg.key))
        assert len(cells_naming(readable_cells(cfg.path, old_keys), *SECRETS)) >= 6 * 7
        old_cells = [row[0] for q in ("SELECT body FROM messages", "SELECT body FROM outbox", "SELECT name FROM contacts",
                                      "SELECT totp_secret FROM agents", "SELECT wrapped FROM keys")
                     for row in [(b,) for b in _column(cfg.path, q)]]  # fmt: skip
        media = cfg.path.with_name("carebridge-media")
        old_files = {p.name: p.read_bytes() for p in media.iterdir()}
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "bridge", "keys", "rotate", "--rekey", "-c", str(config), cwd=tmp_path,
            env={**os.environ, "PYTHONPATH": str(ROOT)}, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        out, err = await proc.communicate()
        assert proc.returncode == 0, err.decode()
        assert "data keys replaced: 7; re-encrypted" in out.decode() and "6 media file(s)" in out.decode()
        # the running daemon follows: it reads the re-encrypted data and writes under the new keys
        assert (await daemon.read(lambda tx: tx.contacts.get(3))).name == "Person 2 SECRETNAME"
        assert (await daemon.read(lambda tx: tx.attachments.read(1))) == b"SECRETPIX" * 9
        await daemon.write(
            lambda tx: tx.messages.insert(1, direction="in", channel="whatsapp", text="after SECRETTEXT")
        )
        new_keys = data_keys(cfg.path, load_master_key(cfg.key))
        retired = {name: raw for name, raw in old_keys.items() if name.split(":")[0] in ("contact", "agent")}
        assert len(retired) == 7 and not set(retired.values()) & set(new_keys.values())
        # no retired key opens a single cell or file, in the database or the WAL
        assert readable_cells(cfg.path, retired) == []
        assert raw_hits(cfg.path, *old_cells) == []
        assert not set(old_files) & {p.name for p in media.iterdir()}
        # everything is there, under the new keys
        texts = cells_naming(readable_cells(cfg.path, new_keys), *SECRETS)
        assert {s for s in SECRETS if any(s.encode() in c.plaintext for c in texts)} == set(SECRETS)
    finally:
        await daemon.close()
    verify = cli("audit", "verify", "-c", str(config), cwd=tmp_path)
    assert verify.returncode == 0, verify.stderr


async def test_an_interrupted_rekey_resumes_where_it_stopped(tmp_path) -> None:
    config = write_config(tmp_path)
    cfg = load_config(config).store
    store = await open_store(cfg)
    try:
        await store.write(lambda tx: _fill(tx, 4))
        upto = await store.write(lambda tx: tx.rekey.begin())
        await store.write(lambda tx: tx.rekey.step(upto, 2))  # ... and the process dies here
        ids = dict(await store.read(lambda tx: tx._session.conn.execute(
            "SELECT owner_kind || ':' || owner_id, id FROM keys").fetchall()))  # fmt: skip
    finally:
        await store.close()
    result = cli("keys", "rotate", "--rekey", "-c", str(config), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "data keys replaced: 3" in result.stdout and "an interrupted run was resumed" in result.stdout
    after = dict(data_keys(cfg.path, load_master_key(cfg.key)))
    conn = sqlite3.connect(cfg.path)
    now = dict(conn.execute("SELECT owner_kind || ':' || owner_id, id FROM keys").fetchall())
    conn.close()
    # the two owners done before the crash kept their new keys; the other three were replaced now
    done_first = [name for name in ids if ids[name] > upto]
    assert len(done_first) == 2 and all(now[name] == ids[name] for name in done_first)
    assert all(now[name] != ids[name] for name in ids if name.split(":")[0] in ("contact", "agent")
               and name not in done_first)  # fmt: skip
    assert len(cells_naming(readable_cells(cfg.path, after), *SECRETS)) >= 4 * 7
    again = cli("keys", "rotate", "--rekey", "-c", str(config), cwd=tmp_path)
    assert "resumed" not in again.stdout and "data keys replaced: 5" in again.stdout


def test_rekey_refuses_a_schema_with_a_sealed_column_it_does_not_know(tmp_path) -> None:
    config = write_config(tmp_path)
    cfg = load_config(config).store

    async def seed() -> None:
        store = await open_store(cfg)
        await store.write(lambda tx: _fill(tx, 1))
        await store.close()

    asyncio.run(seed())
    conn = sqlite3.connect(cfg.path)
    conn.execute("CREATE TABLE plugin_notes(id INTEGER PRIMARY KEY, body BLOB)")
    conn.close()
    before = load_master_key(cfg.key)
    result = cli("keys", "rotate", "--rekey", "-c", str(config), cwd=tmp_path)
    assert result.returncode == 1 and "unknown sealed column(s) plugin_notes.body" in result.stderr
    assert load_master_key(cfg.key) == before  # refused before anything changed


def test_rekey_draws_a_progress_bar_on_a_terminal_only(tmp_path) -> None:
    config = write_config(tmp_path)
    cfg = load_config(config).store

    async def seed() -> None:
        store = await open_store(cfg)
        await store.write(lambda tx: _fill(tx, 3))
        await store.close()

    asyncio.run(seed())
    leader, follower = pty.openpty()
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "bridge", "keys", "rotate", "--rekey", "-c", str(config)], cwd=tmp_path,
            env={**os.environ, "PYTHONPATH": str(ROOT), "COLUMNS": "100"}, stdout=subprocess.PIPE, stderr=follower,
            timeout=60, check=False,
        )  # fmt: skip
        os.close(follower)
        follower = -1
        drawn = b""
        while True:
            try:
                chunk = os.read(leader, 65536)
            except OSError:
                break
            if not chunk:
                break
            drawn += chunk
    finally:
        if follower != -1:
            os.close(follower)
        os.close(leader)
    assert proc.returncode == 0
    assert b"re-encrypting" in drawn and b"4/4" in drawn
    piped = cli("keys", "rotate", "--rekey", "-c", str(config), cwd=tmp_path)
    assert piped.returncode == 0 and piped.stderr == ""


async def test_real_daemon_keeps_relaying_through_a_rekey(tmp_path, aiohttp_server) -> None:
    """`carebridge run` stays up while `keys rotate --rekey` re-encrypts under it; nothing is lost or stranded."""
    fake = FakeWhatsAppCloud(token="wa-token", phone_number_id="1055", app_secret="wa-secret", templates=())
    server = await aiohttp_server(fake.app)
    (tmp_path / "var").mkdir()
    write_key_file(tmp_path / "var" / "master.key", generate_key())
    config = daemon_config(
        tmp_path,
        '[channels.whatsapp]\nphone_number_id = "1055"\naccess_token = "wa-token"\napp_secret = "wa-secret"\n'
        f'verify_token = "vt"\ngraph_url = "{fake.graph_url(server)}"\n',
    )
    senders = [f"+1555000{i:04d}" for i in range(12)]

    async def simulate(sender: str, text: str) -> None:
        status, out, err = await run_cli("simulate", "whatsapp", "--from", sender, "--text", text, "-c", str(config))
        assert status == 0 and "HTTP 200" in out, (out, err)

    async with DaemonProcess(config) as daemon:
        for sender in senders:
            await simulate(sender, f"before {sender}")
        db = tmp_path / "var" / "carebridge.db"
        old_keys = {k: v for k, v in data_keys(db, load_master_key(f"file:{tmp_path / 'var' / 'master.key'}")).items()
                    if k.startswith("contact:")}  # fmt: skip
        rekey = asyncio.create_task(run_cli("keys", "rotate", "--rekey", "-c", str(config)))
        for sender in senders[:6]:
            await simulate(sender, f"during {sender}")
        status, out, err = await rekey
        assert status == 0, err
        for sender in senders[6:]:
            await simulate(sender, f"after {sender}")
        assert readable_cells(db, old_keys) == []
    assert daemon.returncode == 0, daemon.stderr
    assert "Traceback" not in daemon.stderr and "ERROR" not in daemon.stderr
    for i, sender in enumerate(senders):
        status, out, err = await run_cli("gdpr", "export", f"whatsapp:{sender}", "-c", str(config))
        assert status == 0, err
        texts = [m["text"] for c in json.loads(out)["conversations"] for m in c["messages"] if m["direction"] == "in"]
        expected = [f"before {sender}", f"{'during' if i < 6 else 'after'} {sender}"]
        assert texts == expected, (sender, texts)
