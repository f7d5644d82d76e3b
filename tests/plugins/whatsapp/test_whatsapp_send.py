"""Send tests against the fake Cloud API: window, split, template, every error path."""

from __future__ import annotations

import time
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestClient

from bridge import (
    ChannelAuthError,
    ChannelAuthFailed,
    ChannelState,
    ChannelUnavailable,
    DeliveryError,
    DeliveryUncertain,
    OutboundMessage,
    WindowClosedError,
)
from carebridge_whatsapp import WhatsAppChannel
from tests.fakes.whatsapp_cloud import FakeError, FakeWhatsAppCloud
from tests.plugins.whatsapp.conftest import TEMPLATE, TOKEN, Core

CUSTOMER = "+15550002222"


def outbound(text: str = "Your parcel left today.", *, delivery_id: int = 1, **kw: Any) -> OutboundMessage:
    kw.setdefault("last_inbound_at", time.time() - 60)
    return OutboundMessage(delivery_id=delivery_id, channel="whatsapp", recipient=CUSTOMER, text=text, **kw)


@pytest.fixture
def open_window(fake: FakeWhatsAppCloud) -> None:
    fake.user_wrote(CUSTOMER)


@pytest.mark.usefixtures("open_window")
async def test_text_inside_the_window_is_sent_with_metas_body(
    channel: WhatsAppChannel, fake: FakeWhatsAppCloud
) -> None:
    receipt = await channel.send(outbound())
    (sent,) = fake.sent
    assert receipt.external_ids == (sent.id,) and receipt.external_id.startswith("wamid.")
    assert sent.payload == {
        "messaging_product": "whatsapp",
        "recipient_type": "individual",
        "to": "15550002222",
        "type": "text",
        "text": {"body": "Your parcel left today.", "preview_url": False},
        # Meta returns it in the statuses: the core learns that this delivery reached WhatsApp.
        "biz_opaque_callback_data": "carebridge:1",
    }


@pytest.mark.usefixtures("open_window")
async def test_9000_characters_are_split_at_words_and_sent_in_order(
    channel: WhatsAppChannel, fake: FakeWhatsAppCloud
) -> None:
    words = [f"w{n:05d}" for n in range(1300)]  # 7 characters + a space each: 9099 characters
    text = " ".join(words)
    receipt = await channel.send(outbound(text, reply_to="wamid.QUOTED"))
    assert len(fake.sent) == 3
    assert all(len(s.text or "") <= 4096 for s in fake.sent)
    assert " ".join(s.text or "" for s in fake.sent) == text, "no word cut, nothing lost, order kept"
    # Only the last part names the delivery alone: its statuses mean the whole text arrived.
    assert [s.payload["biz_opaque_callback_data"] for s in fake.sent] == [
        "carebridge:1.0",
        "carebridge:1.1",
        "carebridge:1",
    ]
    assert receipt.external_ids == tuple(s.id for s in fake.sent)
    assert [s.context for s in fake.sent] == ["wamid.QUOTED", None, None], "only the first part quotes"


@pytest.mark.usefixtures("open_window")
async def test_exactly_4096_characters_is_one_message(channel: WhatsAppChannel, fake: FakeWhatsAppCloud) -> None:
    await channel.send(outbound("x" * 4096))
    assert [len(s.text or "") for s in fake.sent] == [4096]


@pytest.mark.usefixtures("open_window")
async def test_reply_context_is_sent(channel: WhatsAppChannel, fake: FakeWhatsAppCloud) -> None:
    await channel.send(outbound(reply_to="wamid.CUSTOMER1"))
    assert fake.sent[0].payload["context"] == {"message_id": "wamid.CUSTOMER1"}


@pytest.mark.parametrize("last_inbound_at", [None, time.time() - 24 * 3600 - 5])
async def test_closed_window_raises_without_calling_the_api(
    channel: WhatsAppChannel, fake: FakeWhatsAppCloud, last_inbound_at: float | None
) -> None:
    fake.user_wrote(CUSTOMER)  # the platform would even accept it: the bridge must not try
    with pytest.raises(WindowClosedError):
        await channel.send(outbound(last_inbound_at=last_inbound_at))
    assert fake.calls == [] and fake.sent == []


async def test_template_is_sent_outside_the_window(channel: WhatsAppChannel, fake: FakeWhatsAppCloud) -> None:
    receipt = await channel.send(outbound("ignored", template=True, last_inbound_at=None, reply_to="wamid.X"))
    (sent,) = fake.sent
    assert receipt.external_id == sent.id
    assert (sent.type, sent.template, sent.language, sent.context) == ("template", TEMPLATE, "en_US", None)


async def test_template_without_configuration_is_a_closed_window(make_channel: Any, fake: FakeWhatsAppCloud) -> None:
    channel: WhatsAppChannel = make_channel(reengage_template="")
    with pytest.raises(WindowClosedError, match="reengage_template"):
        await channel.send(outbound(template=True, last_inbound_at=None))
    assert fake.calls == []


async def test_unapproved_template_is_a_permanent_error(make_channel: Any, fake: FakeWhatsAppCloud) -> None:
    channel: WhatsAppChannel = make_channel(reengage_template="not_approved")
    with pytest.raises(DeliveryError) as info:
        await channel.send(outbound(template=True))
    assert info.value.retryable is False and info.value.code == "132001"


async def test_131047_as_http_error_is_a_closed_window(channel: WhatsAppChannel, fake: FakeWhatsAppCloud) -> None:
    # The bridge believes the window is open; the platform knows better.
    with pytest.raises(WindowClosedError) as info:
        await channel.send(outbound())
    assert info.value.code == "131047" and info.value.retryable is False
    assert fake.sent == []


async def test_131047_as_failed_status_reaches_update_status(
    channel: WhatsAppChannel, fake: FakeWhatsAppCloud, webhook: TestClient, core: Core
) -> None:
    fake.window_mode = "status"
    fake.webhook_url = str(webhook.make_url("/"))
    receipt = await channel.send(outbound())
    await fake.drain()
    assert fake.webhook_answers == [200]
    (status,) = core.statuses
    assert (status.status, status.external_id, status.error_code) == ("failed", receipt.external_id, "131047")
    assert status.window_closed is True
    assert status.recipient == CUSTOMER
    assert fake.sent == [] and [f.id for f in fake.failed] == [receipt.external_id]


@pytest.mark.usefixtures("open_window")
@pytest.mark.parametrize("code", [130429, 131056, 80007, 1, 2, 4])
async def test_rate_limits_and_transient_errors_are_retryable(
    channel: WhatsAppChannel, fake: FakeWhatsAppCloud, code: int
) -> None:
    fake.fail_next(code)
    with pytest.raises(DeliveryError) as info:
        await channel.send(outbound())
    assert info.value.retryable is True and info.value.code == str(code)
    assert not isinstance(info.value, WindowClosedError)
    assert fake.sent == []
    await channel.send(outbound())
    assert len(fake.sent) == 1, "the retry goes through"


@pytest.mark.usefixtures("open_window")
async def test_pair_rate_limit_suggests_a_wait_and_retry_after_header_wins(
    channel: WhatsAppChannel, fake: FakeWhatsAppCloud
) -> None:
    fake.fail_next(131056, FakeError(status=400, code=130429, message="(#130429) Rate limit hit", retry_after=42))
    with pytest.raises(DeliveryError) as first:
        await channel.send(outbound())
    with pytest.raises(DeliveryError) as second:
        await channel.send(outbound())
    assert first.value.retry_after == 6.0
    assert second.value.retry_after == 42.0


@pytest.mark.usefixtures("open_window")
async def test_gateway_error_without_json_is_retryable_and_a_dropped_answer_is_uncertain(
    channel: WhatsAppChannel, fake: FakeWhatsAppCloud
) -> None:
    fake.fail_next(FakeError(status=502, code=None), "disconnect", "accept_drop")
    with pytest.raises(DeliveryError) as gateway:
        await channel.send(outbound())
    assert (gateway.value.retryable, gateway.value.code) == (True, "http_502")
    assert not isinstance(gateway.value, DeliveryUncertain)
    # The whole request went out and the connection closed without an answer: Meta may have it.
    for accepted in (0, 1):
        with pytest.raises(DeliveryUncertain) as dropped:
            await channel.send(outbound())
        assert (dropped.value.retryable, dropped.value.code, dropped.value.confirmable) == (True, "answer_lost", True)
        assert len(fake.sent) == accepted, "a plain drop accepts nothing; accept_drop keeps the message"


async def test_unreachable_api_is_retryable(make_channel: Any, unused_tcp_port: int) -> None:
    channel: WhatsAppChannel = make_channel(graph_url=f"http://127.0.0.1:{unused_tcp_port}/v25.0")
    with pytest.raises(DeliveryError) as info:
        await channel.send(outbound())
    assert info.value.retryable is True and info.value.code == "network"
    assert not isinstance(info.value, DeliveryUncertain), "nothing was written: a plain retry"


@pytest.mark.usefixtures("open_window")
async def test_refused_token_is_channel_auth_failed(make_channel: Any, fake: FakeWhatsAppCloud) -> None:
    channel: WhatsAppChannel = make_channel(access_token="expired-token")
    with pytest.raises(ChannelAuthFailed) as info:
        await channel.send(outbound())
    assert info.value.code == "190" and fake.sent == []
    assert "expired-token" not in str(info.value)


@pytest.mark.usefixtures("open_window")
@pytest.mark.parametrize("code", [131026, 100])
async def test_other_client_errors_are_permanent(channel: WhatsAppChannel, fake: FakeWhatsAppCloud, code: int) -> None:
    fake.fail_next(code)
    with pytest.raises(DeliveryError) as info:
        await channel.send(outbound())
    assert info.value.retryable is False and info.value.code == str(code)


async def test_invalid_recipient_is_permanent_without_a_call(channel: WhatsAppChannel, fake: FakeWhatsAppCloud) -> None:
    message = OutboundMessage(
        delivery_id=1, channel="whatsapp", recipient="ann@example.org", text="hi", last_inbound_at=time.time()
    )
    with pytest.raises(DeliveryError) as info:
        await channel.send(message)
    assert info.value.retryable is False and fake.calls == []


@pytest.mark.usefixtures("open_window")
async def test_retry_after_a_failed_middle_part_does_not_resend_the_first(
    channel: WhatsAppChannel, fake: FakeWhatsAppCloud
) -> None:
    text = " ".join(f"w{n:05d}" for n in range(1300))
    fake.fail_next("ok", 130429)  # the first part passes, the second hits the throughput limit
    with pytest.raises(DeliveryError):
        await channel.send(outbound(text, delivery_id=8))
    assert len(fake.sent) == 1
    receipt = await channel.send(outbound(text, delivery_id=8))
    assert len(fake.sent) == 3 and len(receipt.external_ids) == 3
    assert " ".join(s.text or "" for s in fake.sent) == text
    assert receipt.external_ids == tuple(s.id for s in fake.sent)


async def test_mark_read_posts_the_read_status(channel: WhatsAppChannel, fake: FakeWhatsAppCloud) -> None:
    await channel.mark_read(CUSTOMER, "wamid.CUSTOMER1")
    assert fake.read_marks == ["wamid.CUSTOMER1"]


async def test_mark_read_failure_is_logged_not_raised(
    make_channel: Any, fake: FakeWhatsAppCloud, core: Core, caplog: pytest.LogCaptureFixture
) -> None:
    channel: WhatsAppChannel = make_channel()
    await channel.mark_read(CUSTOMER, "not-a-wamid")
    assert fake.read_marks == [] and "131009" in caplog.text
    bad: WhatsAppChannel = make_channel(access_token="wrong")
    await bad.mark_read(CUSTOMER, "wamid.CUSTOMER1")
    assert core.reports[-1][0] is ChannelState.DEGRADED


async def test_start_checks_the_token_and_number(make_channel: Any, core: Core, fake: FakeWhatsAppCloud) -> None:
    await make_channel().start()
    assert core.reports == [(ChannelState.CONNECTED, None)]
    with pytest.raises(ChannelAuthError):
        await make_channel(access_token="wrong").start()
    with pytest.raises(ChannelAuthError):
        await make_channel(phone_number_id="400000000000999").start()
    fake.fail_next(2)
    with pytest.raises(ChannelUnavailable):
        await make_channel().start()


async def test_fake_refuses_text_over_4096_and_missing_token(
    fake: FakeWhatsAppCloud, section: dict[str, Any], http: aiohttp.ClientSession
) -> None:
    url = f"{section['graph_url']}/{section['phone_number_id']}/messages"
    body = {"messaging_product": "whatsapp", "to": "15550002222", "type": "text", "text": {"body": "x" * 4097}}
    fake.user_wrote(CUSTOMER)
    async with http.post(url, json=body, headers={"Authorization": f"Bearer {TOKEN}"}) as resp:
        assert resp.status == 400 and (await resp.json())["error"]["code"] == 100
    async with http.post(url, json=body) as resp:
        assert resp.status == 401 and (await resp.json())["error"]["code"] == 190
    assert fake.sent == []


@pytest.mark.usefixtures("open_window")
async def test_empty_text_is_refused_without_a_call(channel: WhatsAppChannel, fake: FakeWhatsAppCloud) -> None:
    with pytest.raises(DeliveryError) as info:
        await channel.send(outbound("  \n "))
    assert info.value.retryable is False and fake.calls == []


@pytest.mark.usefixtures("open_window")
async def test_trailing_whitespace_at_the_cut_sends_no_blank_part(
    channel: WhatsAppChannel, fake: FakeWhatsAppCloud
) -> None:
    receipt = await channel.send(outbound("x" * 4096 + " \n "))
    assert [len(s.text or "") for s in fake.sent] == [4096] and len(receipt.external_ids) == 1
