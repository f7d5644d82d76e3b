"""The chat through a real Bridge: store, routing, relay, outbox, history and live streams.

A webchat customer is answered by an agent on another channel (the memory
test channel stands in for their WhatsApp), exactly as any customer is.
"""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from bridge.relay.history import customer_history
from tests.e2e.harness import add_agent, login, wait_for
from tests.plugins.webchat.conftest import BASE, BridgeChat, Events

ALICE = "alice-phone"  # the agent's address on the memory channel


def address_id(address: str) -> str:
    return address.partition(":")[2]


async def open_events(chat: BridgeChat, token: str, **headers: str) -> Events:
    response = await chat.client.get(f"{BASE}/events", params={"token": token}, headers=headers)
    assert response.status == 200 and response.content_type == "text/event-stream"
    return Events(response)


async def test_a_customer_sees_their_message_and_the_queued_notice_live(bridge_chat: BridgeChat) -> None:
    token, _ = await bridge_chat.session()
    events = await open_events(bridge_chat, token)
    await bridge_chat.say(token, "Is the shop open on Sunday?")
    event, event_id, first = await events.next()
    assert event == "message" and set(first) == {"id", "direction", "text", "created_at"}
    assert (first["direction"], first["text"], event_id) == ("in", "Is the shop open on Sunday?", str(first["id"]))
    _, _, notice = await events.next()
    assert notice["direction"] == "system" and "busy" in notice["text"]
    assert notice["id"] > first["id"]


async def test_an_agent_on_another_channel_answers_and_the_reply_appears_live(bridge_chat: BridgeChat) -> None:
    bridge = bridge_chat.bridge
    memory = bridge.channels["memory"]
    _agent, secret = await add_agent(bridge, "alice", f"memory:{ALICE}")
    await login(bridge, "memory", ALICE, secret)
    token, _ = await bridge_chat.session(name="Ann")
    events = await open_events(bridge_chat, token)
    await bridge_chat.say(token, "Where is my parcel?")
    assert (await events.next())[2]["text"] == "Where is my parcel?"
    await wait_for(lambda: "[#1 Ann · Web chat] Where is my parcel?" in memory.texts_to(ALICE), what="relay")
    await memory.inbound(ALICE, "/note customer sounds worried")  # type: ignore[attr-defined]
    await memory.inbound(ALICE, "It left the warehouse today.")  # type: ignore[attr-defined]
    _, _, reply = await events.next()
    assert (reply["direction"], reply["text"]) == ("out", "It left the warehouse today.")
    # The internal note never reaches the customer's stream.
    assert await events.nothing_within(0.5)


async def test_a_reconnecting_page_gets_the_history_and_only_what_it_missed(bridge_chat: BridgeChat) -> None:
    token, _ = await bridge_chat.session()
    for text in ("one", "two"):
        await bridge_chat.say(token, text)
    replay = await open_events(bridge_chat, token)
    seen = [(await replay.next())[2] for _ in range(3)]
    assert [(m["direction"], m["text"]) for m in seen][:1] == [("in", "one")]
    assert {m["text"] for m in seen} >= {"one", "two"} and seen == sorted(seen, key=lambda m: m["id"])
    # EventSource reconnects with Last-Event-ID: only newer messages come.
    resumed = await open_events(bridge_chat, token, **{"Last-Event-ID": str(seen[-1]["id"])})
    assert await resumed.nothing_within(0.3)
    await bridge_chat.say(token, "three")
    assert (await resumed.next())[2]["text"] == "three"


async def test_a_customers_other_tab_shows_what_they_wrote(bridge_chat: BridgeChat) -> None:
    token, _ = await bridge_chat.session()
    await bridge_chat.say(token, "first")
    tab = await open_events(bridge_chat, token)
    await tab.next()
    await tab.next()  # the queued notice
    await bridge_chat.say(token, "from my phone")
    assert (await tab.next())[2]["text"] == "from my phone"


async def test_streams_show_only_their_own_chat(bridge_chat: BridgeChat) -> None:
    ann, _ = await bridge_chat.session()
    bob, _ = await bridge_chat.session()
    anns = await open_events(bridge_chat, ann)
    await bridge_chat.say(bob, "bob's secret question")
    await bridge_chat.say(ann, "ann's question")
    assert (await anns.next())[2]["text"] == "ann's question"


async def test_name_and_email_become_the_contacts_and_are_not_kept_in_the_message(bridge_chat: BridgeChat) -> None:
    token, address = await bridge_chat.session(name="Ann", email="Ann@Example.org")
    await bridge_chat.say(token, "hello")

    def read(tx):  # type: ignore[no-untyped-def]
        identity = tx.contacts.find_identity("webchat", address_id(address))
        contact = tx.contacts.get(identity.contact_id)
        conv = tx.conversations.open_for_identity(identity.id)
        return contact, tx.messages.recent(conv.id, 10)

    contact, messages = await bridge_chat.bridge.store.read(read)
    assert (contact.name, contact.email, contact.email_verified) == ("Ann", "ann@example.org", False)
    assert messages[0].meta == {}


async def test_after_close_the_page_still_shows_the_conversation_and_a_new_message_opens_another(
    bridge_chat: BridgeChat,
) -> None:
    bridge = bridge_chat.bridge
    memory = bridge.channels["memory"]
    _agent, secret = await add_agent(bridge, "alice", f"memory:{ALICE}")
    await login(bridge, "memory", ALICE, secret)
    token, address = await bridge_chat.session()
    await bridge_chat.say(token, "thanks, that was all")
    await wait_for(lambda: any("that was all" in t for t in memory.texts_to(ALICE)), what="relay")
    await memory.inbound(ALICE, "/close")  # type: ignore[attr-defined]
    history = bridge.channels["webchat"].ctx.history

    async def closed_notice() -> bool:
        return any(e.direction == "system" for e in await history(address_id(address), 50))

    await wait_for(closed_notice, what="the closed notice")
    entries = await history(address_id(address), 50)
    assert entries[0].text == "thanks, that was all"
    await bridge_chat.say(token, "one more thing")
    assert [e.text for e in await history(address_id(address), 50)] == ["one more thing"]


async def test_history_is_limited_and_refuses_what_is_no_address(bridge_chat: BridgeChat) -> None:
    token, address = await bridge_chat.session()
    for n in range(5):
        await bridge_chat.say(token, f"m{n}")
    history = bridge_chat.bridge.channels["webchat"].ctx.history
    assert [e.text for e in await history(address_id(address), 2)] == ["m3", "m4"]
    assert await history(address_id(address).upper(), 1) != []  # normalized by the channel
    assert await history("0" * 32, 10) == []
    assert await history(token, 10) == []
    assert await history(address_id(address), 0) == []
    # Read straight from the store: the same rule.
    entries = await bridge_chat.bridge.store.read(lambda tx: customer_history(tx, "webchat", address_id(address), 3))
    assert [e.direction for e in entries] == ["in", "in", "in"]


async def test_neither_token_nor_text_is_logged_or_stored_in_plaintext(
    bridge_chat: BridgeChat, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    token, address = await bridge_chat.session(email="ann@example.org")
    await bridge_chat.say(token, "my secret parcel question")
    events = await open_events(bridge_chat, token)
    await events.next()
    logs = caplog.text
    assert "POST /webhooks/webchat/messages 201" in logs
    for secret in (token, "my secret parcel question", "ann@example.org"):
        assert secret not in logs
    stored = b"".join(p.read_bytes() for p in (tmp_path / "var").glob("carebridge.db*"))
    for secret in (token, address_id(address), "my secret parcel question", "ann@example.org"):
        assert secret.encode() not in stored


async def test_secure_mails_a_webchat_customer_at_the_address_they_gave_and_never_shows_the_text(
    bridge_chat: BridgeChat,
) -> None:
    bridge = bridge_chat.bridge
    memory, mail = bridge.channels["memory"], bridge.channels["email"]
    _agent, secret = await add_agent(bridge, "alice", f"memory:{ALICE}")
    await login(bridge, "memory", ALICE, secret)
    token, address = await bridge_chat.session(name="Ann", email="ann@example.org")
    events = await open_events(bridge_chat, token)
    await bridge_chat.say(token, "What is my new PIN?")
    await events.next()
    await wait_for(lambda: any("new PIN" in t for t in memory.texts_to(ALICE)), what="relay")
    await memory.inbound(ALICE, "/secure Your new PIN is 4711")  # type: ignore[attr-defined]
    await wait_for(lambda: bool(mail.texts_to("ann@example.org")), what="the mail")  # type: ignore[attr-defined]
    assert "4711" in mail.texts_to("ann@example.org")[0]  # type: ignore[attr-defined]
    _, _, notice = await events.next()
    assert notice["direction"] == "system" and "a***@example.org" in notice["text"] and "4711" not in notice["text"]
    history = await bridge.channels["webchat"].ctx.history(address_id(address), 50)
    assert not any("4711" in entry.text for entry in history)
