"""Send tests against the fake Graph API: window rules, splitting, every error path."""

from __future__ import annotations

import logging
import time
import traceback
from collections.abc import Callable
from typing import Any

import pytest

from bridge import (
    ChannelAuthFailed,
    ChannelState,
    DeliveryError,
    OutboundMessage,
    WindowClosedError,
)
from bridge.parts import split_text
from carebridge_messenger import MessengerChannel
from carebridge_messenger.api import classify
from carebridge_meta import GraphError
from tests.fakes.messenger_graph import FakeMessengerGraph
from tests.plugins.messenger.conftest import PAGE_TOKEN, Core

PSID = "2000000000000001"
HOUR = 3600.0


def _out(text: str = "Hello from support", *, wrote_ago: float | None = HOUR, delivery_id: int = 7) -> OutboundMessage:
    last = None if wrote_ago is None else time.time() - wrote_ago
    return OutboundMessage(
        delivery_id=delivery_id, channel="messenger", recipient=PSID, text=text, last_inbound_at=last
    )


async def test_reply_inside_24h_is_a_response(channel: MessengerChannel, graph: FakeMessengerGraph) -> None:
    graph.customer_wrote(PSID, time.time() - HOUR)
    receipt = await channel.send(_out())
    (body,) = graph.sent
    assert body["messaging_type"] == "RESPONSE" and "tag" not in body
    assert body["recipient"] == {"id": PSID}
    assert body["message"] == {"text": "Hello from support", "metadata": "carebridge:7"}
    assert receipt.external_ids == (body["_message_id"],)


async def test_reply_between_24h_and_7_days_uses_the_human_agent_tag(
    channel: MessengerChannel, graph: FakeMessengerGraph
) -> None:
    graph.customer_wrote(PSID, time.time() - 30 * HOUR)
    await channel.send(_out(wrote_ago=30 * HOUR))
    (body,) = graph.sent
    assert (body["messaging_type"], body["tag"]) == ("MESSAGE_TAG", "HUMAN_AGENT")


@pytest.mark.parametrize("wrote_ago", [8 * 24 * HOUR, None])
async def test_closed_window_raises_without_calling_the_api(
    channel: MessengerChannel, graph: FakeMessengerGraph, wrote_ago: float | None
) -> None:
    graph.customer_wrote(PSID, time.time() - 8 * 24 * HOUR)
    with pytest.raises(WindowClosedError) as info:
        await channel.send(_out(wrote_ago=wrote_ago))
    assert info.value.retryable is False
    assert graph.requests == []


async def test_untagged_send_refused_after_24h_is_resent_with_the_human_agent_tag(
    channel: MessengerChannel, graph: FakeMessengerGraph
) -> None:
    # The core believes the customer wrote recently, Meta knows better: 10/2018278.
    graph.customer_wrote(PSID, time.time() - 30 * HOUR)
    receipt = await channel.send(_out(wrote_ago=HOUR))
    first, second = graph.requests
    assert first["messaging_type"] == "RESPONSE" and "tag" not in first
    assert (second["messaging_type"], second["tag"]) == ("MESSAGE_TAG", "HUMAN_AGENT")
    assert texts_and_types(graph) == [("Hello from support", "MESSAGE_TAG")]
    assert receipt.external_ids == (graph.sent[0]["_message_id"],)


async def test_window_closed_on_meta_side_even_for_the_tag_is_window_closed(
    channel: MessengerChannel, graph: FakeMessengerGraph
) -> None:
    graph.customer_wrote(PSID, time.time() - 8 * 24 * HOUR)
    with pytest.raises(WindowClosedError) as info:
        await channel.send(_out(wrote_ago=HOUR))
    assert info.value.code == "10"
    assert graph.sent == [] and len(graph.requests) == 2


async def test_a_template_is_refused_without_any_request(channel: MessengerChannel, graph: FakeMessengerGraph) -> None:
    graph.customer_wrote(PSID)
    message = OutboundMessage(
        delivery_id=9, channel="messenger", recipient=PSID, text="[re-engagement template]",
        last_inbound_at=time.time() - 2 * 24 * HOUR, template=True,
    )  # fmt: skip
    with pytest.raises(WindowClosedError) as info:
        await channel.send(message)
    assert info.value.code == "no_template" and info.value.retryable is False
    assert graph.requests == [], "the core's placeholder text never reaches the customer"


def texts_and_types(graph: FakeMessengerGraph) -> list[tuple[str, str]]:
    return [(b["message"]["text"], b["messaging_type"]) for b in graph.sent]


async def test_long_text_is_split_at_word_boundaries_in_order(
    channel: MessengerChannel, graph: FakeMessengerGraph
) -> None:
    graph.customer_wrote(PSID)
    words = [f"w{i:04d}" for i in range(750)]  # 750 × 6 - 1 = 4499 characters
    text = " ".join(words)
    assert len(text) == 4499
    receipt = await channel.send(_out(text))
    parts = graph.texts_to(PSID)
    assert len(parts) == 3
    assert all(len(p) <= 2000 for p in parts)
    assert " ".join(parts).split(" ") == words  # no word cut, none lost, order kept
    assert receipt.external_ids == tuple(b["_message_id"] for b in graph.sent)
    assert receipt.external_id == graph.sent[0]["_message_id"]
    # Only the last part names the delivery alone: its echo means the whole text arrived.
    assert [b["message"]["metadata"] for b in graph.sent] == ["carebridge:7.0", "carebridge:7.1", "carebridge:7"]


async def test_retry_after_a_failed_part_resumes_with_the_next_part(
    channel: MessengerChannel, graph: FakeMessengerGraph
) -> None:
    graph.customer_wrote(PSID)
    text = " ".join(["part"] * 1000)  # 4999 characters: three parts
    graph.fail_next(1, code=613, after=1)  # the first part goes through, the second is refused
    with pytest.raises(DeliveryError) as info:
        await channel.send(_out(text, delivery_id=11))
    assert info.value.retryable is True and info.value.code == "613"
    assert len(graph.sent) == 1
    receipt = await channel.send(_out(text, delivery_id=11))
    # The outbox's retry sends parts two and three only; the receipt still names all three.
    assert len(graph.sent) == 3
    assert receipt.external_ids == tuple(b["_message_id"] for b in graph.sent)
    assert "".join(graph.texts_to(PSID)).replace(" ", "") == "part" * 1000


@pytest.mark.parametrize(
    ("code", "status", "expected"),
    [(4, None, "4"), (17, None, "17"), (32, None, "32"), (613, None, "613"), (1, None, "1"), (2, 500, "2")],
)
async def test_rate_limits_and_temporary_errors_are_retryable(
    channel: MessengerChannel, graph: FakeMessengerGraph, code: int, status: int | None, expected: str
) -> None:
    graph.customer_wrote(PSID)
    graph.fail_next(1, code=code, status=status)
    with pytest.raises(DeliveryError) as info:
        await channel.send(_out())
    assert type(info.value) is DeliveryError
    assert info.value.retryable is True and info.value.code == expected
    assert graph.sent == []


@pytest.mark.parametrize(("code", "expected"), [(551, "551"), (100, "100"), (200, "200")])
async def test_refusals_are_permanent(
    channel: MessengerChannel, graph: FakeMessengerGraph, code: int, expected: str
) -> None:
    graph.customer_wrote(PSID)
    graph.fail_next(1, code=code)
    with pytest.raises(DeliveryError) as info:
        await channel.send(_out())
    assert type(info.value) is DeliveryError
    assert info.value.retryable is False and info.value.code == expected
    if code == 551:
        assert "This person isn't available right now" in str(info.value)


async def test_unknown_psid_is_permanent(channel: MessengerChannel, graph: FakeMessengerGraph) -> None:
    # Never recorded as having written: Meta answers 100/2018001.
    with pytest.raises(DeliveryError) as info:
        await channel.send(_out())
    assert info.value.retryable is False and info.value.code == "100"


async def test_window_error_code_is_window_closed(channel: MessengerChannel, graph: FakeMessengerGraph) -> None:
    graph.customer_wrote(PSID)
    graph.fail_next(2, code=10, subcode=2018278)  # refused untagged, then tagged
    with pytest.raises(WindowClosedError) as info:
        await channel.send(_out())
    assert info.value.code == "10" and "subcode 2018278" in str(info.value)
    assert [r.get("messaging_type") for r in graph.requests] == ["RESPONSE", "MESSAGE_TAG"]


async def test_code_10_without_the_window_subcode_is_a_permanent_permission_error(
    channel: MessengerChannel, graph: FakeMessengerGraph
) -> None:
    graph.customer_wrote(PSID)
    graph.fail_next(1, code=10, subcode=2018065, message="(#10) Requires pages_messaging permission")
    with pytest.raises(DeliveryError) as info:
        await channel.send(_out())
    assert not isinstance(info.value, WindowClosedError)
    assert info.value.retryable is False


async def test_refused_token_is_channel_auth_failed_and_reported(
    section: dict[str, Any],
    graph: FakeMessengerGraph,
    core: Core,
    make_channel: Callable[[dict[str, Any]], MessengerChannel],
    caplog: pytest.LogCaptureFixture,
) -> None:
    graph.customer_wrote(PSID)
    channel = make_channel({**section, "page_access_token": "expired-token"})
    with pytest.raises(ChannelAuthFailed) as info:
        await channel.send(_out())
    assert info.value.code == "190"
    assert core.reports[-1][0] is ChannelState.BAD_CREDENTIALS
    assert "expired-token" not in caplog.text and "expired-token" not in str(info.value)
    assert graph.sent == []


async def test_server_error_without_graph_body_is_retryable(
    channel: MessengerChannel, graph: FakeMessengerGraph
) -> None:
    graph.customer_wrote(PSID)
    graph.fail_next(1, code=None, status=502)
    with pytest.raises(DeliveryError) as info:
        await channel.send(_out())
    assert (info.value.retryable, info.value.code) == (True, "http_502")


async def test_network_failure_is_retryable_and_names_no_url(
    section: dict[str, Any],
    make_channel: Callable[[dict[str, Any]], MessengerChannel],
    caplog: pytest.LogCaptureFixture,
) -> None:
    # Nothing listens on the discard port of loopback.
    channel = make_channel({**section, "graph_url": "http://127.0.0.1:9/v25.0"})
    with pytest.raises(DeliveryError) as info:
        await channel.send(_out())
    assert info.value.retryable is True and info.value.code == "network"
    assert "127.0.0.1" not in str(info.value)
    # The URL carries the token: not even a logged traceback may show it.
    logging.getLogger("carebridge.outbox").error("send failed", exc_info=info.value)
    assert PAGE_TOKEN not in "".join(traceback.format_exception(info.value)) and PAGE_TOKEN not in caplog.text


async def test_token_goes_in_the_access_token_query_as_meta_documents(
    channel: MessengerChannel, graph: FakeMessengerGraph, caplog: pytest.LogCaptureFixture
) -> None:
    graph.customer_wrote(PSID)
    with caplog.at_level(logging.DEBUG):
        await channel.send(_out())
        graph.fail_next(1, code=190)
        with pytest.raises(ChannelAuthFailed) as info:
            await channel.send(_out())
    assert graph.auth == ["query", "query"]
    assert graph.urls[0] == f"/v25.0/100000000000001/messages?access_token={PAGE_TOKEN}"
    assert PAGE_TOKEN not in str(info.value) and PAGE_TOKEN not in repr(channel.client)
    assert PAGE_TOKEN not in "".join(traceback.format_exception(info.value))
    ours = [r.getMessage() for r in caplog.records if r.name != "aiohttp.access"]  # that one is the fake's
    assert ours and not any(PAGE_TOKEN in line for line in ours)


async def test_empty_text_is_refused_before_any_request(channel: MessengerChannel, graph: FakeMessengerGraph) -> None:
    graph.customer_wrote(PSID)
    with pytest.raises(DeliveryError) as info:
        await channel.send(_out("   "))
    assert info.value.retryable is False
    assert graph.requests == []


async def test_mark_read_sends_mark_seen(channel: MessengerChannel, graph: FakeMessengerGraph) -> None:
    graph.customer_wrote(PSID)
    await channel.mark_read(PSID, "m_whatever")
    assert graph.actions == [{"recipient": {"id": PSID}, "sender_action": "mark_seen"}]
    assert graph.sent == []


def test_split_text_edges() -> None:
    assert split_text("short", 2000) == ["short"]
    assert split_text("", 2000) == [""]
    assert split_text("x" * 5, 2) == ["xx", "xx", "x"]  # one long word is cut hard
    assert split_text("ab cd ef", 5) == ["ab cd", "ef"]
    assert split_text("ab\ncd ef", 3) == ["ab", "cd", "ef"]
    assert split_text("a" * 2000, 2000) == ["a" * 2000]


def test_classify_keeps_retry_after_and_reads_bare_http_errors() -> None:
    limited = classify(GraphError(status=400, code=613, subcode=None, message="(#613) limit"), 30.0)
    assert (limited.retryable, limited.retry_after, limited.code) == (True, 30.0, "613")
    bare = classify(GraphError(status=503, code=None, subcode=None, message="HTTP 503"))
    assert (bare.retryable, bare.code) == (True, "http_503")
    teapot = classify(GraphError(status=418, code=None, subcode=None, message="HTTP 418"))
    assert (teapot.retryable, teapot.code) == (False, "http_418")
    window = classify(GraphError(status=400, code=10, subcode=2534022, message="(#10) outside window"))
    assert isinstance(window, WindowClosedError)
