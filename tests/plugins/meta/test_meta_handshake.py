"""``verify_subscription``: Meta's ``hub.mode=subscribe`` GET handshake, over loopback HTTP."""

from __future__ import annotations

import pytest

from tests.plugins.meta.conftest import VERIFY_TOKEN, Client, MakeClient


@pytest.mark.parametrize("path", ["", "/"])
async def test_a_matching_token_echoes_the_challenge_verbatim_as_text(client: Client, path: str) -> None:
    params = {"hub.mode": "subscribe", "hub.verify_token": VERIFY_TOKEN, "hub.challenge": "0158201444"}
    async with client.get(path, params=params) as resp:
        assert resp.status == 200
        assert resp.content_type == "text/plain"
        assert await resp.text() == "0158201444", "the leading zero shows it was not turned into a number"


@pytest.mark.parametrize(
    "params",
    [
        {"hub.mode": "subscribe", "hub.verify_token": "wrong", "hub.challenge": "1"},
        {"hub.mode": "subscribe", "hub.verify_token": VERIFY_TOKEN[:-1], "hub.challenge": "1"},
        {"hub.mode": "unsubscribe", "hub.verify_token": VERIFY_TOKEN, "hub.challenge": "1"},
        {"hub.mode": "subscribe", "hub.verify_token": VERIFY_TOKEN},
        {"hub_mode": "subscribe", "hub_verify_token": VERIFY_TOKEN, "hub_challenge": "1"},
        {},
    ],
)
async def test_anything_else_is_403_with_a_json_error(client: Client, params: dict[str, str]) -> None:
    async with client.get("/", params=params) as resp:
        assert resp.status == 403
        assert (await resp.json())["error"]["code"] == "verification_failed"


async def test_no_configured_token_refuses_even_an_empty_one(make_client: MakeClient) -> None:
    client = await make_client(verify_token="")
    params = {"hub.mode": "subscribe", "hub.verify_token": "", "hub.challenge": "1"}
    async with client.get("/", params=params) as resp:
        assert resp.status == 403
        assert (await resp.json())["error"]["code"] == "verification_failed"
