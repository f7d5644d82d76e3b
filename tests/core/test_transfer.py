"""/transfer and /decline through the relay's real ingest path, on a real store."""

from __future__ import annotations

from pathlib import Path

import pytest

from bridge import agents
from tests.core.agentkit import Desk, make_conversation

ALICE = "whatsapp:+31612345678"
BOB = "messenger:1001"
CAROL = "email:carol@example.org"
JAN = "whatsapp:+31600000001"


@pytest.fixture
async def desk(tmp_path: Path) -> Desk:  # type: ignore[misc]
    d = await Desk.open(tmp_path, history_messages=3)
    yield d
    await d.close()


async def conversation_with_alice(desk: Desk, *lines: str) -> int:
    """Alice (WhatsApp) and bob (Messenger) online; Jan's conversation is alice's, with some talk."""
    await desk.add_agent("alice", ALICE)
    await desk.add_agent("bob", BOB)
    await desk.login("alice")
    conv = 0
    for line in lines:
        if line.startswith("alice: "):
            await desk.say("alice", line.removeprefix("alice: "))
        else:
            conv = await desk.customer(JAN, line, name="Jan")
    await desk.login("bob")
    await desk.sent_to("alice")
    await desk.sent_to("bob")
    await desk.sent_to(None)
    return conv


async def audit_details(desk: Desk, action: str) -> list[object]:
    return [e.detail for e in await desk.store.read(lambda tx: tx.audit.entries()) if e.action == action]


async def test_transfer_to_online_agent_hands_over_note_and_last_n_messages(desk: Desk) -> None:
    conv = await conversation_with_alice(
        desk, "I was charged twice", "alice: Let me check.", "Invoice 4471", "alice: Found it.", "Thanks!"
    )
    await desk.say("alice", "/transfer bob Refund the second charge")
    assert await desk.sent_to("alice") == [f"[#{conv} Jan · WhatsApp] is now with bob."]
    assert await desk.sent_to("bob") == [
        f"[#{conv} Jan · WhatsApp] Handed over to you by alice. Note: Refund the second charge\n"
        "Last 3 message(s):\n"
        "Jan: Invoice 4471\n"
        "alice: Found it.\n"
        "Jan: Thanks!",
        f"[#{conv} Jan · WhatsApp] You can hand it back with /decline within 2 minutes.",
    ]
    bob, alice = await desk.agent("bob"), await desk.agent("alice")
    assert (await desk.conversation(conv)).agent_id == bob.id
    assert bob.current_conversation_id == conv and alice.current_conversation_id is None
    assert await audit_details(desk, "conversation.transfer") == [{"from": "alice", "to": "bob"}]
    # Without [routing] transfer_notice the customer is not told.
    assert [d for d in await desk.deliveries() if d.recipient_kind == "contact" and "colleague" in d.text] == []
    # Bob's plain reply now reaches Jan on WhatsApp.
    await desk.say("bob", "Refund is on its way.")
    to_jan = [d for d in await desk.deliveries() if d.recipient_kind == "contact"]
    assert to_jan[-1].text == "Refund is on its way." and to_jan[-1].channel == "whatsapp"


async def test_customer_notice_when_configured(tmp_path: Path) -> None:
    desk = await Desk.open(tmp_path, transfer_notice=True)
    try:
        conv = await conversation_with_alice(desk, "Hello")
        await desk.say("alice", "/transfer bob")
        to_jan = [d for d in await desk.deliveries() if d.recipient_kind == "contact" and d.conversation_id == conv]
        assert [d.text for d in to_jan] == ["A colleague will continue helping you."]
        assert (await desk.sent_to("bob"))[0] == (
            f"[#{conv} Jan · WhatsApp] Handed over to you by alice.\nLast 1 message(s):\nJan: Hello"
        )
    finally:
        await desk.close()


@pytest.mark.parametrize(
    ("setup", "reason"),
    [
        ("offline", "Cannot transfer to carol: they are not logged in."),
        ("disabled", "Cannot transfer to carol: their account is disabled."),
        ("full", "Cannot transfer to carol: they already have 1 open conversation(s), their maximum."),
        ("unknown", "There is no agent or queue named 'zoe'."),
        ("self", "is already yours."),
    ],
)
async def test_transfer_refusals_leave_the_conversation_with_the_sender(desk: Desk, setup: str, reason: str) -> None:
    conv = await conversation_with_alice(desk, "Hello")
    carol = await desk.add_agent("carol", CAROL, capacity=1)
    if setup == "disabled":
        await desk.store.write(lambda tx: agents.disable(tx, carol.id))
    if setup == "full":
        await desk.login("carol")
        await desk.store.write(
            lambda tx: make_conversation(tx, name="Kim", channel="messenger", address="3003", agent_id=carol.id)
        )
        assert await desk.store.read(lambda tx: tx.conversations.count_assigned(carol.id)) == 1
    target = {"unknown": "zoe", "self": "alice"}.get(setup, "carol")
    await desk.sent_to("alice")
    await desk.say("alice", f"/transfer {target} please")
    (answer,) = await desk.sent_to("alice")
    assert reason in answer
    alice = await desk.agent("alice")
    assert (await desk.conversation(conv)).agent_id == alice.id and alice.current_conversation_id == conv
    assert await audit_details(desk, "conversation.transfer") == []


async def test_transfer_to_queue_routes_to_an_agent_of_that_queue(desk: Desk) -> None:
    conv = await conversation_with_alice(desk, "I need an invoice copy")
    await desk.add_agent("carol", CAROL, queues=("billing",))
    await desk.login("carol")
    await desk.sent_to("carol")
    await desk.say("alice", "/transfer billing Needs invoice 4471")
    assert await desk.sent_to("alice") == [f"[#{conv} Jan · WhatsApp] moved to queue billing and is now with carol."]
    carol = await desk.agent("carol")
    after = await desk.conversation(conv)
    assert after.queue == "billing" and after.agent_id == carol.id
    texts = await desk.sent_to("carol")
    (handoff,) = [t for t in texts if "Handed over" in t]
    assert handoff.splitlines()[-1] == "note by alice: Needs invoice 4471"


async def test_transfer_to_queue_with_nobody_online_waits(desk: Desk) -> None:
    conv = await conversation_with_alice(desk, "Hello")
    await desk.add_agent("carol", CAROL, queues=("billing",))  # serves billing, not logged in
    await desk.say("alice", "/transfer billing")
    assert await desk.sent_to("alice") == [
        f"[#{conv} Jan · WhatsApp] moved to queue billing; it waits there for an agent."
    ]
    after = await desk.conversation(conv)
    assert after.status == "queued" and after.agent_id is None
    texts = await desk.login("carol")
    assert texts[0] == "You are logged in for 8 hours. 1 waiting conversation(s) follow."


async def test_decline_within_time_hands_back_to_the_sender(desk: Desk) -> None:
    conv = await conversation_with_alice(desk, "Hello")
    await desk.say("alice", "/transfer bob")
    await desk.sent_to("alice")
    await desk.sent_to("bob")
    desk.clock.advance(60)
    await desk.customer(JAN, "Anyone there?", name="Jan")  # relayed to bob meanwhile
    await desk.say("bob", "/decline")
    assert await desk.sent_to("bob") == [
        f"[#{conv} Jan · WhatsApp] Anyone there?",
        f"You declined [#{conv} Jan · WhatsApp]; it went back to alice.",
    ]
    assert await desk.sent_to("alice") == [
        f"[#{conv} Jan · WhatsApp] bob declined the transfer; the conversation is yours again."
    ]
    alice, bob = await desk.agent("alice"), await desk.agent("bob")
    assert (await desk.conversation(conv)).agent_id == alice.id
    assert alice.current_conversation_id == conv and bob.current_conversation_id is None
    assert await audit_details(desk, "conversation.transfer_declined") == [{"by": "bob", "back_to": "alice"}]
    await desk.say("bob", "/decline")
    assert await desk.sent_to("bob") == ["There is no transfer of a conversation to you to decline."]


async def test_decline_after_the_window_is_refused(desk: Desk) -> None:
    conv = await conversation_with_alice(desk, "Hello")
    await desk.say("alice", "/transfer bob")
    desk.clock.advance(121)
    await desk.sent_to("bob")
    await desk.say("bob", f"/decline {conv}")
    (answer,) = await desk.sent_to("bob")
    assert answer.startswith(f"Too late to decline conversation #{conv}:")  # a refusal names no customer
    assert (await desk.conversation(conv)).agent_id == (await desk.agent("bob")).id


async def test_decline_when_sender_logged_out_goes_to_the_queue(desk: Desk) -> None:
    conv = await conversation_with_alice(desk, "Hello")
    await desk.say("alice", "/transfer bob")
    await desk.say("alice", "/logout")
    await desk.sent_to("bob")
    await desk.say("bob", "/decline")
    assert await desk.sent_to("bob") == [
        f"You declined [#{conv} Jan · WhatsApp]; alice is not logged in, so it waits in the queue default."
    ]
    after = await desk.conversation(conv)
    assert after.status == "queued" and after.agent_id is None
    # Whoever logs in next gets it, with its history.
    await desk.sent_to("alice")
    texts = await desk.login("alice")
    assert texts[0].startswith("You are logged in") and texts[1].startswith(f"[#{conv} Jan · WhatsApp] Handed over")


async def test_decline_of_a_conversation_not_transferred_to_you_is_refused(desk: Desk) -> None:
    conv = await conversation_with_alice(desk, "Hello")
    await desk.say("alice", f"/decline {conv}")
    assert await desk.sent_to("alice") == [f"There is no transfer of #{conv} to you to decline."]
