"""Fixtures shared by the Meta plugin tests."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import aiohttp
import pytest


@dataclass
class BlackHole:
    """A Graph API stand-in that accepts connections and never answers.

    :param url: a ``graph_url`` pointing at it.
    :param connections: how many connections it has accepted so far.
    """

    url: str = ""
    connections: int = 0
    writers: list[asyncio.StreamWriter] = field(default_factory=list)


@pytest.fixture
async def black_hole() -> AsyncIterator[BlackHole]:
    """A platform that hangs: proves a webhook is answered without waiting for any call to it."""
    hole = BlackHole()

    async def hold(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        hole.connections += 1
        hole.writers.append(writer)
        await reader.read()  # until the client gives up

    server = await asyncio.start_server(hold, "127.0.0.1", 0)
    hole.url = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}/v25.0"
    yield hole
    for writer in hole.writers:
        writer.close()
    server.close()
    await server.wait_closed()


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    """The shared client session a channel gets from the core."""
    async with aiohttp.ClientSession() as session:
        yield session
