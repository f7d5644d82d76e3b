"""The suite-wide guard (tests/conftest.py) keeps every test on loopback."""

from __future__ import annotations

import socket

import aiohttp
import pytest


def test_the_loopback_guard_refuses_other_hosts() -> None:
    with pytest.raises(OSError, match="loopback"):
        socket.create_connection(("192.0.2.1", 80), timeout=0.1)
    with pytest.raises(OSError, match="loopback"):
        socket.getaddrinfo("graph.facebook.com", 443)


async def test_an_http_client_cannot_reach_a_real_platform() -> None:
    async with aiohttp.ClientSession() as session:
        with pytest.raises(aiohttp.ClientError):
            await session.get("https://graph.facebook.com/v25.0/me", timeout=aiohttp.ClientTimeout(total=2))


def test_loopback_stays_reachable() -> None:
    server = socket.create_server(("127.0.0.1", 0))
    try:
        client = socket.create_connection(server.getsockname(), timeout=1)
        client.close()
    finally:
        server.close()
