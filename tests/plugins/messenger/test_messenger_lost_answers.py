"""Messenger: an answer lost after Meta took the message is uncertain, and the echo settles it."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest

from bridge import DeliveryError, DeliveryUncertain
from carebridge_messenger import MessengerChannel
from carebridge_messenger.webhook import parse_events
from tests.fakes.messenger_graph import FakeMessengerGraph
from tests.plugins.messenger.conftest import PAGE_ID, PAGE_TOKEN, fixture_json
from tests.plugins.messenger.test_messenger_send import PSID, _out


async def test_an_answer_lost_after_meta_took_the_message_is_uncertain(
    channel: MessengerChannel, graph: FakeMessengerGraph
) -> None:
    graph.customer_wrote(PSID, time.time() - 60)
    graph.drop_answers(1)
    with pytest.raises(DeliveryUncertain) as info:
        await channel.send(_out())
    assert len(graph.sent) == 1, "Meta has it"
    assert (info.value.retryable, info.value.confirmable, info.value.code) == (True, True, "answer_lost")
    assert PAGE_TOKEN not in str(info.value) and info.value.__cause__ is None


async def test_an_unreachable_api_is_a_plain_retry(
    make_channel: Callable[[dict[str, Any]], MessengerChannel], section: dict[str, Any], unused_tcp_port: int
) -> None:
    section["graph_url"] = f"http://127.0.0.1:{unused_tcp_port}/v25.0"
    with pytest.raises(DeliveryError) as info:
        await make_channel(section).send(_out())
    assert not isinstance(info.value, DeliveryUncertain) and info.value.code == "network"


@pytest.mark.parametrize(
    ("metadata", "delivery_id"), [("carebridge:42", 42), ("carebridge:42.0", None), ("bridge-outbound-7f3a", None)]
)
def test_the_echo_of_a_deliverys_last_part_names_it(metadata: str, delivery_id: int | None) -> None:
    payload = fixture_json("messenger-echo-and-postback.json")
    payload["entry"][0]["messaging"][0]["message"]["metadata"] = metadata
    batch = parse_events(payload, page_id=PAGE_ID, now=time.time())
    echoes = [s for s in batch.statuses if s.delivery_id is not None]
    if delivery_id is None:
        assert echoes == []
        return
    (status,) = echoes
    assert (status.status, status.delivery_id, status.recipient) == ("sent", 42, "2000000000000001")
    assert status.external_id == "m_TESTmid0200ECHOaaaaBBBBccccDDDDeeee"
    assert batch.ignored == ["own_echo"], "our own echo is never stored as a message"
