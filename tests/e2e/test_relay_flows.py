"""End to end over loopback: real webhooks, real plugins, fake Meta servers, real TOTP logins."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pyotp

from tests.e2e.harness import add_agent, outbox_rows, wait_for
from tests.e2e.world import World

CUSTOMER = "+15550002222"
ALICE_PSID = "7000000000000001"  # agent on Messenger
BOB = "+15550009999"  # agent on WhatsApp


def code(secret: str) -> str:
    return pyotp.TOTP(secret).now()


async def test_whatsapp_customer_and_messenger_agent_talk_both_ways(
    world: World, make_world_bridge: Callable[..., Any]
) -> None:
    bridge = await make_world_bridge()
    _alice, secret = await add_agent(bridge, "alice", f"messenger:{ALICE_PSID}")
    await world.messenger(ALICE_PSID, f"/login {code(secret)}")
    await wait_for(lambda: any("logged in" in t for t in world.fb_texts(ALICE_PSID)), what="login answer")
    wamid = await world.whatsapp(CUSTOMER, "Where is my parcel?", name="Ann Example")
    await wait_for(
        lambda: "[#1 Ann Example · WhatsApp] Where is my parcel?" in world.fb_texts(ALICE_PSID), what="relay"
    )
    # a plain reply goes to the current conversation; a quoted one answers in thread
    await world.messenger(ALICE_PSID, "It left the warehouse today.")
    relayed_mid = world.fb_mid_of(ALICE_PSID, "Where is my parcel?")
    await world.messenger(ALICE_PSID, "Tracking code follows by mail.", reply_to=relayed_mid)
    await wait_for(lambda: len(world.wa_texts(CUSTOMER)) == 2, what="both replies on WhatsApp")
    assert world.wa_texts(CUSTOMER) == ["It left the warehouse today.", "Tracking code follows by mail."]
    assert [s.context for s in world.wa.sent if s.text] == [None, wamid]
    # the customer writes again: relayed to the same agent, still prefixed
    await world.whatsapp(CUSTOMER, "Thanks!")
    await wait_for(lambda: "[#1 Ann Example · WhatsApp] Thanks!" in world.fb_texts(ALICE_PSID))


async def test_nobody_online_queues_with_notice_then_login_delivers(
    world: World, make_world_bridge: Callable[..., Any]
) -> None:
    bridge = await make_world_bridge()
    _alice, secret = await add_agent(bridge, "alice", f"messenger:{ALICE_PSID}")
    await world.whatsapp(CUSTOMER, "Anyone there?", name="Ann")
    await world.whatsapp(CUSTOMER, "Hello?")
    await wait_for(lambda: len(world.wa_texts(CUSTOMER)) == 1, what="the queued notice")
    assert "busy" in world.wa_texts(CUSTOMER)[0]
    assert world.fb_texts(ALICE_PSID) == []
    await world.messenger(ALICE_PSID, f"/login {code(secret)}")
    await wait_for(
        lambda: sum(t.startswith("[#1 Ann") for t in world.fb_texts(ALICE_PSID)) == 2, what="assigned at login"
    )
    relayed = [t for t in world.fb_texts(ALICE_PSID) if t.startswith("[#1")]
    assert relayed == ["[#1 Ann · WhatsApp] Anyone there?", "[#1 Ann · WhatsApp] Hello?"]
    assert len(world.wa_texts(CUSTOMER)) == 1  # the notice went once per waiting period


async def test_transfer_between_agents_on_different_channels_with_history(
    world: World, make_world_bridge: Callable[..., Any]
) -> None:
    bridge = await make_world_bridge()
    _alice, sa = await add_agent(bridge, "alice", f"messenger:{ALICE_PSID}")
    _bob, sb = await add_agent(bridge, "bob", f"whatsapp:{BOB}")
    await world.messenger(ALICE_PSID, f"/login {code(sa)}")
    await world.whatsapp(CUSTOMER, "My invoice is wrong", name="Ann")
    await wait_for(lambda: any("invoice is wrong" in t for t in world.fb_texts(ALICE_PSID)))
    await world.messenger(ALICE_PSID, "Let me check that for you.")
    await wait_for(lambda: world.wa_texts(CUSTOMER) == ["Let me check that for you."])
    await world.whatsapp(BOB, f"/login {code(sb)}")
    await wait_for(lambda: any("logged in" in t for t in world.wa_texts(BOB)))
    await world.messenger(ALICE_PSID, "/transfer bob billing question, needs a credit note")
    await wait_for(lambda: any("credit note" in t for t in world.wa_texts(BOB)), what="hand-off")
    to_bob = world.wa_texts(BOB)
    (handoff,) = [t for t in to_bob if "credit note" in t]
    # One message: header with the note, then the history, on bob's own channel.
    assert handoff.splitlines() == [
        "[#1 Ann · WhatsApp] Handed over to you by alice. Note: billing question, needs a credit note",
        "Last 2 message(s):",
        "Ann: My invoice is wrong",
        "alice: Let me check that for you.",
    ]
    assert any("bob" in t.lower() for t in world.fb_texts(ALICE_PSID)[-2:]), "alice got a confirmation"
    # bob answers from WhatsApp; the customer gets it; the customer's next message goes to bob
    await world.whatsapp(BOB, "Credit note is on its way.")
    await wait_for(lambda: "Credit note is on its way." in world.wa_texts(CUSTOMER))
    await world.whatsapp(CUSTOMER, "Great")
    await wait_for(lambda: "[#1 Ann · WhatsApp] Great" in world.wa_texts(BOB))
    assert not any("Great" in t for t in world.fb_texts(ALICE_PSID))


async def test_platform_500_twice_then_200_delivers_once_in_order(
    world: World, make_world_bridge: Callable[..., Any]
) -> None:
    bridge = await make_world_bridge()
    _alice, secret = await add_agent(bridge, "alice", f"messenger:{ALICE_PSID}")
    await world.messenger(ALICE_PSID, f"/login {code(secret)}")
    await world.whatsapp(CUSTOMER, "hi", name="Ann")
    await wait_for(lambda: "[#1 Ann · WhatsApp] hi" in world.fb_texts(ALICE_PSID), what="relay")
    await wait_for(lambda: len(world.wa.read_marks) == 1, what="the customer's message marked read once relayed")
    world.wa.fail_next(1, 1)  # HTTP 500, twice, then the platform accepts
    for text in ("one", "two", "three"):
        await world.messenger(ALICE_PSID, text)
    await wait_for(lambda: len(world.wa_texts(CUSTOMER)) == 3, what="all three")
    assert world.wa_texts(CUSTOMER) == ["one", "two", "three"]

    async def recorded() -> bool:
        rows = await outbox_rows(bridge)
        return [(r[3], r[4]) for r in rows if r[2] == "contact"] == [("sent", 3), ("sent", 1), ("sent", 1)]

    await wait_for(recorded, what="the outcomes committed: three attempts for the first, one each for the others")
    calls = [c for c in world.wa.calls if c.startswith("POST") and c.endswith("/messages")]
    assert len(world.wa.sent) == 3  # accepted exactly once each
    assert len(calls) == 2 + 3 + 1  # two refused attempts, three sends, one read mark


async def test_closed_windows_on_both_legs_are_never_silent(
    world: World, make_world_bridge: Callable[..., Any]
) -> None:
    bridge = await make_world_bridge()
    _alice, sa = await add_agent(bridge, "alice", f"messenger:{ALICE_PSID}")
    await world.messenger(ALICE_PSID, f"/login {code(sa)}")
    await world.whatsapp(CUSTOMER, "old question", name="Ann")
    await wait_for(lambda: any("old question" in t for t in world.fb_texts(ALICE_PSID)))
    world.wa.user_wrote(CUSTOMER, ts=0)  # a day passes on the platform: the customer's window closes
    await world.messenger(ALICE_PSID, "Sorry for the wait!")
    await wait_for(lambda: world.wa_templates(CUSTOMER) == ["hello_world"], what="re-engagement template")
    await wait_for(lambda: any("will not deliver" in t for t in world.fb_texts(ALICE_PSID)), what="agent told")
    assert world.wa_texts(CUSTOMER) == []
    await world.whatsapp(CUSTOMER, "I'm back")
    await wait_for(lambda: world.wa_texts(CUSTOMER) == ["Sorry for the wait!"], what="held reply released")
    assert world.wa_templates(CUSTOMER) == ["hello_world"]


async def test_whatsapp_agent_with_a_closed_window_gets_the_template_then_the_held_messages(
    world: World, make_world_bridge: Callable[..., Any]
) -> None:
    bridge = await make_world_bridge()
    _bob, secret = await add_agent(bridge, "bob", f"whatsapp:{BOB}")
    await world.whatsapp(BOB, f"/login {code(secret)}", ts=0)  # logged in long ago: his window has closed
    await world.messenger("7000000000000099", "Hello from Messenger")
    await wait_for(lambda: world.wa_templates(BOB) == ["hello_world"], what="template to the agent")
    assert not any("Hello from Messenger" in t for t in world.wa_texts(BOB))
    await world.whatsapp(BOB, "/list")  # bob answers the template: his window opens
    await wait_for(lambda: any("Hello from Messenger" in t for t in world.wa_texts(BOB)), what="held relay released")
    assert world.wa_templates(BOB) == ["hello_world"]


async def test_window_failure_reported_by_status_webhook_takes_the_held_path(
    world: World, make_world_bridge: Callable[..., Any]
) -> None:
    bridge = await make_world_bridge()
    world.wa.window_mode = "status"  # 200 first, then a signed `failed` status with 131047
    _alice, sa = await add_agent(bridge, "alice", f"messenger:{ALICE_PSID}")
    await world.messenger(ALICE_PSID, f"/login {code(sa)}")
    await world.whatsapp(CUSTOMER, "question", name="Ann")
    await wait_for(lambda: any("question" in t for t in world.fb_texts(ALICE_PSID)))
    world.wa.user_wrote(CUSTOMER, ts=0)
    await world.messenger(ALICE_PSID, "late answer")
    await wait_for(lambda: world.wa_templates(CUSTOMER) == ["hello_world"], what="template after the failed status")
    await wait_for(lambda: any("will not deliver" in t for t in world.fb_texts(ALICE_PSID)), what="agent told")
    await world.wa.drain()
    await world.whatsapp(CUSTOMER, "hello again")
    await wait_for(lambda: world.wa_texts(CUSTOMER) == ["late answer"], what="re-sent once the window opened")


async def test_no_plaintext_text_or_address_in_the_store_files_or_logs(
    world: World, make_world_bridge: Callable[..., Any], tmp_path: Any, caplog: Any
) -> None:
    caplog.set_level("DEBUG")
    bridge = await make_world_bridge()
    _alice, secret = await add_agent(bridge, "alice", f"messenger:{ALICE_PSID}")
    await world.messenger(ALICE_PSID, f"/login {code(secret)}")
    await world.whatsapp(CUSTOMER, "Zanzibar parcel question", name="Quirinus Example")
    await wait_for(lambda: any("Zanzibar" in t for t in world.fb_texts(ALICE_PSID)))
    world.wa.fail_next(1)  # one failure, so an error and a retry are recorded too
    await world.messenger(ALICE_PSID, "Yodelling answer")
    await wait_for(lambda: world.wa_texts(CUSTOMER) == ["Yodelling answer"])
    secrets = [b"Zanzibar", b"Yodelling", b"Quirinus", CUSTOMER[1:].encode(), ALICE_PSID.encode()]
    files = [p for p in (tmp_path / "var").rglob("*") if p.is_file()]
    assert any(p.name.endswith(".db") for p in files) and any(p.name.endswith("-wal") for p in files)
    for path in files:
        data = path.read_bytes()
        for secret_text in secrets:
            assert secret_text not in data, f"{secret_text!r} in plaintext in {path.name}"
    logged = "\n".join(r.getMessage() for r in caplog.records if r.levelno >= 20)
    for secret_text in secrets:
        assert secret_text.decode() not in logged, f"{secret_text!r} in the logs"


async def test_messenger_customer_gets_response_inside_24h_and_the_human_agent_tag_after(
    world: World, make_world_bridge: Callable[..., Any]
) -> None:
    bridge = await make_world_bridge()
    _bob, secret = await add_agent(bridge, "bob", f"whatsapp:{BOB}")
    await world.whatsapp(BOB, f"/login {code(secret)}")
    fresh, late = "7000000000000050", "7000000000000051"
    await world.messenger(fresh, "Is the shop open on Sunday?")
    await wait_for(lambda: any("open on Sunday" in t for t in world.wa_texts(BOB)), what="relay to bob")
    await world.whatsapp(BOB, "Yes, from 10 to 16.")
    await wait_for(lambda: world.fb_texts(fresh) == ["Yes, from 10 to 16."], what="reply inside 24 h")
    # A message that reaches us 25 hours after it was written: only the HUMAN_AGENT tag may answer it.
    await world.messenger(late, "My order never came", ts=time.time() - 25 * 3600)
    await wait_for(lambda: any("never came" in t for t in world.wa_texts(BOB)), what="late relay to bob")
    await world.whatsapp(BOB, "Sorry! A new one is on its way.")
    await wait_for(lambda: world.fb_texts(late) == ["Sorry! A new one is on its way."], what="tagged reply")
    sent = {body["recipient"]["id"]: body for body in world.graph.sent if body["recipient"]["id"] in (fresh, late)}
    assert sent[fresh]["messaging_type"] == "RESPONSE" and "tag" not in sent[fresh]
    assert sent[late]["messaging_type"] == "MESSAGE_TAG" and sent[late]["tag"] == "HUMAN_AGENT"


async def test_a_long_hand_off_reaches_a_messenger_agent_split_in_order(
    world: World, make_world_bridge: Callable[..., Any]
) -> None:
    bridge = await make_world_bridge()
    _alice, sa = await add_agent(bridge, "alice", f"messenger:{ALICE_PSID}")
    _bob, sb = await add_agent(bridge, "bob", f"whatsapp:{BOB}")
    await world.whatsapp(BOB, f"/login {code(sb)}")
    lines = [f"Line {n}: " + "details of the broken washing machine " * 7 for n in range(10)]
    for line in lines:
        await world.whatsapp(CUSTOMER, line, name="Ann")
    await wait_for(lambda: sum("washing machine" in t for t in world.wa_texts(BOB)) == 10, what="relays to bob")
    await world.messenger(ALICE_PSID, f"/login {code(sa)}")
    await wait_for(lambda: any("logged in" in t for t in world.fb_texts(ALICE_PSID)), what="alice's login")
    await world.whatsapp(BOB, "/transfer alice")
    await wait_for(lambda: any("Line 9" in t for t in world.fb_texts(ALICE_PSID)), what="the hand-off's last part")
    parts = [t for t in world.fb_texts(ALICE_PSID) if "logged in" not in t]
    assert len(parts) >= 2 and all(len(p) <= 2000 for p in parts)  # Messenger's limit: the channel split it
    joined = "\n".join(parts)
    assert joined.startswith("[#1 Ann · WhatsApp] Handed over to you by bob.")
    assert [joined.index(f"Line {n}:") for n in range(10)] == sorted(joined.index(f"Line {n}:") for n in range(10))


async def test_messenger_customer_silent_for_over_a_week_is_held_without_a_template_until_they_write(
    world: World, make_world_bridge: Callable[..., Any]
) -> None:
    bridge = await make_world_bridge()
    _bob, secret = await add_agent(bridge, "bob", f"whatsapp:{BOB}")
    await world.whatsapp(BOB, f"/login {code(secret)}")
    psid = "7000000000000060"
    await world.messenger(psid, "Any news on my claim?", ts=time.time() - 8 * 86400)
    await wait_for(lambda: any("my claim" in t for t in world.wa_texts(BOB)), what="relay to bob")
    await world.whatsapp(BOB, "Approved!")
    await wait_for(lambda: any("write again" in t for t in world.wa_texts(BOB)), what="bob told it is held")
    notice = next(t for t in world.wa_texts(BOB) if "write again" in t)
    assert notice.startswith("[#1 Customer 1 · Messenger]") and "re-engagement" not in notice
    assert world.fb_texts(psid) == [] and world.graph.sent == []  # Messenger has no template to knock with
    rows = await outbox_rows(bridge)
    assert [(r[3], r[5]) for r in rows if r[2] == "contact"] == [("held", 0)]
    await world.messenger(psid, "Hello?")
    await wait_for(lambda: world.fb_texts(psid) == ["Approved!"], what="the held reply once they wrote")
