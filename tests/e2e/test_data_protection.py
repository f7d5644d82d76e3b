"""Retention and erasure leave nothing an auditor with the files and the master key could read.

A real Bridge (in-process, memory channels) carries one customer through
everything that writes their text: relays, an attachment with its bytes, an
agent's reply, a note, ``/list`` and ``/switch``, a transfer with a note and
history, ``/close``. Then the real CLI purges or erases them while the
Bridge keeps running, and the database, its WAL and the media files are
searched, plainly and by opening every sealed cell with every key left.
"""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

import pyotp

from bridge.app.bridge import Bridge
from bridge.models import Attachment
from bridge.store.keyfile import load_master_key
from tests.core.cellscan import cells_naming, data_keys, raw_hits, readable_cells
from tests.daemon import run_cli
from tests.e2e.harness import add_agent, login, make_bridge, wait_for

CUSTOMER = "+15550001234"
NAME = "Cust Onemarker"
OTHER = "+15550004321"
ALICE = "+15550000100"
BOB = "+15550000200"
MARKERS = (NAME, CUSTOMER, "RETAINMARK", "REPLYMARK", "NOTEMARK", "TRANSFERMARK", "PIXELMARK")


async def _agent_says(bridge: Bridge, address: str, text: str, expect: str) -> None:
    second = bridge.channels["second"]
    before = len(second.texts_to(address))  # type: ignore[attr-defined]
    await second.inbound(address, text)  # type: ignore[attr-defined]
    await wait_for(
        lambda: any(expect in t for t in second.texts_to(address)[before:]),  # type: ignore[attr-defined]
        what=f"answer to {text!r}",
    )


async def _everything_about_one_customer(bridge: Bridge) -> None:
    """One customer's text in every place it can be written; a second customer stays."""
    mem, second = bridge.channels["memory"], bridge.channels["second"]
    _alice, alice_secret = await add_agent(bridge, "alice", f"second:{ALICE}")
    _bob, bob_secret = await add_agent(bridge, "bob", f"second:{BOB}")
    await login(bridge, "second", ALICE, alice_secret)
    await wait_for(lambda: any("logged in" in t for t in second.texts_to(ALICE)), what="alice's login")  # type: ignore[attr-defined]
    photo = Attachment("image", media_id="media-1", mime="image/png", meta={"caption": "RETAINMARK photo"})
    external = await mem.inbound(CUSTOMER, "hello RETAINMARK", sender_name=NAME, attachments=(photo,))  # type: ignore[attr-defined]
    await bridge.relay.save_media("memory", external, 0, b"PIXELMARK" * 40, "image/png")
    await wait_for(lambda: any("RETAINMARK" in t for t in second.texts_to(ALICE)), what="relay to alice")  # type: ignore[attr-defined]
    await second.inbound(ALICE, "REPLYMARK from alice")  # type: ignore[attr-defined]
    await wait_for(lambda: mem.texts_to(CUSTOMER) == ["REPLYMARK from alice"], what="reply to the customer")  # type: ignore[attr-defined]
    await _agent_says(bridge, ALICE, "/note NOTEMARK for later", "Note added")
    await _agent_says(bridge, ALICE, "/list", "Your conversations")
    await _agent_says(bridge, ALICE, "/switch 1", "Now answering")
    await login(bridge, "second", BOB, bob_secret)
    await wait_for(lambda: any("logged in" in t for t in second.texts_to(BOB)), what="bob's login")  # type: ignore[attr-defined]
    await _agent_says(bridge, ALICE, "/transfer bob TRANSFERMARK wants a refund", "is now with bob")
    await wait_for(lambda: any("TRANSFERMARK" in t for t in second.texts_to(BOB)), what="hand-off to bob")  # type: ignore[attr-defined]
    await _agent_says(bridge, BOB, "/list", "Your conversations")
    await _agent_says(bridge, BOB, "/close", "Closed")
    # another customer, whose data must stay readable
    await mem.inbound(OTHER, "keep KEEPMARK", sender_name="Other Person")  # type: ignore[attr-defined]
    await wait_for(lambda: any("KEEPMARK" in m.text for m in second.sent), what="the other relay")  # type: ignore[attr-defined]
    # everything the customer's data went into has really been written
    assert any(NAME in t for t in second.texts_to(ALICE))  # type: ignore[attr-defined]


def _sealed_blobs(db: Path, contact_id: int) -> list[bytes]:
    """Every ciphertext stored for the contact now (to look for its copies after they are gone)."""
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        convs = "SELECT id FROM conversations WHERE contact_id = ?"
        queries = [
            f"SELECT body FROM messages WHERE conversation_id IN ({convs})",
            f"SELECT body FROM outbox WHERE conversation_id IN ({convs})",
            f"SELECT detail FROM events WHERE detail IS NOT NULL AND conversation_id IN ({convs})",
            "SELECT wrapped FROM keys WHERE owner_kind = 'contact' AND owner_id = ?",
        ]
        return [row[0] for q in queries for row in conn.execute(q, (contact_id,))]
    finally:
        conn.close()


def _nothing_left(db: Path, master: bytes, blobs: list[bytes]) -> None:
    cells = readable_cells(db, data_keys(db, master))
    assert cells_naming(cells, *MARKERS) == []
    assert raw_hits(db, *(m.encode() for m in MARKERS), *blobs) == []
    # the other customer is untouched
    assert cells_naming(cells, "KEEPMARK"), "the other customer's data went too"


async def test_retention_run_purges_everything_of_a_closed_conversation(tmp_path: Path) -> None:
    bridge = await make_bridge(tmp_path)
    config = tmp_path / "bridge.toml"
    db = tmp_path / "var" / "carebridge.db"
    media = tmp_path / "var" / "carebridge-media"
    try:
        await _everything_about_one_customer(bridge)
        blobs = _sealed_blobs(db, 1)
        assert len(list(media.iterdir())) == 1
        conn = sqlite3.connect(db)
        conn.execute("UPDATE conversations SET closed_at = ? WHERE contact_id = 1", (time.time() - 91 * 86400,))
        conn.commit()
        conn.close()

        status, out, err = await run_cli("retention", "run", "--dry-run", "-c", str(config))
        assert status == 0, err
        assert "would purge 1 conversation(s)" in out and "1 contact(s)" in out
        assert not any(marker in out + err for marker in MARKERS)  # counts only, never content
        assert await bridge.store.read(lambda tx: tx.conversations.get(1)) is not None

        status, out, err = await run_cli("retention", "run", "-c", str(config))
        assert status == 0, err
        assert "purged 1 conversation(s)" in out and "1 media file(s)" in out and "1 contact(s)" in out
        assert not any(marker in out + err for marker in MARKERS)
        # the running daemon sees it, and keeps working
        assert await bridge.store.read(lambda tx: tx.contacts.get(1)) is None
        assert list(media.iterdir()) == []
        _nothing_left(db, load_master_key(f"file:{tmp_path / 'var' / 'master.key'}"), blobs)
        status, out, err = await run_cli("audit", "verify", "-c", str(config))
        assert status == 0, err
    finally:
        await bridge.close()


async def test_gdpr_erase_leaves_nothing_that_names_the_contact(tmp_path: Path) -> None:
    bridge = await make_bridge(tmp_path)
    config = tmp_path / "bridge.toml"
    db = tmp_path / "var" / "carebridge.db"
    try:
        await _everything_about_one_customer(bridge)
        blobs = _sealed_blobs(db, 1)
        status, out, err = await run_cli("gdpr", "erase", "1", "--yes", "-c", str(config))
        assert status == 0, err
        _nothing_left(db, load_master_key(f"file:{tmp_path / 'var' / 'master.key'}"), blobs)
        # what remains is the audit entry that an erasure happened (ids and counts, no data)
        entries = await bridge.store.read(lambda tx: tx.audit.entries("contact:1"))
        assert [e.action for e in entries] == ["gdpr.erase"]
    finally:
        await bridge.close()


async def test_idle_conversation_is_closed_and_the_customer_told(tmp_path: Path) -> None:
    bridge = await make_bridge(tmp_path, '[retention]\nclose_idle_after = "2s"\n')
    try:
        mem, second = bridge.channels["memory"], bridge.channels["second"]
        _alice, secret = await add_agent(bridge, "alice", f"second:{ALICE}")
        await second.inbound(ALICE, f"/login {pyotp.TOTP(secret).now()}")  # type: ignore[attr-defined]
        await mem.inbound(CUSTOMER, "anyone?", sender_name=NAME)  # type: ignore[attr-defined]
        await wait_for(lambda: any("anyone?" in t for t in second.texts_to(ALICE)), what="relay")  # type: ignore[attr-defined]
        await wait_for(lambda: len(mem.texts_to(CUSTOMER)) == 1, timeout=20, what="the idle notice")  # type: ignore[attr-defined]
        assert "no activity" in mem.texts_to(CUSTOMER)[0]  # type: ignore[attr-defined]
        conv = await bridge.store.read(lambda tx: tx.conversations.get(1))
        assert conv is not None and conv.status == "closed"
        await wait_for(lambda: any("closed after" in t for t in second.texts_to(ALICE)), what="the agent told")  # type: ignore[attr-defined]
        # the customer writing again starts a new conversation
        await mem.inbound(CUSTOMER, "back again")  # type: ignore[attr-defined]
        await wait_for(lambda: any("[#2 " in t for t in second.texts_to(ALICE)), what="a new conversation")  # type: ignore[attr-defined]
    finally:
        await bridge.close()
