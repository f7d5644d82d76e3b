"""No plaintext at rest, and every ciphertext bound to its cell."""

from __future__ import annotations

import logging

import pytest

from bridge.errors import IntegrityError
from bridge.models import Address
from bridge.store import KeyOwner, open_store
from bridge.store.scrub import scrub_error
from tests.core.test_store_kit import Backend, raw_files, settings

MARKERS = {
    "body": "MARKERBODY-zebra-quartz",
    "name": "Marker-Namesake",
    "phone": "+31699887766",
    "phone_digits": "31699887766",
    "email": "marker.person@example.org",
    "psid": "MARKERPSID77321",
    "wamid": "wamid.MARKERWAMID",
    "meta": "MARKERSUBJECT",
    "media": "MARKERMEDIA-bytes",
    "audit": "MARKERAUDIT",
}


def _fill(tx, rnd: int = 0) -> None:
    wa, _ = tx.contacts.get_or_create_identity("whatsapp", MARKERS["phone"], name=MARKERS["name"], inbound_at=tx.now())
    tx.contacts.set_email(wa.contact_id, MARKERS["email"], verified=True)
    conv = tx.conversations.create(wa.contact_id, wa.id, "whatsapp")
    for i in range(30):
        mid = tx.messages.insert(
            conv.id, direction="in", channel="whatsapp", text=f"{MARKERS['body']} {i} call {MARKERS['phone']}",
            external_id=f"{MARKERS['wamid']}{rnd}-{i}", meta={"subject": MARKERS["meta"]},
        )  # fmt: skip
    tx.attachments.add(
        mid, 0, "image", mime="image/png", meta={"caption": MARKERS["meta"]}, data=MARKERS["media"].encode() * 10
    )
    fb, _ = tx.contacts.get_or_create_identity("messenger", MARKERS["psid"], name=MARKERS["name"])
    tx.messages.insert(tx.conversations.create(fb.contact_id, fb.id, "messenger").id, direction="out",
                      channel="messenger", text=MARKERS["body"], reply_to=MARKERS["psid"])  # fmt: skip
    tx.audit.append("cli:test", "test.event", f"contact:{wa.contact_id}", {"note": MARKERS["audit"]})


def _assert_no_markers(files: dict[str, bytes]) -> None:
    assert any(name.endswith(".db") or name == "pg_dump.sql" for name in files)
    for name, data in files.items():
        for label, marker in MARKERS.items():
            for form in {marker.encode(), marker.encode("utf-16-le"), marker.lower().encode()}:
                assert form not in data, f"{label} marker found in {name}"


@pytest.mark.parametrize("checkpoint", [False, True])
async def test_no_plaintext_in_db_wal_shm_or_media(tmp_path, caplog, checkpoint) -> None:
    cfg = settings(tmp_path)
    caplog.set_level(logging.DEBUG)
    store = await open_store(cfg)
    try:
        await store.write(_fill)
        await store.write(lambda tx: _fill(tx, 1))  # a second round: updates of existing rows go through the WAL too
        if checkpoint:
            await store.write(
                lambda tx: tx.after_commit(lambda: tx._session.conn.execute("PRAGMA wal_checkpoint(FULL)"))
            )
        files = raw_files(cfg.path)
        assert "carebridge.db-wal" in files and len(files["carebridge.db-wal"]) > 0
        assert any(name.startswith("media/") for name in files)
        _assert_no_markers(files)
        # and it is all really there, decrypted
        contact = await store.read(lambda tx: tx.contacts.get(tx.contacts.find(Address("whatsapp", MARKERS["phone"]))))
        assert (contact.name, contact.email) == (MARKERS["name"], MARKERS["email"])
    finally:
        await store.close()
    _assert_no_markers(raw_files(cfg.path))
    for label, marker in MARKERS.items():
        assert marker not in caplog.text, f"{label} marker logged"


async def test_no_plaintext_in_pg_dump_data_directory_or_media(tmp_path, caplog, pg_server, pg_dsn) -> None:
    """PostgreSQL: the dump, the data directory (tables, WAL) and the media hold ciphertext and blind indexes only."""
    backend = Backend("postgresql", pg_dsn, pg_server)
    caplog.set_level(logging.DEBUG)
    store = await open_store(backend.settings(tmp_path))
    try:
        await store.write(_fill)
        await store.write(lambda tx: _fill(tx, 1))
        conn = backend.raw(tmp_path)
        conn.execute("CHECKPOINT")  # the WAL's pages written out to the tables' files as well
        conn.close()
        files = backend.files(tmp_path)
        assert any(name.startswith("media/") for name in files)
        assert b"COPY public.messages" in files["pg_dump.sql"]
        _assert_no_markers(files)
        contact = await store.read(lambda tx: tx.contacts.get(tx.contacts.find(Address("whatsapp", MARKERS["phone"]))))
        assert (contact.name, contact.email) == (MARKERS["name"], MARKERS["email"])
    finally:
        await store.close()
    for label, marker in MARKERS.items():
        assert marker not in caplog.text, f"{label} marker logged"


async def test_ciphertext_moved_to_another_row_fails(tmp_path, backend) -> None:
    store = await open_store(backend.settings(tmp_path))
    try:

        def setup(tx):
            ident, _ = tx.contacts.get_or_create_identity("whatsapp", "+31611111111")
            conv = tx.conversations.create(ident.contact_id, ident.id, "whatsapp")
            return conv.id, [
                tx.messages.insert(conv.id, direction="in", channel="whatsapp", text=t) for t in ("one", "two")
            ]

        conv, (first, second) = await store.write(setup)
        conn = backend.raw(tmp_path)
        conn.execute(
            "UPDATE messages SET body = (SELECT body FROM messages WHERE id = ?) WHERE id = ?", (first, second)
        )
        conn.close()
        with pytest.raises(IntegrityError) as caught:
            await store.read(lambda tx: tx.messages.get(second))
        assert (caught.value.table, caught.value.column, caught.value.row_id) == ("messages", "body", second)
        assert f"messages.body of row {second}" in str(caught.value)
        # the untouched record still reads, and non-strict readers report and continue
        assert (await store.read(lambda tx: tx.messages.get(first))).text == "one"
        history = await store.read(lambda tx: tx.messages.recent(conv, 10, strict=False))
        assert [(m.text, m.unreadable) for m in history] == [("one", False), (None, True)]
    finally:
        await store.close()


async def test_ciphertext_from_another_contact_fails(tmp_path, backend) -> None:
    store = await open_store(backend.settings(tmp_path))
    try:
        a = await store.write(lambda tx: tx.contacts.create(name="Alice"))
        b = await store.write(lambda tx: tx.contacts.create(name="Bob"))
        conn = backend.raw(tmp_path)
        # same row id is impossible across contacts, so swap a name into b's row: wrong row AND wrong key
        conn.execute("UPDATE contacts SET name = (SELECT name FROM contacts WHERE id = ?) WHERE id = ?", (a, b))
        conn.execute("UPDATE contacts SET email = ? WHERE id = ?", (b"\x01", a))
        conn.close()
        with pytest.raises(IntegrityError, match=f"contacts.name of row {b}"):
            await store.read(lambda tx: tx.contacts.get(b))
        with pytest.raises(IntegrityError, match=f"contacts.email of row {a}"):
            await store.read(lambda tx: tx.contacts.get(a))
    finally:
        await store.close()


def test_scrub_error_keeps_codes_and_drops_addresses_and_ids() -> None:
    text = (
        "550 5.1.1 <marker.person@example.org>: Recipient rejected; not a WhatsApp number: +31 6 9988 7766;"
        " psid 2457812399012345 wamid.HBgLMzE2OTk4ODc3NjYVAgARGBI= (code 131047, subcode 2018278)"
    )
    scrubbed = scrub_error(text)
    for gone in ("marker.person", "example.org", "9988", "7766", "2457812399012345", "HBgL"):
        assert gone not in scrubbed
    for kept in ("550 5.1.1", "Recipient rejected", "code 131047", "subcode 2018278"):
        assert kept in scrubbed
    assert scrub_error(None) is None


async def test_outbox_last_error_never_stores_an_address(tmp_path) -> None:
    """Whoever writes outbox.last_error (the relay's worker today), the store scrubs it."""
    cfg = settings(tmp_path)
    store = await open_store(cfg)
    error = f"SMTP 550 <{MARKERS['email']}> unknown; psid {MARKERS['psid']}99999 to {MARKERS['phone']}"
    try:

        def enqueue(tx) -> int:
            row_id = tx._session.next_id("outbox")
            tx._session.conn.execute(
                "INSERT INTO outbox(id, key_kind, key_owner, channel, recipient_kind, recipient_id, recipient, body,"
                " next_attempt_at, created_at, last_error) VALUES (?, 'system', 0, 'email', 'contact', 1, x'00', x'00',"
                " 0, 0, ?)",
                (row_id, error),
            )
            return row_id

        first = await store.write(enqueue)
        second = await store.write(enqueue)
        await store.write(
            lambda tx: tx._session.conn.execute("UPDATE outbox SET last_error = ? WHERE id = ?", (error, first))
        )
        stored = await store.read(
            lambda tx: [r[0] for r in tx._session.conn.execute("SELECT last_error FROM outbox ORDER BY id")]
        )
        assert len(stored) == 2 and all(s == stored[0] for s in stored), (first, second, stored)
        assert stored[0].startswith("SMTP 550 <[redacted]> unknown")
        _assert_no_markers(raw_files(cfg.path))
    finally:
        await store.close()
    _assert_no_markers(raw_files(cfg.path))


async def test_outbox_errors_are_scrubbed_by_the_store_on_both_backends(tmp_path, backend) -> None:
    """The outbox repository scrubs ``last_error`` itself (PostgreSQL has no scrub triggers)."""
    store = await open_store(backend.settings(tmp_path))
    error = f"SMTP 550 <{MARKERS['email']}> unknown; psid {MARKERS['psid']}99999 to {MARKERS['phone']}"
    try:

        def enqueue(tx) -> int:
            return tx.outbox.enqueue(
                channel="email", recipient=MARKERS["email"], recipient_kind="contact", recipient_id=1,
                text="hello", key_owner=KeyOwner("system", 0), last_error=error,
            )  # fmt: skip

        first = await store.write(enqueue)
        second = await store.write(enqueue)
        await store.write(lambda tx: tx.outbox.mark_retry(first, 10.0, error))
        await store.write(lambda tx: tx.outbox.set_last_error(second, error))
        stored = [(await store.read(lambda tx, i=i: tx.outbox.load(i))).last_error for i in (first, second)]
        assert all(s is not None and s.startswith("SMTP 550 <[redacted]> unknown") for s in stored), stored
        assert all(MARKERS["psid"] not in s and "99887766" not in s for s in stored)
    finally:
        await store.close()
