"""GDPR export and erase through the real CLI, and crypto-shredding underneath."""

from __future__ import annotations

import asyncio
import json
import os
import sys

import pytest

from bridge.config import load_config
from bridge.errors import IntegrityError
from bridge.models import Address
from bridge.store import KeyOwner, open_store
from tests.core.test_store_kit import ROOT, cli


def _seed(config_path, *, phone: str = "+31612340000", name: str = "Jan Marker") -> int:
    async def go() -> int:
        store = await open_store(load_config(config_path).store)
        try:

            def fill(tx):
                ident, _ = tx.contacts.get_or_create_identity("whatsapp", phone, name=name, inbound_at=tx.now())
                tx.contacts.add_identity(ident.contact_id, "messenger", f"PSID-{phone[-6:]}")
                conv = tx.conversations.create(ident.contact_id, ident.id, "whatsapp")
                tx.messages.insert(
                    conv.id, direction="in", channel="whatsapp", text="hello SECRETWORD", external_id=f"w.{phone}"
                )
                tx.messages.insert(conv.id, direction="note", channel="console", text="internal note", sensitive=True)
                mid = tx.messages.insert(conv.id, direction="out", channel="whatsapp", text="hi back")
                tx.attachments.add(mid, 0, "image", mime="image/png", meta={"caption": "c"}, data=b"PNGDATA" * 50)
                event_id = tx._session.next_id("events")
                tx._session.conn.execute(
                    "INSERT INTO events(id, conversation_id, kind, detail, created_at) VALUES (?, ?, 'transferred', ?, 0)",
                    (event_id, conv.id, tx._session.seal(KeyOwner.contact(ident.contact_id), "events", "detail", event_id,
                                                json.dumps({"note": f"note about {name}"}))),
                )  # fmt: skip
                tx.audit.append("agent:alice", "conversation.transfer", f"conversation:{conv.id}", {"to": "bob"})
                tx.conversations.close(conv.id)
                tx.conversations.create(ident.contact_id, ident.id, "whatsapp")
                tx.audit.append("cli:test", "transcript.view", f"contact:{ident.contact_id}", {"by": "alice"})
                return ident.contact_id

            return await store.write(fill)
        finally:
            await store.close()

    return asyncio.run(go())


@pytest.fixture
def seeded(tmp_path, backend):
    config = backend.write_config(tmp_path)
    first = _seed(config)
    second = _seed(config, phone="+31698760000", name="Other Person")
    return tmp_path, config, first, second


def test_export_shape_by_address_and_id(seeded) -> None:
    tmp_path, config, first, _ = seeded
    by_address = cli("gdpr", "export", "whatsapp:31612340000", "-c", str(config), cwd=tmp_path)
    assert by_address.returncode == 0, by_address.stderr
    doc = json.loads(by_address.stdout)
    assert set(doc) == {"contact", "identities", "conversations", "audit"}
    assert {"id", "name", "created_at"} <= set(doc["contact"])
    assert (doc["contact"]["id"], doc["contact"]["name"]) == (first, "Jan Marker")
    assert doc["identities"] == [
        {"channel": "whatsapp", "address": "+31612340000"},
        {"channel": "messenger", "address": "PSID-340000"},
    ]
    assert [(c["status"], c["channel"], c["agent"]) for c in doc["conversations"]] == [
        ("closed", "whatsapp", None),
        ("queued", "whatsapp", None),
    ]
    messages = doc["conversations"][0]["messages"]
    assert [(m["direction"], m["channel"], m["text"], m["sensitive"]) for m in messages] == [
        ("in", "whatsapp", "hello SECRETWORD", False),
        ("note", "console", "internal note", True),
        ("out", "whatsapp", "hi back", False),
    ]
    assert all({"id", "direction", "channel", "text", "created_at", "sensitive"} <= set(m) for m in messages)
    assert messages[0]["created_at"].endswith("Z")
    # what the audit log says about the contact AND about their conversations (transfers, transcript views)
    assert [(a["action"], a["subject"], a["detail"]) for a in doc["audit"]] == [
        ("conversation.transfer", f"conversation:{doc['conversations'][0]['id']}", {"to": "bob"}),
        ("transcript.view", f"contact:{first}", {"by": "alice"}),
    ]
    # assignment/transfer events, their detail decrypted under the contact's key (an extra key)
    assert [(e["kind"], e["detail"]) for e in doc["conversations"][0]["events"]] == [
        ("transferred", {"note": "note about Jan Marker"})
    ]
    assert doc["conversations"][1]["events"] == []
    # the other contact's data is not in it
    assert "Other Person" not in by_address.stdout and "98760000" not in by_address.stdout
    by_id = cli("gdpr", "export", str(first), "-c", str(config), cwd=tmp_path)
    assert json.loads(by_id.stdout)["conversations"] == doc["conversations"]
    # each export is audited
    verify = cli("audit", "verify", "-c", str(config), cwd=tmp_path)
    assert verify.returncode == 0 and "6 entries" in verify.stdout


@pytest.mark.parametrize("ref", ["4242", "whatsapp:+15550000000", "messenger:999999"])
def test_unknown_contact_exits_1(seeded, ref) -> None:
    tmp_path, config, _, _ = seeded
    for action in ("export", "erase"):
        result = cli("gdpr", action, ref, "--yes" if action == "erase" else "-c", *(["-c"] if action == "erase" else []),
                     str(config), cwd=tmp_path)  # fmt: skip
        assert result.returncode == 1
        assert result.stderr.strip() == f"carebridge: no contact {ref}"
        assert result.stdout == ""


def test_bad_contact_reference_exits_1(seeded) -> None:
    tmp_path, config, _, _ = seeded
    result = cli("gdpr", "export", "not a contact", "-c", str(config), cwd=tmp_path)
    assert result.returncode == 1 and "CONTACT must be a contact id or CHANNEL:ADDRESS" in result.stderr


def test_erase_asks_and_cancels(seeded) -> None:
    tmp_path, config, first, _ = seeded
    result = cli("gdpr", "erase", str(first), "-c", str(config), cwd=tmp_path, stdin="no\n")
    assert result.returncode == 1
    assert "Type 'yes'" in result.stderr and "erase cancelled" in result.stderr
    assert cli("gdpr", "export", str(first), "-c", str(config), cwd=tmp_path).returncode == 0


def test_erase_shreds_everything_of_the_contact(seeded, backend) -> None:
    tmp_path, config, first, second = seeded
    db = load_config(config).store.path
    conn = backend.raw(tmp_path)
    wrapped = conn.execute(
        "SELECT wrapped FROM keys WHERE owner_kind = 'contact' AND owner_id = ?", (first,)
    ).fetchone()[0]
    bodies = [r[0] for r in conn.execute(
        "SELECT body FROM messages WHERE conversation_id IN (SELECT id FROM conversations WHERE contact_id = ?)", (first,))]  # fmt: skip
    conn.close()
    media_before = {p.name for p in db.with_name(db.stem + "-media").iterdir()}
    assert len(media_before) == 2

    result = cli("gdpr", "erase", "whatsapp:+31612340000", "-c", str(config), cwd=tmp_path, stdin="yes\n")
    assert result.returncode == 0, result.stderr
    assert f"erased contact {first}: 2 conversations, 3 messages, 1 media files" in result.stdout

    conn = backend.raw(tmp_path)
    for table, where in [
        ("contacts", "id = ?"), ("contact_identities", "contact_id = ?"), ("conversations", "contact_id = ?"),
        ("keys", "owner_kind = 'contact' AND owner_id = ?"),
    ]:  # fmt: skip
        assert conn.execute(f"SELECT count(*) FROM {table} WHERE {where}", (first,)).fetchone()[0] == 0, table
    assert conn.execute("SELECT count(*) FROM messages").fetchone()[0] == 3  # the other contact's
    assert conn.execute("SELECT count(*) FROM attachments").fetchone()[0] == 1
    assert conn.execute("SELECT count(*) FROM events").fetchone()[0] == 1  # the other contact's transfer
    conn.close()
    assert len({p.name for p in db.with_name(db.stem + "-media").iterdir()}) == 1
    # nothing of the destroyed key or the rows survives in the files (secure_delete, WAL truncated;
    # on PostgreSQL in a dump: the server's own WAL and backups are the operator's to expire)
    for name, data in backend.files(tmp_path, data_directory=False).items():
        assert wrapped not in data, name
        for body in bodies:
            assert body not in data, name

    # and even a saved copy of a ciphertext cannot be opened any more
    async def try_open() -> None:
        store = await open_store(load_config(config).store)
        try:
            await store.read(
                lambda tx: tx._session.open_text(KeyOwner.contact(first), "messages", "body", 1, bodies[0])
            )
        finally:
            await store.close()

    with pytest.raises(IntegrityError, match="no data key for contact"):
        asyncio.run(try_open())
    assert cli("gdpr", "export", str(first), "-c", str(config), cwd=tmp_path).returncode == 1
    other = cli("gdpr", "export", str(second), "-c", str(config), cwd=tmp_path)
    assert other.returncode == 0 and json.loads(other.stdout)["contact"]["name"] == "Other Person"
    audit = cli("audit", "verify", "-c", str(config), cwd=tmp_path)
    assert audit.returncode == 0, audit.stderr


def test_export_marks_tampered_records_and_exits_1(seeded, backend) -> None:
    tmp_path, config, first, _ = seeded
    conn = backend.raw(tmp_path)
    row = conn.execute("SELECT min(id) FROM messages").fetchone()[0]
    conn.execute("UPDATE messages SET body = (SELECT body FROM messages WHERE id = ?) WHERE id = ?", (row + 1, row))
    conn.close()
    result = cli("gdpr", "export", str(first), "-c", str(config), cwd=tmp_path)
    assert result.returncode == 1
    messages = json.loads(result.stdout)["conversations"][0]["messages"]
    assert messages[0] == {**messages[0], "text": None, "unreadable": True}
    assert messages[1]["text"] == "internal note"
    assert f"messages.body of row {row}" in result.stderr


async def test_erase_while_the_daemon_runs(seeded) -> None:
    tmp_path, config, first, second = seeded
    daemon = await open_store(load_config(config).store)
    try:
        assert (await daemon.read(lambda tx: tx.contacts.get(first))).name == "Jan Marker"  # key cached
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "bridge", "gdpr", "erase", str(first), "--yes", "-c", str(config),
            cwd=tmp_path, env={**os.environ, "PYTHONPATH": str(ROOT)},
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        _, err = await proc.communicate()
        assert proc.returncode == 0, err.decode()
        # the running store sees the erasure at once, and keeps working for everyone else
        assert await daemon.read(lambda tx: tx.contacts.get(first)) is None
        assert await daemon.read(lambda tx: tx.contacts.find(Address("whatsapp", "+31612340000"))) is None
        ident, created = await daemon.write(lambda tx: tx.contacts.get_or_create_identity("whatsapp", "+31612340000"))
        assert created and ident.contact_id not in (first, second)
        # and the erased contact's unwrapped key is gone from the running store's memory too
        assert daemon._keyring.cached(KeyOwner.contact(first)) is None
        assert daemon._keyring.cached(KeyOwner.contact(ident.contact_id)) is not None
    finally:
        await daemon.close()
