"""The Instagram channel keeps the contract every channel keeps with the core (``bridge.testing``)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import pytest
from carebridge_instagram import InstagramChannel

from bridge import SimulatedRequest
from bridge.testing import ChannelContract, start_server
from carebridge_meta import signed_body
from tests.fakes.instagram_graph import FakeInstagramGraph
from tests.plugins.instagram.conftest import APP_SECRET, CUSTOMER, IG_USER_ID, OTHER, TOKEN, VERIFY_TOKEN


@dataclass
class Account:
    graph: FakeInstagramGraph
    url: str


class TestInstagramContract(ChannelContract):
    channel_class = InstagramChannel
    recipients = (CUSTOMER, OTHER)

    @pytest.fixture
    async def platform(self) -> AsyncIterator[Account]:
        graph = FakeInstagramGraph(ig_user_id=IG_USER_ID, token=TOKEN, app_secret=APP_SECRET)
        server = await start_server(graph.app)
        yield Account(graph, graph.graph_url(server))
        await server.close()

    def section(self, platform: Account) -> dict[str, Any]:
        return {
            "enabled": True, "ig_user_id": IG_USER_ID, "access_token": TOKEN, "app_secret": APP_SECRET,
            "verify_token": VERIFY_TOKEN, "graph_url": platform.url,
        }  # fmt: skip

    def prepare(self, platform: Account, recipient: str) -> None:
        platform.graph.customer_wrote(recipient)

    def sent_texts(self, platform: Account, recipient: str) -> list[str]:
        return platform.graph.texts_to(recipient)

    def fail_after(self, platform: Account, accepted: int) -> None:
        platform.graph.fail_next(1, code=2, after=accepted)  # Meta's "unexpected error, retry later"

    def reply_request(
        self, platform: Account, section: dict[str, Any], sender: str, text: str
    ) -> SimulatedRequest | None:
        """The customer replies to our last message: ``message.reply_to.mid`` names it."""
        quoted = [b for b in platform.graph.sent if b["recipient"]["id"] == sender][-1]["_message_id"]
        request = InstagramChannel.simulate(section, sender, text)
        payload = json.loads(request.body)
        payload["entry"][0]["messaging"][0]["message"]["reply_to"] = {"mid": quoted}
        body, headers = signed_body(payload, section["app_secret"])
        return SimulatedRequest(request.method, request.path, headers, body)
