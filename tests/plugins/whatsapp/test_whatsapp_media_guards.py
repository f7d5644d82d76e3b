"""What may reach a URL called with the token: numeric media ids, download URLs under media_url_allow."""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from bridge import Attachment
from bridge.channel import PendingMedia
from carebridge_whatsapp import WhatsAppChannel
from tests.fakes.whatsapp_cloud import FakeWhatsAppCloud
from tests.plugins.whatsapp.conftest import Core
from tests.plugins.whatsapp.test_whatsapp_media import media_webhook, post

PICTURE = os.urandom(30_000)
CRAFTED_IDS = [
    "../../me/accounts?fields=access_token#",
    "123/../../me/accounts",
    "599999999999999?fields=access_token",
    "599999999999999#",
    "%2e%2e%2fme",
    "１２３",  # full-width digits: str.isdigit() says yes, Meta never sends them
    " 599999999999999",
]


class ForeignHost:
    """Another server on loopback that records what reaches it, with the Authorization header."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, str | None]] = []
        self.app = web.Application()
        self.app.router.add_route("*", "/{tail:.*}", self._any)

    async def _any(self, request: web.Request) -> web.Response:
        self.seen.append((request.path_qs, request.headers.get("Authorization")))
        return web.Response(body=PICTURE, content_type="image/jpeg")


@pytest.fixture
async def foreign(aiohttp_server: Callable[..., Any]) -> tuple[ForeignHost, TestServer]:
    host = ForeignHost()
    server: TestServer = await aiohttp_server(host.app)
    return host, server


@pytest.mark.parametrize("crafted", CRAFTED_IDS)
async def test_a_crafted_media_id_makes_no_request_and_keeps_the_message(
    webhook: TestClient,
    channel: WhatsAppChannel,
    fake: FakeWhatsAppCloud,
    core: Core,
    crafted: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.INFO, logger="carebridge.whatsapp"):
        assert await post(webhook, media_webhook(("image", crafted))) == 200
        await channel.media.drain()
    assert fake.requests == [], "nothing at all reached the Cloud API"
    assert core.media == []
    [message] = core.messages
    [attachment] = message.attachments
    assert attachment.kind == "image" and attachment.media_id is None, "stored without the refused id"
    assert attachment.meta.get("media_id_refused") is True and attachment.meta.get("caption") == "look"
    assert "not the number WhatsApp uses" in caplog.text
    assert crafted.strip() not in caplog.text and "accounts" not in caplog.text and "wamid." not in caplog.text


async def test_a_crafted_media_id_left_in_the_store_is_not_resumed(
    make_channel: Callable[..., WhatsAppChannel], fake: FakeWhatsAppCloud, core: Core, caplog: pytest.LogCaptureFixture
) -> None:
    channel = make_channel()
    crafted = Attachment(kind="image", media_id="../../me/accounts?fields=access_token#", mime="image/jpeg")
    with caplog.at_level(logging.INFO, logger="carebridge.whatsapp"):
        await channel.resume_media([PendingMedia("wamid.OLDER", 0, crafted, time.time() - 60)])
        await channel.media.drain()
    assert fake.requests == [] and core.media == []
    assert "resuming 0 of 1" in caplog.text and "accounts" not in caplog.text
    await channel.stop()


async def test_the_client_refuses_a_crafted_id_itself(channel: WhatsAppChannel, fake: FakeWhatsAppCloud) -> None:
    from carebridge_whatsapp.api import MediaRefused

    with pytest.raises(MediaRefused) as refused:
        await channel.client.media_info("../../me/accounts?fields=access_token#")
    assert refused.value.code == "bad_media_id" and not refused.value.retryable
    assert fake.requests == []


async def test_a_media_url_outside_the_allow_list_is_not_fetched_and_gets_no_token(
    webhook: TestClient,
    channel: WhatsAppChannel,
    fake: FakeWhatsAppCloud,
    core: Core,
    foreign: tuple[ForeignHost, TestServer],
    caplog: pytest.LogCaptureFixture,
) -> None:
    host, server = foreign
    fake.media_url_base = str(server.make_url("/"))
    media_id = fake.add_media(PICTURE)
    with caplog.at_level(logging.INFO, logger="carebridge.whatsapp"):
        assert await post(webhook, media_webhook(("image", media_id))) == 200
        await channel.media.drain()
    assert host.seen == [], "the foreign host was never contacted, so it never saw the token"
    assert core.media == [] and fake.media_lookups == 1, "refused for good: no retries"
    assert "not under channels.whatsapp.media_url_allow" in caplog.text
    assert "media-download" not in caplog.text, "the URL itself is not logged"


async def test_a_redirect_away_from_the_allow_list_is_not_followed(
    webhook: TestClient,
    channel: WhatsAppChannel,
    fake: FakeWhatsAppCloud,
    core: Core,
    foreign: tuple[ForeignHost, TestServer],
) -> None:
    host, server = foreign
    fake.redirect_downloads_to = str(server.make_url("/"))
    assert await post(webhook, media_webhook(("image", fake.add_media(PICTURE)))) == 200
    await channel.media.drain()
    assert host.seen == [], "the redirect target got no request, with or without the token"
    assert core.media == []
    assert [c for c in fake.calls if c.startswith("GET /media-download/")], "the allowed URL itself was asked"


async def test_a_redirect_within_the_allow_list_is_followed_with_the_token(
    webhook: TestClient, channel: WhatsAppChannel, fake: FakeWhatsAppCloud, core: Core, fake_server: TestServer
) -> None:
    fake.redirect_downloads_to = str(fake_server.make_url("/"))
    media_id = fake.add_media(PICTURE, "image/png")
    assert await post(webhook, media_webhook(("image", media_id))) == 200
    await channel.media.drain()
    assert core.media == [("wamid.MEDIA1", 0, PICTURE, "image/png")]
    assert len([c for c in fake.calls if c.startswith("GET /media-download/")]) == 2, "the original and the hop"


async def test_a_media_url_under_the_allow_list_is_fetched(
    webhook: TestClient, channel: WhatsAppChannel, fake: FakeWhatsAppCloud, core: Core
) -> None:
    media_id = fake.add_media(PICTURE, "image/png")
    assert await post(webhook, media_webhook(("image", media_id))) == 200
    await channel.media.drain()
    assert core.media == [("wamid.MEDIA1", 0, PICTURE, "image/png")]
    assert fake.downloads == [media_id]


async def test_the_default_allow_list_is_meta_only(
    aiohttp_client: Callable[..., Any],
    fake: FakeWhatsAppCloud,
    core: Core,
    section: dict[str, Any],
    http: aiohttp.ClientSession,
) -> None:
    """Without the key only Meta's CDN is allowed, so the fake's loopback URL is not fetched."""
    default = {k: v for k, v in section.items() if k != "media_url_allow"}
    channel = WhatsAppChannel(default, core.context(http, "whatsapp"))
    client: TestClient = await aiohttp_client(channel.web_app())
    assert await post(client, media_webhook(("image", fake.add_media(PICTURE)))) == 200
    await channel.media.drain()
    assert fake.media_lookups == 1 and fake.downloads == [] and core.media == []
    assert not [r for r in fake.requests if r.startswith("GET /media-download/")]
    await channel.stop()
