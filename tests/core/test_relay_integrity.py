"""A tampered ciphertext in a real store is reported and skipped; the relay keeps going.

Each test flips one byte of one sealed cell on disk (as a disk fault or an
attacker would) and then drives the relay through its real paths: sending
from the outbox, relaying to an agent, building a hand-off's history.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from bridge.errors import DeliveryError
from bridge.models import InboundMessage
from bridge.relay import routing
from tests.e2e.harness import (
    CHANNELS,
    add_agent,
    login,
    make_bridge,
    outbox_rows,
    wait_for,
)

FAST = '[delivery]\nretry_base = "10ms"\nretry_max = "40ms"\nmax_attempts = 3\n'


def flip(tx: Any, table: str, column: str, row_id: int) -> None:
    """Flip the last byte of one sealed cell."""
    query = f"SELECT {column} FROM {table} WHERE id = ?"  # noqa: S608 (test-chosen names)
    blob = bytearray(tx._session.conn.execute(query, (row_id,)).fetchone()[0])
    blob[-1] ^= 0x01
    tx._session.conn.execute(f"UPDATE {table} SET {column} = ? WHERE id = ?", (bytes(blob), row_id))  # noqa: S608


def errors(caplog: pytest.LogCaptureFixture, needle: str) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR and needle in r.getMessage()]


async def test_a_tampered_outbox_row_is_failed_with_a_reason_and_later_deliveries_still_go(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    bridge = await make_bridge(tmp_path, FAST)
    try:
        mem, second = bridge.channels["memory"], bridge.channels["second"]
        _alice, secret = await add_agent(bridge, "alice", "second:alice")
        await login(bridge, "second", "alice", secret)
        await mem.inbound("cust", "Hello", sender_name="Jan")
        await wait_for(lambda: "[#1 Jan · Memory] Hello" in second.texts_to("alice"))

        def reply_and_tamper(tx: Any) -> int:
            """Alice's reply is queued and its sealed body damaged before the worker sees it."""
            mid = routing.send_to_customer(tx, bridge.relay.rctx, 1, "First answer", agent_id=_alice.id)
            row = tx._session.conn.execute("SELECT id FROM outbox WHERE message_id = ?", (mid,)).fetchone()[0]
            flip(tx, "outbox", "body", row)
            return mid

        message_id = await bridge.relay.write(reply_and_tamper)
        await second.inbound("alice", "Second answer")
        await wait_for(lambda: mem.texts_to("cust") == ["Second answer"], what="the next reply")
        rows = await outbox_rows(bridge)
        (bad,) = [r for r in rows if r[3] == "failed"]
        assert bad[2] == "contact" and "integrity" in (bad[7] or "")
        assert bad[4] == 1, "tried once, not in a loop"
        status = await bridge.store.read(lambda tx: tx.messages.get(message_id).status)
        assert status == "failed"
        await wait_for(lambda: any("could not be delivered" in t for t in second.texts_to("alice")), what="notice")
        assert errors(caplog, "integrity")
    finally:
        await bridge.close()


async def test_a_tampered_customer_message_is_reported_to_the_agent_and_the_rest_is_relayed(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    bridge = await make_bridge(tmp_path, FAST)
    try:
        mem, second = bridge.channels["memory"], bridge.channels["second"]
        alice, secret_a = await add_agent(bridge, "alice", "second:alice")
        _bob, secret_b = await add_agent(bridge, "bob", "second:bob")
        await mem.inbound("cust", "Hello", sender_name="Jan")  # nobody online: it waits
        card = await mem.inbound("cust", "My card is 4242")
        await mem.inbound("cust", "Anyone?")
        bad = await bridge.store.read(lambda tx: tx.messages.id_by_external("memory", card))
        await bridge.store.write(lambda tx: flip(tx, "messages", "body", bad))
        await login(bridge, "second", "alice", secret_a)
        await wait_for(lambda: any("Anyone?" in t for t in second.texts_to("alice")), what="relay")
        relayed = [t for t in second.texts_to("alice") if t.startswith("[#1")]
        assert relayed == [
            "[#1 Jan · Memory] Hello",
            f"[#1 Jan · Memory] (message {bad} failed its integrity check in the store and cannot be shown)",
            "[#1 Jan · Memory] Anyone?",
        ]
        assert errors(caplog, f"messages.body of row {bad}")
        status = await bridge.store.read(
            lambda tx: tx._session.conn.execute("SELECT status FROM messages WHERE id = ?", (bad,)).fetchone()[0]
        )
        assert status == "failed"
        # The hand-off's history says so too, and the transfer itself goes through.
        await login(bridge, "second", "bob", secret_b)
        await second.inbound("alice", "/transfer bob")
        await wait_for(lambda: any("Handed over" in t for t in second.texts_to("bob")), what="hand-off")
        (handoff,) = [t for t in second.texts_to("bob") if "Handed over" in t]
        assert "Jan: [unreadable]" in handoff.splitlines() and "Jan: Anyone?" in handoff.splitlines()
        assert (await bridge.store.read(lambda tx: tx.conversations.get(1))).agent_id != alice.id
    finally:
        await bridge.close()


async def test_a_tampered_contact_name_does_not_stop_their_messages(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    bridge = await make_bridge(tmp_path, FAST)
    try:
        mem, second = bridge.channels["memory"], bridge.channels["second"]
        _alice, secret = await add_agent(bridge, "alice", "second:alice")
        await login(bridge, "second", "alice", secret)
        await mem.inbound("cust", "Hello", sender_name="Jan")
        await wait_for(lambda: "[#1 Jan · Memory] Hello" in second.texts_to("alice"))
        await bridge.store.write(lambda tx: flip(tx, "contacts", "name", 1))
        await mem.inbound("cust", "Still there?")
        await wait_for(lambda: "[#1 Customer 1 · Memory] Still there?" in second.texts_to("alice"), what="relay")
        await second.inbound("alice", "Yes")
        await wait_for(lambda: mem.texts_to("cust") == ["Yes"], what="the reply")
        assert errors(caplog, "contacts.name of row 1")
    finally:
        await bridge.close()


async def test_a_reply_to_a_customer_whose_address_is_damaged_is_refused_with_a_reason(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    bridge = await make_bridge(tmp_path, FAST)
    try:
        mem, second = bridge.channels["memory"], bridge.channels["second"]
        _alice, secret = await add_agent(bridge, "alice", "second:alice")
        await login(bridge, "second", "alice", secret)
        await mem.inbound("cust", "Hello", sender_name="Jan")
        await mem.inbound("other", "Hi there", sender_name="Kim")
        await wait_for(lambda: "[#2 Kim · Memory] Hi there" in second.texts_to("alice"))
        await bridge.store.write(lambda tx: flip(tx, "contact_identities", "address", 1))
        await second.inbound("alice", "/switch 1")
        await second.inbound("alice", "Yes?")
        await wait_for(lambda: any("could not be delivered" in t for t in second.texts_to("alice")), what="notice")
        (notice,) = [t for t in second.texts_to("alice") if "could not be delivered" in t]
        assert notice.startswith("[#1 Jan · Memory]") and "integrity check" in notice
        assert errors(caplog, "contact_identities.address of row 1")
        # Kim's conversation is unaffected.
        await second.inbound("alice", "/switch 2")
        await second.inbound("alice", "Hello Kim")
        await wait_for(lambda: mem.texts_to("other") == ["Hello Kim"], what="the other reply")
        assert mem.texts_to("cust") == []
    finally:
        await bridge.close()


async def test_a_conversation_whose_agent_record_is_damaged_goes_to_a_colleague(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    bridge = await make_bridge(tmp_path, FAST)
    try:
        mem, second = bridge.channels["memory"], bridge.channels["second"]
        alice, secret = await add_agent(bridge, "alice", "second:alice")
        await login(bridge, "second", "alice", secret)
        await mem.inbound("cust", "Hello", sender_name="Jan")
        await wait_for(lambda: "[#1 Jan · Memory] Hello" in second.texts_to("alice"))
        bob, secret_b = await add_agent(bridge, "bob", "second:bob")
        await login(bridge, "second", "bob", secret_b)
        await bridge.store.write(lambda tx: flip(tx, "agents", "address", alice.id))
        await mem.inbound("cust", "Are you there?")  # acknowledged, not a 500 loop
        await wait_for(lambda: "[#1 Jan · Memory] Are you there?" in second.texts_to("bob"), what="relay to bob")
        assert (await bridge.store.read(lambda tx: tx.conversations.get(1))).agent_id == bob.id
        assert errors(caplog, "its agent is unreadable")
        await second.inbound("alice", "hello?")  # her own messages are dropped with a log line, not a crash
        assert errors(caplog, "agent whose record is unreadable")
    finally:
        await bridge.close()


async def test_routing_skips_an_online_agent_whose_record_is_damaged(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    bridge = await make_bridge(tmp_path, FAST)
    try:
        mem, second = bridge.channels["memory"], bridge.channels["second"]
        alice, secret_a = await add_agent(bridge, "alice", "second:alice")
        _bob, secret_b = await add_agent(bridge, "bob", "second:bob")
        await login(bridge, "second", "alice", secret_a)
        await login(bridge, "second", "bob", secret_b)
        await bridge.store.write(lambda tx: flip(tx, "agents", "address", alice.id))
        for n in range(3):  # least_busy would give alice some of them
            await mem.inbound(f"cust{n}", f"Question {n}", sender_name=f"C{n}")
        await wait_for(lambda: len([t for t in second.texts_to("bob") if "Question" in t]) == 3, what="routing")
        assert errors(caplog, f"agent {alice.id} is unreadable")
    finally:
        await bridge.close()


async def test_window_warnings_still_reach_the_others_when_one_agent_record_is_damaged(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    channels = CHANNELS + "[channels.windowed]\nenabled = true\n"
    bridge = await make_bridge(tmp_path, '[routing]\nwindow_warning = "30m"\n', channels=channels)
    try:
        win = bridge.channels["windowed"]
        ten_minutes_left = time.time() - 3600 + 600
        agents = []
        for name, number in (("anna", "+15550001"), ("wanda", "+15550002")):
            agent, secret = await add_agent(bridge, name, f"windowed:{number}")
            await login(bridge, "windowed", number, secret, timestamp=ten_minutes_left)
            agents.append(agent)
        await bridge.store.write(lambda tx: flip(tx, "agents", "address", agents[0].id))
        assert await bridge.relay.check_windows() == 1
        await wait_for(lambda: any("closes in about" in t for t in win.texts_to("+15550002")), what="warning")
        assert errors(caplog, f"agent {agents[0].id} is unreadable and cannot be warned")
    finally:
        await bridge.close()


async def test_a_damaged_identity_address_does_not_stop_that_customers_new_messages(tmp_path: Path) -> None:
    """The identity is found by its blind index, so its sealed address is not needed to store."""
    bridge = await make_bridge(tmp_path, FAST)
    try:
        mem, second = bridge.channels["memory"], bridge.channels["second"]
        alice, secret = await add_agent(bridge, "alice", "second:alice")
        await login(bridge, "second", "alice", secret)
        await mem.inbound("cust", "Hello", sender_name="Jan")
        await wait_for(lambda: "[#1 Jan · Memory] Hello" in second.texts_to("alice"))
        await bridge.store.write(lambda tx: flip(tx, "contact_identities", "address", 1))
        message = InboundMessage(channel="memory", sender="other", external_id="x-1", text="Hi", timestamp=time.time())
        batch = [message, replace(message, sender="cust", external_id="x-2", text="Hello again?")]
        await bridge.relay.ingest("memory", batch)  # acknowledged: no exception
        for external_id, text in (("x-1", "Hi"), ("x-2", "Hello again?")):
            stored = await bridge.store.read(
                lambda tx, e=external_id: tx.messages.get(tx.messages.id_by_external("memory", e))
            )
            assert stored is not None and stored.text == text
        await wait_for(lambda: "[#1 Jan · Memory] Hello again?" in second.texts_to("alice"))
    finally:
        await bridge.close()


async def test_an_agent_command_stopped_by_a_damaged_record_is_undone_and_the_agent_told(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    bridge = await make_bridge(tmp_path, FAST)
    try:
        mem, second = bridge.channels["memory"], bridge.channels["second"]
        alice, secret_a = await add_agent(bridge, "alice", "second:alice")
        bob, secret_b = await add_agent(bridge, "bob", "second:bob")
        await login(bridge, "second", "alice", secret_a)
        await login(bridge, "second", "bob", secret_b)
        await mem.inbound("cust", "Hello", sender_name="Jan")
        await wait_for(lambda: any("Hello" in t for t in second.texts_to("alice") + second.texts_to("bob")))
        owner = (await bridge.store.read(lambda tx: tx.conversations.get(1))).agent_id
        sender, target = ("alice", bob) if owner == alice.id else ("bob", alice)
        await bridge.store.write(lambda tx: flip(tx, "agents", "address", target.id))
        await second.inbound(sender, f"/transfer {target.name}")
        await wait_for(lambda: any("could not be handled" in t for t in second.texts_to(sender)), what="notice")
        assert (await bridge.store.read(lambda tx: tx.conversations.get(1))).agent_id == owner
        assert errors(caplog, f"agent {sender}'s message stopped by a damaged record")
    finally:
        await bridge.close()


async def test_a_failed_delivery_is_recorded_even_when_its_agent_cannot_be_told(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    bridge = await make_bridge(tmp_path, FAST)
    try:
        mem, second = bridge.channels["memory"], bridge.channels["second"]
        alice, secret = await add_agent(bridge, "alice", "second:alice")
        await login(bridge, "second", "alice", secret)
        await mem.inbound("cust", "Hello", sender_name="Jan")
        await wait_for(lambda: "[#1 Jan · Memory] Hello" in second.texts_to("alice"))
        mem.script = [DeliveryError("(#100) Invalid parameter", retryable=False, code="100")]
        mem.gate = asyncio.Event()  # the platform answers only once alice's record is damaged
        await second.inbound("alice", "An answer the platform refuses")
        await bridge.store.write(lambda tx: flip(tx, "agents", "address", alice.id))
        mem.gate.set()

        async def failed_once() -> bool:
            rows = [r for r in await outbox_rows(bridge) if r[2] == "contact"]
            return [(r[3], r[4]) for r in rows] == [("failed", 1)]

        await wait_for(failed_once, what="the refused delivery failed after one attempt")
        assert len(mem.attempts) == 1
        assert errors(caplog, "cannot tell the agent about delivery")
    finally:
        await bridge.close()
