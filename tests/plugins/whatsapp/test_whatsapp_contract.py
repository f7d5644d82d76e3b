"""The WhatsApp channel keeps the contract every channel keeps with the core (``bridge.testing``)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import pytest

from bridge import SimulatedRequest
from bridge.testing import ChannelContract, start_server
from carebridge_meta import signed_body
from carebridge_whatsapp import WhatsAppChannel
from tests.fakes.whatsapp_cloud import FakeWhatsAppCloud
from tests.plugins.whatsapp.conftest import APP_SECRET, PHONE_NUMBER_ID, TEMPLATE, TOKEN, VERIFY_TOKEN


@dataclass
class Number:
    cloud: FakeWhatsAppCloud
    url: str


class TestWhatsAppContract(ChannelContract):
    channel_class = WhatsAppChannel
    recipients = ("+15550002222", "+15550003333")
    required_keys = ("phone_number_id", "access_token", "app_secret", "verify_token")

    @pytest.fixture
    async def platform(self) -> AsyncIterator[Number]:
        cloud = FakeWhatsAppCloud(
            token=TOKEN, phone_number_id=PHONE_NUMBER_ID, app_secret=APP_SECRET, templates=(TEMPLATE,)
        )
        server = await start_server(cloud.app)
        yield Number(cloud, cloud.graph_url(server))
        await server.close()

    def section(self, platform: Number) -> dict[str, Any]:
        return {
            "enabled": True, "phone_number_id": PHONE_NUMBER_ID, "access_token": TOKEN, "app_secret": APP_SECRET,
            "verify_token": VERIFY_TOKEN, "graph_url": platform.url,
        }  # fmt: skip

    def prepare(self, platform: Number, recipient: str) -> None:
        platform.cloud.user_wrote(recipient)

    def sent_texts(self, platform: Number, recipient: str) -> list[str]:
        return [s.text for s in platform.cloud.sent if s.to == recipient.lstrip("+") and s.text is not None]

    def fail_after(self, platform: Number, accepted: int) -> None:
        platform.cloud.fail_next(*["ok"] * accepted, 2)  # Meta's "service temporarily unavailable"

    def reply_request(
        self, platform: Number, section: dict[str, Any], sender: str, text: str
    ) -> SimulatedRequest | None:
        """The customer swipes our last message and answers: ``context.id`` names it."""
        quoted = [s for s in platform.cloud.sent if s.to == sender.lstrip("+")][-1].id
        request = WhatsAppChannel.simulate(section, sender, text)
        payload = json.loads(request.body)
        item = payload["entry"][0]["changes"][0]["value"]["messages"][0]
        item["context"] = {"from": "15550001000", "id": quoted}
        body, headers = signed_body(payload, section["app_secret"])
        return SimulatedRequest(request.method, request.path, headers, body)
