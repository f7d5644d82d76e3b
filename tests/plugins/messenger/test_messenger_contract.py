"""The Messenger channel keeps the contract every channel keeps with the core (``bridge.testing``)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import pytest

import carebridge_messenger
from bridge import SimulatedRequest
from bridge.testing import ChannelContract, start_server
from carebridge_meta import signed_body
from tests.fakes.messenger_graph import FakeMessengerGraph
from tests.plugins.messenger.conftest import APP_SECRET, PAGE_ID, PAGE_TOKEN, VERIFY_TOKEN


@dataclass
class Page:
    graph: FakeMessengerGraph
    url: str


class TestMessengerContract(ChannelContract):
    channel_class = carebridge_messenger.MessengerChannel
    recipients = ("2000000000000001", "2000000000000002")

    @pytest.fixture
    async def platform(self) -> AsyncIterator[Page]:
        graph = FakeMessengerGraph(page_id=PAGE_ID, token=PAGE_TOKEN)
        server = await start_server(graph.app)
        yield Page(graph, str(server.make_url("/v25.0")))
        await server.close()

    def section(self, platform: Page) -> dict[str, Any]:
        return {
            "enabled": True, "page_id": PAGE_ID, "page_access_token": PAGE_TOKEN, "app_secret": APP_SECRET,
            "verify_token": VERIFY_TOKEN, "graph_url": platform.url,
        }  # fmt: skip

    def prepare(self, platform: Page, recipient: str) -> None:
        platform.graph.customer_wrote(recipient)

    def sent_texts(self, platform: Page, recipient: str) -> list[str]:
        return platform.graph.texts_to(recipient)

    def fail_after(self, platform: Page, accepted: int) -> None:
        platform.graph.fail_next(1, code=2, after=accepted)  # Meta's "unexpected error, retry later"

    def reply_request(self, platform: Page, section: dict[str, Any], sender: str, text: str) -> SimulatedRequest | None:
        """The customer swipes our last message and answers: ``message.reply_to.mid`` names it."""
        quoted = [b for b in platform.graph.sent if b["recipient"]["id"] == sender][-1]["_message_id"]
        request = self.channel_class.simulate(section, sender, text)
        payload = json.loads(request.body)
        payload["entry"][0]["messaging"][0]["message"]["reply_to"] = {"mid": quoted}
        body, headers = signed_body(payload, section["app_secret"])
        return SimulatedRequest(request.method, request.path, headers, body)
