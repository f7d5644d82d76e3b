"""The Telegram channel keeps the contract every channel keeps with the core (``bridge.testing``)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import pytest
from carebridge_telegram import TelegramChannel

from bridge import SimulatedRequest
from bridge.testing import ChannelContract, start_server
from tests.fakes.telegram_bot_api import FakeBotApi
from tests.plugins.telegram.conftest import BOT_TOKEN, SECRET


@dataclass
class Telegram:
    api: FakeBotApi
    url: str


class TestTelegramContract(ChannelContract):
    channel_class = TelegramChannel
    recipients = ("43", "44")

    @pytest.fixture
    async def platform(self) -> AsyncIterator[Telegram]:
        api = FakeBotApi(token=BOT_TOKEN)
        server = await start_server(api.app)
        yield Telegram(api, str(server.make_url("")).rstrip("/"))
        await server.close()

    def section(self, platform: Telegram) -> dict[str, Any]:
        return {"enabled": True, "bot_token": BOT_TOKEN, "webhook_secret": SECRET, "api_url": platform.url}

    def prepare(self, platform: Telegram, recipient: str) -> None:
        platform.api.user_started(int(recipient))

    def sent_texts(self, platform: Telegram, recipient: str) -> list[str]:
        return platform.api.texts_to(int(recipient))

    def fail_after(self, platform: Telegram, accepted: int) -> None:
        platform.api.fail_next(1, status=500, after=accepted)

    def reply_request(
        self, platform: Telegram, section: dict[str, Any], sender: str, text: str
    ) -> SimulatedRequest | None:
        """The user answers with Telegram's "reply": the update carries the quoted message."""
        quoted = [s for s in platform.api.sent if s.chat_id == int(sender)][-1]
        request = TelegramChannel.simulate(section, sender, text)
        update = json.loads(request.body)
        message = update["message"]
        message["reply_to_message"] = {
            "message_id": quoted.message_id,
            "chat": message["chat"],
            "date": message["date"],
        }
        return SimulatedRequest(request.method, request.path, request.headers, json.dumps(update).encode())
