"""Media: fetched after the webhook is stored, checked, handed to save_media."""

from __future__ import annotations

import hashlib
import logging
import os
import time
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestClient

from bridge import Attachment
from bridge.channel import PendingMedia
from bridge.errors import UnknownRecordError
from carebridge_meta import signed_body
from carebridge_whatsapp import WhatsAppChannel
from tests.fakes.whatsapp_cloud import FakeWhatsAppCloud
from tests.plugins.whatsapp.conftest import APP_SECRET, TOKEN, Core

PICTURE = os.urandom(200_000)  # larger than one read chunk


def media_webhook(*media: tuple[str, str], message_id: str = "wamid.MEDIA1") -> dict[str, Any]:
    messages = [
        {
            "from": "15550002222",
            "id": f"{message_id}-{n}" if len(media) > 1 else message_id,
            "timestamp": "1735689600",
            "type": kind,
            kind: {"id": media_id, "mime_type": "image/jpeg", "caption": "look"},
        }
        for n, (kind, media_id) in enumerate(media)
    ]
    value = {"messaging_product": "whatsapp", "metadata": {"phone_number_id": "400000000000001"}, "messages": messages}
    return {
        "object": "whatsapp_business_account",
        "entry": [{"id": "1", "changes": [{"field": "messages", "value": value}]}],
    }


async def post(client: TestClient, payload: dict[str, Any]) -> int:
    body, headers = signed_body(payload, APP_SECRET)
    resp = await client.post("/", data=body, headers=headers)
    return resp.status


async def test_media_bytes_are_fetched_and_handed_to_save_media(
    webhook: TestClient, channel: WhatsAppChannel, fake: FakeWhatsAppCloud, core: Core
) -> None:
    picture = fake.add_media(PICTURE, "image/png")
    document = fake.add_media(b"%PDF-1.7 invoice", "application/pdf")
    assert await post(webhook, media_webhook(("image", picture), ("document", document))) == 200
    assert len(core.messages) == 2, "messages are stored before any download"
    await channel.media.drain()
    saved = sorted(core.media)
    assert saved == [
        ("wamid.MEDIA1-0", 0, PICTURE, "image/png"),
        ("wamid.MEDIA1-1", 0, b"%PDF-1.7 invoice", "application/pdf"),
    ]
    assert sorted(fake.downloads) == sorted([picture, document])


async def test_expired_url_is_asked_for_again(
    webhook: TestClient, channel: WhatsAppChannel, fake: FakeWhatsAppCloud, core: Core
) -> None:
    media_id = fake.add_media(PICTURE)
    fake.expire_next_urls(2)
    assert await post(webhook, media_webhook(("image", media_id))) == 200
    await channel.media.drain()
    assert [m[2] for m in core.media] == [PICTURE]
    assert fake.media_lookups == 3 and fake.downloads == [media_id]


async def test_url_that_always_expires_gives_up_without_saving(
    webhook: TestClient, channel: WhatsAppChannel, fake: FakeWhatsAppCloud, core: Core, caplog: pytest.LogCaptureFixture
) -> None:
    fake.url_ttl = 0.0
    media_id = fake.add_media(PICTURE)
    assert await post(webhook, media_webhook(("image", media_id))) == 200
    await channel.media.drain()
    assert core.media == [] and fake.downloads == []
    assert fake.media_lookups == len(channel.media.retry_delays) + 1
    assert "giving up" in caplog.text
    assert "media-download" not in caplog.text, "download URLs are never logged"


async def test_transient_lookup_errors_are_retried(
    webhook: TestClient, channel: WhatsAppChannel, fake: FakeWhatsAppCloud, core: Core
) -> None:
    media_id = fake.add_media(PICTURE)
    fake.fail_next(130429, 2)
    assert await post(webhook, media_webhook(("image", media_id))) == 200
    await channel.media.drain()
    assert [m[2] for m in core.media] == [PICTURE]


async def test_media_over_the_limit_is_not_downloaded(
    make_channel: Any, aiohttp_client: Any, fake: FakeWhatsAppCloud, core: Core
) -> None:
    channel: WhatsAppChannel = make_channel(max_media_bytes=100_000)
    client = await aiohttp_client(channel.web_app())
    media_id = fake.add_media(PICTURE)
    assert await post(client, media_webhook(("image", media_id))) == 200
    await channel.media.drain()
    assert core.media == [] and fake.downloads == []
    assert len(core.messages) == 1, "the message itself is kept"


async def test_sha256_mismatch_is_never_saved(
    webhook: TestClient, channel: WhatsAppChannel, fake: FakeWhatsAppCloud, core: Core
) -> None:
    media_id = fake.add_media(PICTURE, sha256=hashlib.sha256(b"something else").hexdigest())
    assert await post(webhook, media_webhook(("image", media_id))) == 200
    await channel.media.drain()
    assert core.media == []
    assert len(fake.downloads) == len(channel.media.retry_delays) + 1


async def test_unknown_media_id_is_given_up_at_once(
    webhook: TestClient, channel: WhatsAppChannel, fake: FakeWhatsAppCloud, core: Core
) -> None:
    assert await post(webhook, media_webhook(("image", "599999999999999"))) == 200
    await channel.media.drain()
    assert core.media == [] and fake.media_lookups == 0
    assert fake.calls.count("GET /v25.0/599999999999999") == 1


async def test_redelivered_webhook_downloads_once(
    webhook: TestClient, channel: WhatsAppChannel, fake: FakeWhatsAppCloud, core: Core
) -> None:
    media_id = fake.add_media(PICTURE)
    payload = media_webhook(("image", media_id))
    assert await post(webhook, payload) == 200
    assert await post(webhook, payload) == 200
    await channel.media.drain()
    assert fake.downloads == [media_id] and len(core.media) == 1


async def test_stop_cancels_downloads_in_progress(
    webhook: TestClient, channel: WhatsAppChannel, fake: FakeWhatsAppCloud, core: Core
) -> None:
    channel.media.retry_delays = (3600.0,)
    media_id = fake.add_media(PICTURE)
    fake.fail_next(2)  # the first lookup fails, the retry waits an hour
    assert await post(webhook, media_webhook(("image", media_id))) == 200
    assert channel.media.pending == 1
    await channel.stop()
    assert channel.media.pending == 0 and core.media == []


async def test_download_cancelled_by_a_shutdown_is_fetched_at_the_next_start(
    webhook: TestClient, channel: WhatsAppChannel, make_channel: Any, fake: FakeWhatsAppCloud, core: Core
) -> None:
    channel.media.retry_delays = (3600.0,)
    media_id = fake.add_media(PICTURE, "image/png")
    fake.fail_next(2)  # the first lookup fails, the retry would wait an hour
    assert await post(webhook, media_webhook(("image", media_id))) == 200
    await channel.stop()
    assert core.media == [], "the shutdown cancelled the download"
    # The next run: the core hands back the attachment the store kept without bytes.
    stored = core.messages[0]
    restarted: WhatsAppChannel = make_channel()
    pending = [PendingMedia(stored.external_id, 0, stored.attachments[0], received_at=time.time() - 3600)]
    await restarted.resume_media(pending)
    await restarted.media.drain()
    assert core.media == [("wamid.MEDIA1", 0, PICTURE, "image/png")]
    assert fake.downloads == [media_id]


async def test_resume_skips_media_ids_older_than_seven_days(
    make_channel: Any, fake: FakeWhatsAppCloud, core: Core, caplog: pytest.LogCaptureFixture
) -> None:
    now = time.time()
    old_at, fresh_at = now - 8 * 86400, now - 6 * 86400
    old = fake.add_media(b"old bytes", received_at=old_at)
    fresh = fake.add_media(b"fresh bytes", received_at=fresh_at)
    pending = [
        PendingMedia("wamid.OLD", 0, Attachment(kind="image", media_id=old, mime="image/jpeg"), old_at),
        PendingMedia("wamid.FRESH", 0, Attachment(kind="image", media_id=fresh, mime="image/jpeg"), fresh_at),
    ]
    channel: WhatsAppChannel = make_channel()
    with caplog.at_level(logging.INFO, logger="carebridge.whatsapp"):
        await channel.resume_media(pending)
        await channel.media.drain()
    assert core.media == [("wamid.FRESH", 0, b"fresh bytes", "image/jpeg")]
    assert f"GET /v25.0/{old}" not in fake.calls, "an expired media id is not even asked for"
    assert "media id expired" in caplog.text and "resuming 1 of 2" in caplog.text
    assert "wamid." not in caplog.text, "message ids (which encode phone numbers) are never logged"
    await channel.stop()


async def test_media_of_an_erased_message_is_dropped_without_retries(
    webhook: TestClient, channel: WhatsAppChannel, fake: FakeWhatsAppCloud, core: Core
) -> None:
    core.fail_save = UnknownRecordError("whatsapp: no attachment 0 of an ingested message with that id")
    assert await post(webhook, media_webhook(("image", fake.add_media(PICTURE)))) == 200
    await channel.media.drain()
    assert core.save_attempts == 1 and len(fake.downloads) == 1


async def test_fake_refuses_media_ids_older_than_seven_days(
    fake: FakeWhatsAppCloud, section: dict[str, Any], http: aiohttp.ClientSession
) -> None:
    media_id = fake.add_media(PICTURE, received_at=time.time() - 7 * 86400)
    async with http.get(f"{section['graph_url']}/{media_id}", headers={"Authorization": f"Bearer {TOKEN}"}) as resp:
        body = await resp.json()
    assert resp.status == 400 and body["error"]["code"] == 100


async def test_fake_serves_media_only_with_the_bearer_token(
    fake: FakeWhatsAppCloud, section: dict[str, Any], http: aiohttp.ClientSession
) -> None:
    media_id = fake.add_media(PICTURE)
    auth = {"Authorization": f"Bearer {TOKEN}"}
    async with http.get(f"{section['graph_url']}/{media_id}", headers=auth) as resp:
        info = await resp.json()
    assert info["file_size"] == str(len(PICTURE)) and info["sha256"] == hashlib.sha256(PICTURE).hexdigest()
    async with http.get(info["url"]) as resp:
        assert resp.status == 401
    async with http.get(info["url"], headers=auth) as resp:
        assert resp.status == 200 and await resp.read() == PICTURE
