"""Sends against the fake Bot API: splitting, quoting, resuming, flood control, every error path."""

from __future__ import annotations

import json
import logging
import traceback
from collections.abc import Callable
from typing import Any

import pytest
from carebridge_telegram import TelegramChannel
from carebridge_telegram.api import classify, parse_answer

from bridge import ChannelAuthFailed, ChannelState, DeliveryError, OutboundMessage, WindowClosedError
from tests.fakes.telegram_bot_api import FakeBotApi
from tests.plugins.telegram.conftest import ANN, BOT_TOKEN, Core


def _out(
    text: str = "Hello from support", *, reply_to: str | None = None, delivery_id: int = 7, to: str = "43"
) -> OutboundMessage:
    return OutboundMessage(delivery_id=delivery_id, channel="telegram", recipient=to, text=text, reply_to=reply_to)


async def test_a_text_is_sent_to_the_chat_and_the_receipt_names_chat_and_message(
    channel: TelegramChannel, api: FakeBotApi
) -> None:
    api.user_started(ANN)
    receipt = await channel.send(_out())
    (sent,) = api.sent
    assert (sent.chat_id, sent.text, sent.reply_to) == (ANN, "Hello from support", None)
    assert receipt.external_ids == (f"43:{sent.message_id}",)


async def test_a_canonical_chat_id_is_sent_whatever_form_the_recipient_has(
    channel: TelegramChannel, api: FakeBotApi
) -> None:
    api.user_started(ANN)
    await channel.send(_out(to="0043"))
    assert [s.chat_id for s in api.sent] == [ANN]


async def test_the_first_part_quotes_the_message_it_answers(channel: TelegramChannel, api: FakeBotApi) -> None:
    quoted = api.earlier_message(ANN)
    text = " ".join(["word"] * 2000)  # 9999 characters: three parts
    await channel.send(_out(text, reply_to=f"43:{quoted}"))
    assert [s.reply_to for s in api.sent] == [quoted, None, None]


async def test_a_quote_of_another_chat_or_of_another_form_is_not_sent(
    channel: TelegramChannel, api: FakeBotApi
) -> None:
    api.earlier_message(ANN)
    for reply_to in ("44:1", "m_1", "1", ""):
        await channel.send(_out(reply_to=reply_to))
    assert [s.reply_to for s in api.sent] == [None] * 4


async def test_a_quote_that_is_gone_does_not_stop_the_message(channel: TelegramChannel, api: FakeBotApi) -> None:
    api.user_started(ANN)
    receipt = await channel.send(_out(reply_to="43:999"))
    assert [s.text for s in api.sent] == ["Hello from support"] and len(receipt.external_ids) == 1


async def test_long_text_is_split_at_word_boundaries_in_order(channel: TelegramChannel, api: FakeBotApi) -> None:
    api.user_started(ANN)
    words = [f"w{i:05d}" for i in range(1500)]  # 1500 × 7 - 1 = 10499 characters
    receipt = await channel.send(_out(" ".join(words)))
    parts = api.texts_to(ANN)
    assert len(parts) == 3 and all(len(p) <= 4096 for p in parts)
    assert " ".join(parts).split(" ") == words
    assert receipt.external_ids == tuple(f"43:{s.message_id}" for s in api.sent)


async def test_a_retry_after_a_failed_part_resumes_with_that_part(channel: TelegramChannel, api: FakeBotApi) -> None:
    api.user_started(ANN)
    text = " ".join(["part"] * 2000)  # 9999 characters: three parts
    api.flood(1, retry_after=7, after=1)  # the first part goes through, the second meets flood control
    with pytest.raises(DeliveryError) as info:
        await channel.send(_out(text, delivery_id=11))
    assert (info.value.retryable, info.value.code, info.value.retry_after) == (True, "429", 7.0)
    assert len(api.sent) == 1
    receipt = await channel.send(_out(text, delivery_id=11))
    assert len(api.sent) == 3, "the outbox's retry sends parts two and three only"
    assert receipt.external_ids == tuple(f"43:{s.message_id}" for s in api.sent)
    assert "".join(api.texts_to(ANN)).replace(" ", "") == "part" * 2000


@pytest.mark.parametrize(("status", "as_json"), [(500, True), (502, False)])
async def test_server_errors_are_retryable(
    channel: TelegramChannel, api: FakeBotApi, status: int, as_json: bool
) -> None:
    api.user_started(ANN)
    api.fail_next(1, status=status, json=as_json)
    with pytest.raises(DeliveryError) as info:
        await channel.send(_out())
    assert type(info.value) is DeliveryError
    assert (info.value.retryable, info.value.code) == (True, str(status))


async def test_a_blocked_bot_is_permanent(channel: TelegramChannel, api: FakeBotApi) -> None:
    api.user_started(ANN)
    api.block(ANN)
    with pytest.raises(DeliveryError) as info:
        await channel.send(_out())
    assert (info.value.retryable, info.value.code) == (False, "403")
    assert "Forbidden: bot was blocked by the user" in str(info.value)


async def test_an_unknown_chat_is_permanent(channel: TelegramChannel, api: FakeBotApi) -> None:
    with pytest.raises(DeliveryError) as info:
        await channel.send(_out(to="99"))
    assert (info.value.retryable, info.value.code) == (False, "400")
    assert "chat not found" in str(info.value)


@pytest.mark.parametrize("cause", ["revoked", "wrong_api_url"])
async def test_a_refused_token_is_channel_auth_failed_and_reported_without_the_token(
    section: dict[str, Any],
    api: FakeBotApi,
    core: Core,
    make_channel: Callable[[dict[str, Any]], TelegramChannel],
    caplog: pytest.LogCaptureFixture,
    cause: str,
) -> None:
    api.user_started(ANN)
    if cause == "revoked":
        api.revoke_token()  # 401 Unauthorized
    else:
        section = {**section, "api_url": section["api_url"] + "/v2"}  # a path the Bot API does not know: 404
    channel = make_channel(section)
    with caplog.at_level(logging.DEBUG), pytest.raises(ChannelAuthFailed) as info:
        await channel.send(_out())
    assert info.value.code == ("401" if cause == "revoked" else "404")
    assert core.reports[-1][0] is ChannelState.BAD_CREDENTIALS
    assert "channels.telegram.bot_token" in caplog.text
    ours = [r.getMessage() for r in caplog.records if r.name != "aiohttp.access"]  # that one is the fake's
    rendered = str(info.value) + "".join(traceback.format_exception(info.value)) + "\n".join(ours)
    assert BOT_TOKEN not in rendered
    assert api.sent == []


async def test_network_failure_is_retryable_and_carries_neither_token_nor_url(
    section: dict[str, Any], make_channel: Callable[[dict[str, Any]], TelegramChannel], caplog: pytest.LogCaptureFixture
) -> None:
    channel = make_channel({**section, "api_url": "http://127.0.0.1:9"})
    with pytest.raises(DeliveryError) as info:
        await channel.send(_out())
    assert (info.value.retryable, info.value.code) == (True, "network")
    logging.getLogger("carebridge.outbox").error("send failed", exc_info=info.value)
    rendered = "".join(traceback.format_exception(info.value)) + caplog.text + repr(channel.api)
    assert repr(channel.api) == "BotApi('http://127.0.0.1:9')"
    assert BOT_TOKEN not in rendered and "/bot" not in rendered


@pytest.mark.parametrize(
    ("message", "code"),
    [(_out("   "), "empty"), (_out(to="@ann"), "bad_recipient")],
)
async def test_what_cannot_be_sent_is_refused_before_any_request(
    channel: TelegramChannel, api: FakeBotApi, message: OutboundMessage, code: str
) -> None:
    with pytest.raises(DeliveryError) as info:
        await channel.send(message)
    assert (info.value.retryable, info.value.code) == (False, code) and api.calls == []


async def test_a_template_is_refused_without_any_request(channel: TelegramChannel, api: FakeBotApi) -> None:
    message = OutboundMessage(delivery_id=9, channel="telegram", recipient="43", text="[template]", template=True)
    with pytest.raises(WindowClosedError):
        await channel.send(message)
    assert api.calls == []


def _refusal(status: int, description: str, **parameters: int) -> bytes:
    body: dict[str, object] = {"ok": False, "error_code": status, "description": description}
    if parameters:
        body["parameters"] = parameters
    return json.dumps(body).encode()


def test_classify_table() -> None:
    def kind(status: int, body: bytes, header: str | None = None) -> tuple[str, bool, float | None, str | None]:
        err = classify(parse_answer(status, body, header))
        return type(err).__name__, err.retryable, err.retry_after, err.code

    flood = _refusal(429, "Too Many Requests: retry after 12", retry_after=12)
    assert kind(429, flood) == ("DeliveryError", True, 12.0, "429")
    assert kind(429, b"<html>slow down</html>", "3") == ("DeliveryError", True, 3.0, "429")
    assert kind(502, b"Bad Gateway") == ("DeliveryError", True, None, "502")
    assert kind(401, _refusal(401, "Unauthorized")) == ("ChannelAuthFailed", False, None, "401")
    assert kind(404, _refusal(404, "Not Found")) == ("ChannelAuthFailed", False, None, "404")
    assert kind(400, _refusal(400, "Bad Request: chat not found")) == ("DeliveryError", False, None, "400")
    assert kind(403, _refusal(403, "Forbidden: bot was blocked by the user")) == ("DeliveryError", False, None, "403")
    # A 200 that says ok: false is decided on its error_code.
    assert kind(200, _refusal(429, "x", retry_after=1)) == ("DeliveryError", True, 1.0, "429")
