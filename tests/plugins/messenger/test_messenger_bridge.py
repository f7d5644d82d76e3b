"""The plugin inside the real core: Bridge, store, relay and web app, against the fake Graph API.

These prove the channel's side of issue 4's "done when": a customer's
Messenger text, signed as Meta signs it, is stored once and relayed, and the
agent's reply reaches the fake Graph API with the right ``messaging_type``.
Customer and agent are both on Messenger (the e2e suite covers an agent on
Messenger serving a WhatsApp customer).
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable
from typing import Any

import pyotp
import pytest
from aiohttp.test_utils import TestServer

import carebridge_messenger
from bridge.app.bridge import Bridge
from bridge.testing import BridgeFactory
from carebridge_meta import signed_body
from tests.e2e.harness import add_agent, wait_for
from tests.fakes.messenger_graph import FakeMessengerGraph
from tests.plugins.messenger.conftest import (
    APP_SECRET,
    PAGE_ID,
    PAGE_TOKEN,
    VERIFY_TOKEN,
)

CUSTOMER = "2000000000000001"
AGENT = "7000000000000001"
DAY = 86400.0
_mids = itertools.count(1)


def count_messages(tx: Any) -> int:
    return int(tx._session.conn.execute("SELECT COUNT(*) FROM messages").fetchone()[0])


class Page:
    """The bridge under test plus Meta's side of it: the fake Graph API and signed webhooks."""

    def __init__(self, bridge: Bridge, graph: FakeMessengerGraph, webhook_url: str) -> None:
        self.bridge = bridge
        self.graph = graph
        self.webhook_url = webhook_url

    async def write(self, psid: str, text: str, *, ago: float = 0.0) -> tuple[str, int]:
        """``psid`` writes ``text`` (``ago`` seconds in the past, as Meta's timestamp says).

        Posts the webhook exactly as Meta would (ASCII-escaped, signed) and
        returns the mid and the bridge's HTTP status.
        """
        sent_ms = int((time.time() - ago) * 1000)
        mid = f"m_plugin_{next(_mids)}_{sent_ms}"
        event = {"sender": {"id": psid}, "recipient": {"id": PAGE_ID}, "timestamp": sent_ms,
                 "message": {"mid": mid, "text": text}}  # fmt: skip
        payload = {"object": "page", "entry": [{"id": PAGE_ID, "time": sent_ms, "messaging": [event]}]}
        self.graph.customer_wrote(psid, sent_ms / 1000)
        body, headers = signed_body(payload, APP_SECRET)
        async with self.bridge.http.post(self.webhook_url, data=body, headers=headers) as resp:
            return mid, resp.status

    def sent_to(self, psid: str) -> list[dict[str, Any]]:
        """The Send API bodies the fake accepted for ``psid``, in order."""
        return [b for b in self.graph.sent if b["recipient"]["id"] == psid]


@pytest.fixture
async def page(serve_app: Callable[..., Any], bridge_factory: BridgeFactory) -> Page:
    graph = FakeMessengerGraph(page_id=PAGE_ID, token=PAGE_TOKEN)
    graph_server: TestServer = await serve_app(graph.app)
    section = (
        "[channels.messenger]\n"
        f'page_id = "{PAGE_ID}"\npage_access_token = "{PAGE_TOKEN}"\napp_secret = "{APP_SECRET}"\n'
        f'verify_token = "{VERIFY_TOKEN}"\ngraph_url = "{graph_server.make_url("/v25.0")}"\n'
    )
    bridge = await bridge_factory(section, plugins=[("messenger", carebridge_messenger)], start=False)
    server = await bridge_factory.serve(bridge)
    return Page(bridge, graph, str(server.make_url("/webhooks/messenger")))


async def logged_in_agent(page: Page) -> None:
    _, secret = await add_agent(page.bridge, "alice", f"messenger:{AGENT}")
    assert (await page.write(AGENT, f"/login {pyotp.TOTP(secret).now()}"))[1] == 200


def texts(bodies: list[dict[str, Any]]) -> list[str]:
    return [b["message"]["text"] for b in bodies]


async def test_customer_text_is_stored_once_relayed_and_answered_as_a_response(page: Page) -> None:
    await logged_in_agent(page)
    mid, status = await page.write(CUSTOMER, "Où est mon colis ?")  # escaped non-ASCII, signed as Meta signs
    assert status == 200
    await wait_for(lambda: any("Où est mon colis ?" in t for t in texts(page.sent_to(AGENT))), what="relay")

    # Meta redelivers the same POST (e.g. our 200 was lost): stored once, relayed once.
    before = await page.bridge.store.read(count_messages)
    event = {"sender": {"id": CUSTOMER}, "recipient": {"id": PAGE_ID}, "timestamp": int(time.time() * 1000),
             "message": {"mid": mid, "text": "Où est mon colis ?"}}  # fmt: skip
    body, headers = signed_body({"object": "page", "entry": [{"id": PAGE_ID, "messaging": [event]}]}, APP_SECRET)
    async with page.bridge.http.post(page.webhook_url, data=body, headers=headers) as resp:
        assert resp.status == 200
    count = await page.bridge.store.read(count_messages)
    assert count == before, "the redelivered mid is not stored again"

    await page.write(AGENT, "It left the warehouse today.")
    await wait_for(lambda: texts(page.sent_to(CUSTOMER)) == ["It left the warehouse today."], what="reply")
    (reply,) = page.sent_to(CUSTOMER)
    assert reply["messaging_type"] == "RESPONSE" and "tag" not in reply
    assert reply["message"]["metadata"].startswith(carebridge_messenger.webhook.METADATA_TAG)
    assert sum("Où est mon colis ?" in t for t in texts(page.sent_to(AGENT))) == 1
    assert page.bridge.channel_state("messenger")[0].value == "connected"


async def test_reply_after_24_hours_carries_the_human_agent_tag(page: Page) -> None:
    await logged_in_agent(page)
    assert (await page.write(CUSTOMER, "Are you there?", ago=2 * DAY))[1] == 200
    await wait_for(lambda: any("Are you there?" in t for t in texts(page.sent_to(AGENT))), what="relay")
    await page.write(AGENT, "Yes, sorry for the wait.")
    await wait_for(lambda: texts(page.sent_to(CUSTOMER)) == ["Yes, sorry for the wait."], what="tagged reply")
    (reply,) = page.sent_to(CUSTOMER)
    assert (reply["messaging_type"], reply["tag"]) == ("MESSAGE_TAG", "HUMAN_AGENT")


async def test_reply_after_seven_days_is_not_sent_and_the_agent_is_told(page: Page) -> None:
    await logged_in_agent(page)
    assert (await page.write(CUSTOMER, "Anyone?", ago=8 * DAY))[1] == 200
    await wait_for(lambda: any("Anyone?" in t for t in texts(page.sent_to(AGENT))), what="relay")
    told_before = len(page.sent_to(AGENT))
    await page.write(AGENT, "Here now.")
    await wait_for(lambda: len(page.sent_to(AGENT)) > told_before, what="the agent is told")
    assert page.sent_to(CUSTOMER) == [], "nothing is sent blindly outside the 7-day window"
    messages = [b for b in page.graph.requests if isinstance(b, dict) and "message" in b]
    assert not any(b["recipient"]["id"] == CUSTOMER for b in messages), "not even tried"
    notices = texts(page.sent_to(AGENT))[told_before:]
    assert any("has not written for too long" in t for t in notices), notices
