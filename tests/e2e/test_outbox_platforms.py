"""Lost answers and fan-out through the real Meta plugins and the fake Graph APIs.

A platform that accepts a message and then drops the connection (the answer
lost in transit) must not make the bridge send it again blindly: WhatsApp's
statuses and Messenger's echoes carry our delivery id, and settle it. Where
nothing reports it, the second send is counted as a possible duplicate. And
a 2 MB customer text reaches the agent as a few messages, not hundreds.
"""

from __future__ import annotations

import io
import time
from collections.abc import Callable
from typing import Any

import aiohttp
import pyotp

from bridge.app.bridge import Bridge
from carebridge_meta import signed_body
from tests.core.test_outbox_faults import metric
from tests.e2e.harness import add_agent, outbox_rows, wait_for
from tests.e2e.world import PAGE_ID, PAGE_SECRET, World

CUSTOMER = "+15550002222"
ALICE = "7000000000000001"  # agent on Messenger
ALICE_WA = "+15550001111"  # agent on WhatsApp
FAST = '[delivery]\nretry_base = "20ms"\nretry_max = "100ms"\nmax_attempts = 8\n'


async def _alice_on_messenger(world: World, build: Callable[..., Any], extra: str) -> Bridge:
    bridge: Bridge = await build(FAST + extra)
    _agent, secret = await add_agent(bridge, "alice", f"messenger:{ALICE}")
    await world.messenger(ALICE, f"/login {pyotp.TOTP(secret).now()}")
    await wait_for(lambda: any("logged in" in t for t in world.fb_texts(ALICE)), what="alice's login")
    world.graph.webhook_url = f"{world.base_url}/webhooks/messenger"
    world.graph.app_secret = PAGE_SECRET
    await world.whatsapp(CUSTOMER, "Where is my parcel?", name="Ann")
    await wait_for(lambda: any("my parcel" in t for t in world.fb_texts(ALICE)), what="the relay")
    return bridge


async def _messenger_big(world: World, psid: str, text: str) -> None:
    """A customer's Messenger message with a very long text, signed as Meta signs it (streamed, not one write)."""
    now_ms = int(time.time() * 1000)
    payload = {"object": "page", "entry": [{"id": PAGE_ID, "time": now_ms, "messaging": [
        {"sender": {"id": psid}, "recipient": {"id": PAGE_ID}, "timestamp": now_ms,
         "message": {"mid": "m_big_1", "text": text}},
    ]}]}  # fmt: skip
    world.graph.customer_wrote(psid)
    body, headers = signed_body(payload, PAGE_SECRET)
    assert len(body) < 2 * 1024 * 1024
    async with (
        aiohttp.ClientSession() as session,
        session.post(f"{world.base_url}/webhooks/messenger", data=io.BytesIO(body), headers=headers) as resp,
    ):
        assert resp.status == 200, await resp.text()


async def _contact_rows(bridge: Bridge) -> list[tuple[str, int]]:
    return [(r[3], r[4]) for r in await outbox_rows(bridge) if r[2] == "contact"]


async def test_a_whatsapp_answer_lost_after_acceptance_is_settled_by_its_status(
    world: World, make_world_bridge: Callable[..., Any]
) -> None:
    bridge = await _alice_on_messenger(world, make_world_bridge, 'confirm_wait = "1h"\n')
    world.wa.status_webhooks = True  # statuses carry biz_opaque_callback_data, as Meta's do
    world.wa.fail_next("accept_drop")
    await world.messenger(ALICE, "It left the warehouse today.")
    await world.messenger(ALICE, "Tracking follows.")

    async def settled() -> bool:
        return await _contact_rows(bridge) == [("sent", 1), ("sent", 1)]

    await wait_for(settled, what="both replies recorded, the first through its status")
    await world.wa.drain()
    assert world.wa_texts(CUSTOMER) == ["It left the warehouse today.", "Tracking follows."]
    assert metric(bridge, "carebridge_deliveries_total", channel="whatsapp", outcome="uncertain") == 1
    assert metric(bridge, "carebridge_deliveries_total", channel="whatsapp", outcome="confirmed") == 1
    assert metric(bridge, "carebridge_deliveries_possible_duplicates_total", channel="whatsapp") == 0


async def test_a_messenger_answer_lost_after_acceptance_is_settled_by_its_echo(
    world: World, make_world_bridge: Callable[..., Any]
) -> None:
    bridge = await _alice_on_messenger(world, make_world_bridge, 'confirm_wait = "1h"\n')
    world.graph.echo_webhooks = True  # the Page is subscribed to message_echoes
    world.graph.drop_answers(1)
    await world.whatsapp(CUSTOMER, "Any news?")

    async def settled() -> bool:
        rows = [(r[3], r[4]) for r in await outbox_rows(bridge) if r[2] == "agent"]
        return rows[-1] == ("sent", 1)

    await wait_for(settled, what="the relay recorded through its echo")
    await world.graph.drain()
    assert [t for t in world.fb_texts(ALICE) if "Any news?" in t] == ["[#1 Ann · WhatsApp] Any news?"]
    assert metric(bridge, "carebridge_deliveries_total", channel="messenger", outcome="confirmed") == 1


async def test_each_reply_is_delivered_once_or_counted_when_the_platform_drops_answers(
    world: World, make_world_bridge: Callable[..., Any]
) -> None:
    """Issue: accept-then-drop produced 24 duplicate relays and 96 duplicate agent replies in 60 s."""
    bridge = await _alice_on_messenger(world, make_world_bridge, 'confirm_wait = "300ms"\n')
    texts = [f"reply number {n}" for n in range(8)]
    for n, text in enumerate(texts):
        world.wa.status_webhooks = n % 2 == 0  # half the time WhatsApp's statuses reach us
        if n % 4 != 3:
            world.wa.fail_next("accept_drop")
        await world.messenger(ALICE, text)

        async def settled(count: int = n + 1) -> bool:
            rows = await _contact_rows(bridge)
            return len(rows) == count and all(status == "sent" for status, _attempts in rows)

        await wait_for(settled, what=f"{text} settled")
        await world.wa.drain()
    got = world.wa_texts(CUSTOMER)
    assert sorted(set(got), key=texts.index) == texts, "nothing lost, order kept"
    assert all(got.count(t) in (1, 2) for t in texts)
    extra = len(got) - len(texts)
    # Every second send is a counted one; the reported ones were never sent twice.
    assert extra == metric(bridge, "carebridge_deliveries_possible_duplicates_total", channel="whatsapp") > 0
    assert all(got.count(t) == 1 for n, t in enumerate(texts) if n % 2 == 0)


async def test_a_2mb_text_reaches_a_whatsapp_agent_as_at_most_four_messages(
    world: World, make_world_bridge: Callable[..., Any]
) -> None:
    """Issue: one 2 MiB webhook with a 2 MB text was relayed to an agent as 512 WhatsApp messages."""
    bridge: Bridge = await make_world_bridge(FAST)
    _agent, secret = await add_agent(bridge, "alice", f"whatsapp:{ALICE_WA}")
    await world.whatsapp(ALICE_WA, f"/login {pyotp.TOTP(secret).now()}")
    await wait_for(lambda: any("logged in" in t for t in world.wa_texts(ALICE_WA)), what="alice's login")
    text = " ".join(f"word{n:06d}" for n in range(190_000))  # 2,089,999 characters, in a body under 2 MiB
    await _messenger_big(world, "2000000000000001", text)
    await wait_for(lambda: any("[#1" in t for t in world.wa_texts(ALICE_WA)), what="the relay")
    await wait_for(lambda: any("full message is in the Carebridge console" in t for t in world.wa_texts(ALICE_WA)))
    relayed = [t for t in world.wa_texts(ALICE_WA) if "logged in" not in t]
    assert len(relayed) <= 4
    assert relayed[0].startswith("[#1 Customer 1 · Messenger] word000000 word000001")
    assert relayed[-1].endswith("more characters: the full message is in the Carebridge console]")
    # The store keeps the whole text (the console shows it).
    stored = await bridge.store.read(lambda tx: tx.messages.recent(1, 1))
    assert stored[0].text == text
