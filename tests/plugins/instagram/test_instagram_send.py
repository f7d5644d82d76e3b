"""Sends against the fake Instagram API: window rules, splitting, resuming, every error path."""

from __future__ import annotations

import logging
import time
import traceback
from collections.abc import Callable
from typing import Any

import pytest
from carebridge_instagram import InstagramChannel
from carebridge_instagram.api import classify, split_message

from bridge import ChannelAuthFailed, ChannelState, DeliveryError, OutboundMessage, WindowClosedError
from carebridge_meta import GraphError
from tests.fakes.instagram_graph import FakeInstagramGraph
from tests.plugins.instagram.conftest import CUSTOMER, IG_USER_ID, TOKEN, Core

HOUR = 3600.0


def _out(text: str = "Hello from support", *, wrote_ago: float | None = HOUR, delivery_id: int = 7) -> OutboundMessage:
    last = None if wrote_ago is None else time.time() - wrote_ago
    return OutboundMessage(
        delivery_id=delivery_id, channel="instagram", recipient=CUSTOMER, text=text, last_inbound_at=last
    )


async def test_reply_inside_24h_is_a_response_to_the_igsid_with_a_bearer_token(
    channel: InstagramChannel, graph: FakeInstagramGraph
) -> None:
    graph.customer_wrote(CUSTOMER, time.time() - HOUR)
    receipt = await channel.send(_out())
    (body,) = graph.sent
    assert body["recipient"] == {"id": CUSTOMER}
    assert body["message"] == {"text": "Hello from support"}
    assert body["messaging_type"] == "RESPONSE" and "tag" not in body
    assert graph.auth == ["bearer"], "the token travels in a header, never in the URL"
    assert receipt.external_ids == (body["_message_id"],)


async def test_between_24h_and_7_days_the_human_agent_tag_is_used(
    channel: InstagramChannel, graph: FakeInstagramGraph
) -> None:
    graph.customer_wrote(CUSTOMER, time.time() - 30 * HOUR)
    await channel.send(_out(wrote_ago=30 * HOUR))
    (body,) = graph.sent
    assert (body["messaging_type"], body["tag"]) == ("MESSAGE_TAG", "HUMAN_AGENT")


@pytest.mark.parametrize("wrote_ago", [7 * 24 * HOUR + 1, None])
async def test_a_closed_window_raises_without_calling_the_api(
    channel: InstagramChannel, graph: FakeInstagramGraph, wrote_ago: float | None
) -> None:
    graph.customer_wrote(CUSTOMER, time.time() - 8 * 24 * HOUR)
    with pytest.raises(WindowClosedError) as info:
        await channel.send(_out(wrote_ago=wrote_ago))
    assert info.value.retryable is False and info.value.code == "window_closed"
    assert graph.requests == []


async def test_meta_refusing_a_response_after_24h_gets_the_part_again_with_the_tag(
    channel: InstagramChannel, graph: FakeInstagramGraph
) -> None:
    # The core believes the customer wrote an hour ago; Meta knows better: 10/2534022.
    graph.customer_wrote(CUSTOMER, time.time() - 30 * HOUR)
    receipt = await channel.send(_out(wrote_ago=HOUR))
    first, second = graph.requests
    assert first["messaging_type"] == "RESPONSE"
    assert (second["messaging_type"], second["tag"]) == ("MESSAGE_TAG", "HUMAN_AGENT")
    assert receipt.external_ids == (graph.sent[0]["_message_id"],)


async def test_meta_refusing_even_the_tag_is_window_closed(
    channel: InstagramChannel, graph: FakeInstagramGraph
) -> None:
    graph.customer_wrote(CUSTOMER, time.time() - 8 * 24 * HOUR)
    with pytest.raises(WindowClosedError) as info:
        await channel.send(_out(wrote_ago=HOUR))
    assert info.value.code == "10" and "subcode 2534022" in str(info.value)
    assert graph.sent == [] and len(graph.requests) == 2


async def test_a_template_is_refused_without_any_request(channel: InstagramChannel, graph: FakeInstagramGraph) -> None:
    graph.customer_wrote(CUSTOMER)
    message = OutboundMessage(
        delivery_id=9, channel="instagram", recipient=CUSTOMER, text="[re-engagement template]",
        last_inbound_at=time.time() - 2 * 24 * HOUR, template=True,
    )  # fmt: skip
    with pytest.raises(WindowClosedError) as info:
        await channel.send(message)
    assert info.value.code == "no_template" and graph.requests == []


async def test_long_text_is_split_at_word_boundaries_in_order(
    channel: InstagramChannel, graph: FakeInstagramGraph
) -> None:
    graph.customer_wrote(CUSTOMER)
    words = [f"w{i:04d}" for i in range(480)]  # 480 × 6 - 1 = 2879 characters
    receipt = await channel.send(_out(" ".join(words)))
    parts = graph.texts_to(CUSTOMER)
    assert len(parts) == 3 and all(len(p) <= 1000 for p in parts)
    assert " ".join(parts).split(" ") == words  # no word cut, none lost, order kept
    assert receipt.external_ids == tuple(b["_message_id"] for b in graph.sent)


async def test_text_within_1000_characters_but_over_1000_bytes_is_split_too(
    channel: InstagramChannel, graph: FakeInstagramGraph
) -> None:
    graph.customer_wrote(CUSTOMER)
    words = ["Привет"] * 140  # 979 characters, 1819 UTF-8 bytes
    text = " ".join(words)
    assert len(text) <= 1000 < len(text.encode())
    await channel.send(_out(text))
    parts = graph.texts_to(CUSTOMER)
    assert len(parts) == 2 and all(len(p.encode()) <= 1000 for p in parts)
    assert " ".join(parts) == text


@pytest.mark.parametrize(
    "text",
    ["x" * 5000, "😀" * 1200, ("é" * 400 + " ") * 5, "short", " ".join(["ok"] * 900) + " " + "€" * 700],
)
def test_split_message_keeps_every_character_and_both_limits(text: str) -> None:
    parts = split_message(text)
    assert all(len(p) <= 1000 and len(p.encode()) <= 1000 for p in parts)
    assert "".join(parts).replace(" ", "") == text.replace(" ", "")


async def test_a_retry_after_a_failed_part_resumes_with_that_part(
    channel: InstagramChannel, graph: FakeInstagramGraph
) -> None:
    graph.customer_wrote(CUSTOMER)
    text = " ".join(["part"] * 600)  # 2999 characters: three parts
    graph.fail_next(1, code=613, after=1)  # the first part goes through, the second is refused
    with pytest.raises(DeliveryError) as info:
        await channel.send(_out(text, delivery_id=11))
    assert (info.value.retryable, info.value.code) == (True, "613")
    assert len(graph.sent) == 1
    receipt = await channel.send(_out(text, delivery_id=11))
    assert len(graph.sent) == 3, "the outbox's retry sends parts two and three only"
    assert receipt.external_ids == tuple(b["_message_id"] for b in graph.sent)
    assert "".join(graph.texts_to(CUSTOMER)).replace(" ", "") == "part" * 600


async def test_a_permanent_failure_forgets_the_parts_so_a_new_attempt_starts_afresh(
    channel: InstagramChannel, graph: FakeInstagramGraph
) -> None:
    graph.customer_wrote(CUSTOMER)
    text = " ".join(["part"] * 600)
    graph.fail_next(1, code=551, after=1)
    with pytest.raises(DeliveryError):
        await channel.send(_out(text, delivery_id=12))
    await channel.send(_out(text, delivery_id=12))
    assert len(graph.sent) == 4


@pytest.mark.parametrize(("code", "status"), [(1, None), (2, 500), (4, None), (17, None), (32, None), (613, None)])
async def test_rate_limits_and_temporary_errors_are_retryable(
    channel: InstagramChannel, graph: FakeInstagramGraph, code: int, status: int | None
) -> None:
    graph.customer_wrote(CUSTOMER)
    graph.fail_next(1, code=code, status=status)
    with pytest.raises(DeliveryError) as info:
        await channel.send(_out())
    assert type(info.value) is DeliveryError
    assert (info.value.retryable, info.value.code) == (True, str(code))


@pytest.mark.parametrize("code", [551, 100, 200])
async def test_refusals_are_permanent(channel: InstagramChannel, graph: FakeInstagramGraph, code: int) -> None:
    graph.customer_wrote(CUSTOMER)
    graph.fail_next(1, code=code)
    with pytest.raises(DeliveryError) as info:
        await channel.send(_out())
    assert type(info.value) is DeliveryError
    assert (info.value.retryable, info.value.code) == (False, str(code))


async def test_an_igsid_that_never_wrote_is_permanent(channel: InstagramChannel, graph: FakeInstagramGraph) -> None:
    with pytest.raises(DeliveryError) as info:
        await channel.send(_out())
    assert (info.value.retryable, info.value.code) == (False, "100")


async def test_a_proxys_5xx_without_a_graph_body_is_retryable(
    channel: InstagramChannel, graph: FakeInstagramGraph
) -> None:
    graph.customer_wrote(CUSTOMER)
    graph.fail_next(1, code=None, status=502)
    with pytest.raises(DeliveryError) as info:
        await channel.send(_out())
    assert (info.value.retryable, info.value.code) == (True, "http_502")


def test_classify_table() -> None:
    def kind(status: int, code: int | None, subcode: int | None = None) -> str:
        err = classify(GraphError(status=status, code=code, subcode=subcode, message="m"), retry_after=4.0)
        name = type(err).__name__
        return f"{name}:{err.retryable}:{err.retry_after}"

    assert kind(401, 190, 460) == "ChannelAuthFailed:False:None"
    assert kind(400, 10, 2534022) == "WindowClosedError:False:None"
    assert kind(400, 10, 2018278) == "WindowClosedError:False:None"
    assert kind(400, 10, 2018065) == "DeliveryError:False:None"
    assert kind(400, 613) == "DeliveryError:True:4.0"
    assert kind(429, None) == "DeliveryError:True:4.0"
    assert kind(503, None) == "DeliveryError:True:4.0"
    assert kind(404, None) == "DeliveryError:False:None"


async def test_a_refused_token_is_channel_auth_failed_and_reported_without_the_token(
    section: dict[str, Any],
    graph: FakeInstagramGraph,
    core: Core,
    make_channel: Callable[[dict[str, Any]], InstagramChannel],
    caplog: pytest.LogCaptureFixture,
) -> None:
    graph.customer_wrote(CUSTOMER)
    channel = make_channel({**section, "access_token": "IGQW-expired-token"})
    with caplog.at_level(logging.DEBUG), pytest.raises(ChannelAuthFailed) as info:
        await channel.send(_out())
    assert info.value.code == "190"
    assert core.reports[-1][0] is ChannelState.BAD_CREDENTIALS
    assert "channels.instagram.access_token" in caplog.text
    assert "IGQW-expired-token" not in caplog.text and "IGQW-expired-token" not in str(info.value)
    assert graph.sent == []


async def test_network_failure_is_retryable_and_carries_no_token_or_url(
    section: dict[str, Any], make_channel: Callable[[dict[str, Any]], InstagramChannel]
) -> None:
    channel = make_channel({**section, "graph_url": "http://127.0.0.1:9/v25.0"})  # nothing listens there
    with pytest.raises(DeliveryError) as info:
        await channel.send(_out())
    assert (info.value.retryable, info.value.code) == (True, "network")
    rendered = "".join(traceback.format_exception(info.value))
    assert "127.0.0.1" not in rendered and TOKEN not in rendered and TOKEN not in repr(channel.client)


async def test_the_account_id_path_is_the_configured_one(channel: InstagramChannel, graph: FakeInstagramGraph) -> None:
    graph.customer_wrote(CUSTOMER)
    await channel.send(_out())
    assert repr(channel.client) == f"GraphClient('{channel.settings.graph_url}/{IG_USER_ID}/messages')"


async def test_empty_text_is_refused_before_any_request(channel: InstagramChannel, graph: FakeInstagramGraph) -> None:
    graph.customer_wrote(CUSTOMER)
    with pytest.raises(DeliveryError) as info:
        await channel.send(_out("   "))
    assert (info.value.retryable, info.value.code) == (False, "empty") and graph.requests == []


async def test_mark_read_sends_the_mark_seen_sender_action(
    channel: InstagramChannel, graph: FakeInstagramGraph
) -> None:
    graph.customer_wrote(CUSTOMER)
    await channel.mark_read(CUSTOMER, "aWdf_some_mid")
    assert graph.actions == [{"recipient": {"id": CUSTOMER}, "sender_action": "mark_seen"}]
