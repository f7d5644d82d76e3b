"""``SendApiClient``: an answer lost after the request was written, with and without an echo to settle it.

Messenger's tests cover the client with ``confirmed_by_echo`` (the answer
lost is ``DeliveryUncertain``); no Instagram test loses an answer, so the
plain retry of a client without that echo is pinned here, against a
loopback server that takes the message and drops the connection. The same
server with ``confirmed_by_echo`` shows that the request did count as written.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from bridge import DeliveryError, DeliveryUncertain
from carebridge_meta import SendApiClient

TOKEN = "test-token-never-shown"
BODY = {"recipient": {"id": "1111"}, "message": {"text": "hello"}}


class EchoedClient(SendApiClient):
    platform = "Echoed"
    token_in = "query"
    confirmed_by_echo = True


class UnechoedClient(SendApiClient):
    platform = "Unechoed"
    api = "Unechoed API"
    token_in = "header"


@pytest.fixture
async def graph_url(aiohttp_server: Callable[[web.Application], Awaitable[TestServer]]) -> tuple[str, list[Any]]:
    """A ``/messages`` edge that reads the whole request, keeps it, and closes the connection unanswered."""
    taken: list[Any] = []

    async def messages(request: web.Request) -> web.Response:
        taken.append(await request.json())
        assert request.transport is not None
        request.transport.close()
        return web.json_response({"message_id": "m_never_seen"})

    app = web.Application()
    app.router.add_post("/v25.0/{node}/messages", messages)
    server = await aiohttp_server(app)
    return str(server.make_url("/v25.0")), taken


async def test_without_an_echo_to_settle_it_a_lost_answer_is_a_plain_network_retry(
    http: aiohttp.ClientSession, graph_url: tuple[str, list[Any]]
) -> None:
    url, taken = graph_url
    client = UnechoedClient(http, url, "100", TOKEN)
    with pytest.raises(DeliveryError) as info:
        await client.send_message(BODY)
    assert taken == [BODY], "the platform has the message"
    assert not isinstance(info.value, DeliveryUncertain)
    assert (info.value.retryable, info.value.code) == (True, "network")
    assert str(info.value).startswith("Unechoed API unreachable (")
    assert TOKEN not in str(info.value) and info.value.__cause__ is None


async def test_with_an_echo_to_settle_it_the_same_loss_is_uncertain(
    http: aiohttp.ClientSession, graph_url: tuple[str, list[Any]]
) -> None:
    url, taken = graph_url
    client = EchoedClient(http, url, "100", TOKEN)
    with pytest.raises(DeliveryUncertain) as info:
        await client.send_message(BODY)
    assert taken == [BODY]
    assert (info.value.retryable, info.value.confirmable, info.value.code) == (True, True, "answer_lost")
    assert TOKEN not in str(info.value) and info.value.__cause__ is None
