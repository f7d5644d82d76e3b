"""Repository methods: contacts, identities, conversations, messages, attachments, retention."""

from __future__ import annotations

import pytest

from bridge.errors import IntegrityError, UnknownRecordError
from bridge.models import Address
from bridge.store import SYSTEM_KEY, KeyOwner, open_store


@pytest.fixture
async def store(tmp_path, backend):
    now = [1_000_000.0]
    store = await open_store(backend.settings(tmp_path), clock=lambda: now[0])
    store.test_clock = now  # type: ignore[attr-defined]
    yield store
    await store.close()


async def test_identity_found_by_blind_index(store) -> None:
    def first(tx):
        return tx.contacts.get_or_create_identity("whatsapp", "+31612345678", name="Jan", inbound_at=100.0)

    ident, created = await store.write(first)
    assert created and ident.address == "+31612345678" and ident.last_inbound_at == 100.0

    def again(tx):
        return tx.contacts.get_or_create_identity("whatsapp", "+31612345678", name="Other", inbound_at=200.0)

    same, created = await store.write(again)
    assert not created and same.id == ident.id and same.last_inbound_at == 200.0
    # an older timestamp never moves the window back
    await store.write(lambda tx: tx.contacts.get_or_create_identity("whatsapp", "+31612345678", inbound_at=150.0))
    found = await store.read(lambda tx: tx.contacts.find_identity("whatsapp", "+31612345678"))
    assert found.last_inbound_at == 200.0
    contact = await store.read(lambda tx: tx.contacts.get(ident.contact_id))
    assert contact.name == "Jan"  # a name is set once, not overwritten by later display names
    assert await store.read(lambda tx: tx.contacts.find_identity("messenger", "+31612345678")) is None
    assert await store.read(lambda tx: tx.contacts.find(Address("whatsapp", "+31612345678"))) == ident.contact_id
    assert await store.read(lambda tx: tx.contacts.find(ident.contact_id)) == ident.contact_id
    assert await store.read(lambda tx: tx.contacts.find(999)) is None
    # The store indexes exactly what it is given: normalizing is the channel's job, before it.
    assert await store.read(lambda tx: tx.contacts.find(Address("whatsapp", "31612345678"))) is None


async def test_contact_email_and_second_identity(store) -> None:
    def setup(tx):
        ident, _ = tx.contacts.get_or_create_identity("messenger", "PSID1")
        tx.contacts.set_email(ident.contact_id, "Ann@Example.org", verified=True)
        tx.contacts.add_identity(ident.contact_id, "email", "ann@example.org")
        return ident.contact_id

    contact_id = await store.write(setup)
    contact = await store.read(lambda tx: tx.contacts.get(contact_id))
    assert (contact.email, contact.email_verified) == ("ann@example.org", True)
    assert await store.read(lambda tx: tx.contacts.find_by_email("ANN@example.org")) == [contact_id]
    idents = await store.read(lambda tx: [(i.channel, i.address) for i in tx.contacts.identities_of(contact_id)])
    assert idents == [("messenger", "PSID1"), ("email", "ann@example.org")]
    with pytest.raises(UnknownRecordError):
        await store.write(lambda tx: tx.contacts.set_name(999, "x"))


async def test_conversations_open_and_close(store) -> None:
    def setup(tx):
        ident, _ = tx.contacts.get_or_create_identity("whatsapp", "+31600000001")
        assert tx.conversations.open_for_identity(ident.id) is None
        conv = tx.conversations.create(ident.contact_id, ident.id, "whatsapp", queue="billing", language="nl")
        return ident, conv

    ident, conv = await store.write(setup)
    assert (conv.status, conv.queue, conv.language) == ("queued", "billing", "nl")
    assert (await store.read(lambda tx: tx.conversations.open_for_identity(ident.id))).id == conv.id
    store.test_clock[0] += 10
    await store.write(lambda tx: tx.conversations.update(conv.id, status="assigned", agent_id=None, queue="vip"))
    got = await store.read(lambda tx: tx.conversations.get(conv.id))
    assert (got.status, got.queue, got.updated_at, got.closed_at) == ("assigned", "vip", 1_000_010.0, None)
    await store.write(lambda tx: tx.conversations.close(conv.id))
    got = await store.read(lambda tx: tx.conversations.get(conv.id))
    assert (got.status, got.closed_at) == ("closed", 1_000_010.0)
    assert await store.read(lambda tx: tx.conversations.open_for_identity(ident.id)) is None
    with pytest.raises(ValueError):
        await store.write(lambda tx: tx.conversations.update(conv.id, status="lost"))
    with pytest.raises(UnknownRecordError):
        await store.write(lambda tx: tx.conversations.update(12345, status="closed"))


async def _conversation(store, address: str = "+31600000002") -> int:
    def setup(tx):
        ident, _ = tx.contacts.get_or_create_identity("whatsapp", address)
        return tx.conversations.create(ident.contact_id, ident.id, "whatsapp").id

    return await store.write(setup)


async def test_messages_dedupe_status_and_history_page(store) -> None:
    conv = await _conversation(store)

    def insert_all(tx):
        return [
            tx.messages.insert(
                conv,
                direction="in",
                channel="whatsapp",
                text=f"t{i}",
                external_id=f"wamid.{i}",
                meta={"n": i},
                sensitive=i == 3,
            )  # fmt: skip
            for i in range(60)
        ]

    ids = await store.write(insert_all)
    assert None not in ids
    # the platform re-delivers: nothing new is stored
    again = await store.write(
        lambda tx: tx.messages.insert(conv, direction="in", channel="whatsapp", text="dup", external_id="wamid.5")
    )
    assert again is None
    # the same id on another channel is another message
    other = await store.write(
        lambda tx: tx.messages.insert(conv, direction="in", channel="messenger", text="x", external_id="wamid.5")
    )
    assert isinstance(other, int)
    assert await store.read(lambda tx: tx.messages.id_by_external("whatsapp", "wamid.5")) == ids[5]
    assert await store.write(lambda tx: tx.messages.set_status_by_external("whatsapp", "wamid.5", "read")) == ids[5]
    assert await store.write(lambda tx: tx.messages.set_status_by_external("whatsapp", "nope", "read")) is None
    page = await store.read(lambda tx: tx.messages.recent(conv, 50))
    assert [m.id for m in page] == ids[11:] + [other]  # newest 50, oldest first
    older = await store.read(lambda tx: tx.messages.recent(conv, 5, before_id=ids[11]))
    assert [m.text for m in older] == ["t6", "t7", "t8", "t9", "t10"]
    m5 = await store.read(lambda tx: tx.messages.get(ids[5]))
    assert (m5.status, m5.external_id, m5.meta, m5.direction) == ("read", "wamid.5", {"n": 5}, "in")
    assert (await store.read(lambda tx: tx.messages.get(ids[3]))).sensitive
    with pytest.raises(ValueError):
        await store.write(lambda tx: tx.messages.insert(conv, direction="sideways", channel="x", text="t"))


async def test_outbound_message_gets_platform_id_after_send(store) -> None:
    conv = await _conversation(store)
    mid = await store.write(
        lambda tx: tx.messages.insert(conv, direction="out", channel="whatsapp", text="hi", status="pending")
    )
    await store.write(lambda tx: tx.messages.set_external_id(mid, "wamid.out1", status="sent"))
    assert await store.read(lambda tx: tx.messages.id_by_external("whatsapp", "wamid.out1")) == mid
    msg = await store.read(lambda tx: tx.messages.get(mid))
    assert (msg.status, msg.external_id) == ("sent", "wamid.out1")


async def test_attachments_encrypted_files(store) -> None:
    conv = await _conversation(store)

    def setup(tx):
        mid = tx.messages.insert(conv, direction="in", channel="whatsapp", text="pic", external_id="wamid.p")
        a0 = tx.attachments.add(mid, 0, "image", mime="image/jpeg", meta={"caption": "receipt"})
        a1 = tx.attachments.add(mid, 1, "file", data=b"%PDF-1.7 data")
        return mid, a0, a1

    mid, a0, a1 = await store.write(setup)
    found = await store.read(lambda tx: tx.attachments.by_external("whatsapp", "wamid.p", 0))
    assert (found.id, found.kind, found.meta, found.file) == (a0, "image", {"caption": "receipt"}, None)
    with pytest.raises(UnknownRecordError):
        await store.read(lambda tx: tx.attachments.read(a0))
    await store.write(lambda tx: tx.attachments.store_data(a0, b"\xff\xd8 jpeg bytes", "image/jpeg"))
    assert await store.read(lambda tx: tx.attachments.read(a0)) == b"\xff\xd8 jpeg bytes"
    assert await store.read(lambda tx: tx.attachments.read(a1)) == b"%PDF-1.7 data"
    files = sorted(p.name for p in store.media_dir.iterdir())
    assert len(files) == 2 and all(len(name) == 32 for name in files)
    # replacing the bytes removes the old file after commit
    await store.write(lambda tx: tx.attachments.store_data(a0, b"new bytes"))
    assert len(list(store.media_dir.iterdir())) == 2
    # a file swapped for another attachment's file fails authentication
    first = await store.read(lambda tx: tx.attachments.get(a0))
    second = await store.read(lambda tx: tx.attachments.get(a1))
    (store.media_dir / first.file).write_bytes((store.media_dir / second.file).read_bytes())
    with pytest.raises(IntegrityError, match=f"attachments.file of row {a0}"):
        await store.read(lambda tx: tx.attachments.read(a0))


async def test_rolled_back_attachment_leaves_no_file(store) -> None:
    conv = await _conversation(store)

    def fail(tx):
        mid = tx.messages.insert(conv, direction="in", channel="whatsapp", text="x")
        tx.attachments.add(mid, 0, "image", data=b"bytes")
        raise RuntimeError("rolled back")

    with pytest.raises(RuntimeError):
        await store.write(fail)
    assert list(store.media_dir.iterdir()) == []


async def test_purge_closed_deletes_old_messages_and_media(store) -> None:
    old = await _conversation(store, "+31600000003")
    recent = await _conversation(store, "+31600000004")
    still_open = await _conversation(store, "+31600000005")

    def fill(tx):
        for conv in (old, recent, still_open):
            mid = tx.messages.insert(conv, direction="in", channel="whatsapp", text="x")
            tx.attachments.add(mid, 0, "file", data=b"data")

    await store.write(fill)
    await store.write(lambda tx: tx.conversations.close(old))
    store.test_clock[0] += 80 * 86400
    await store.write(lambda tx: tx.conversations.close(recent))
    store.test_clock[0] += 20 * 86400
    done = await store.purge_closed(90)
    assert done == {"conversations": 1, "messages": 1, "events": 0, "outbox": 0, "files": 1, "contacts": 1}
    assert (await store.purge_closed(90))["conversations"] == 0
    counts = await store.read(
        lambda tx: [
            tx._session.conn.execute("SELECT count(*) FROM messages WHERE conversation_id = ?", (c,)).fetchone()[0]
            for c in (old, recent, still_open)
        ]  # fmt: skip
    )
    assert counts == [0, 1, 1]
    assert len(list(store.media_dir.iterdir())) == 2
    # the conversation goes, and its contact with them: they had nothing else
    assert await store.read(lambda tx: tx.conversations.get(old)) is None
    assert await store.read(lambda tx: tx.contacts.find(Address("whatsapp", "+31600000003"))) is None
    [entry] = await store.read(lambda tx: [e for e in tx.audit.entries() if e.action == "retention.purge"])
    assert entry.detail == {**done, "closed_after_days": 90}


async def test_keys_and_seal_primitives(store) -> None:
    def work(tx):
        owner = KeyOwner.agent(7)
        assert not tx._session.has_key(owner)
        key_id = tx._session.new_key(owner)
        blob = tx._session.seal(owner, "agents", "totp_secret", 7, "JBSWY3DPEHPK3PXP")
        return key_id, blob

    key_id, blob = await store.write(work)
    assert isinstance(key_id, int)
    assert (
        await store.read(lambda tx: tx._session.open_text(KeyOwner.agent(7), "agents", "totp_secret", 7, blob))
        == "JBSWY3DPEHPK3PXP"
    )
    with pytest.raises(IntegrityError):
        await store.read(lambda tx: tx._session.open_text(KeyOwner.agent(8), "agents", "totp_secret", 7, blob))
    with pytest.raises(ValueError, match="not a table name"):
        await store.write(lambda tx: tx._session.next_id("messages; DROP TABLE keys"))
    system = await store.write(lambda tx: tx._session.seal(SYSTEM_KEY, "events", "detail", 1, b"\x00\x01"))
    assert await store.read(lambda tx: tx._session.open_bytes(SYSTEM_KEY, "events", "detail", 1, system)) == b"\x00\x01"
    assert await store.read(lambda tx: tx._session.blind("agent:whatsapp", "+1555")) == await store.write(
        lambda tx: tx._session.blind("agent:whatsapp", "+1555")
    )


async def test_foreign_keys_enforced(store, tmp_path, backend) -> None:
    with pytest.raises(backend.integrity_error):
        await store.write(lambda tx: tx.conversations.create(4242, None, "whatsapp"))
    conn = backend.raw(tmp_path)
    assert conn.execute("SELECT count(*) FROM conversations").fetchone()[0] == 0
    conn.close()


async def test_purge_in_chunks(store) -> None:
    conv = await _conversation(store, "+31600000006")
    await store.write(lambda tx: [tx.messages.insert(conv, direction="in", channel="whatsapp", text=str(i))
                                  for i in range(25)])  # fmt: skip
    await store.write(lambda tx: tx.conversations.close(conv))
    more = [await _conversation(store, f"+3160000010{i}") for i in range(4)]
    for other in more:
        await store.write(lambda tx, c=other: tx.conversations.close(c))
    store.test_clock[0] += 2 * 86400
    batches = store.batches
    done = await store.purge_closed(1, chunk=2)
    assert (done["conversations"], done["messages"], done["contacts"]) == (5, 25, 5)
    assert store.batches - batches == 3 + 2  # three chunks, then the audit entry and the checkpoint
    assert await store.read(lambda tx: tx._session.conn.execute("SELECT count(*) FROM messages").fetchone()[0]) == 0


async def test_ids_never_repeat_after_deletes(store) -> None:
    first = await store.write(lambda tx: tx.contacts.create(name="a"))
    second = await store.write(lambda tx: tx.contacts.create(name="b"))
    await store.write(lambda tx: tx.gdpr.erase_contact(second))
    third = await store.write(lambda tx: tx.contacts.create(name="c"))
    assert (first, second, third) == (1, 2, 3)
    # and the erased contact's old id is not quietly readable through the new one
    assert (await store.read(lambda tx: tx.contacts.get(third))).name == "c"
    assert await store.read(lambda tx: tx.contacts.get(second)) is None
