"""What keeps the public chat routes from being abused: origins, rates, open streams.

Anyone on the internet can reach ``/webhooks/webchat``, so every route that
stores or streams is bounded: by the origin of the page that calls it (a
browser on another site may only if ``allowed_origins`` names that site), by
how often one client address and one chat may write (moving windows of the
``limits`` library, kept in memory: a restart forgets them, which is fine
for limits measured in minutes), and by how many streams may stay open.

Behind a reverse proxy every request comes from the proxy's address, so the
per-client limits then apply to the proxy as a whole; the per-chat limits
still hold for each customer.
"""

from __future__ import annotations

import ipaddress
import math
import time
from collections import Counter

from aiohttp import web
from limits import RateLimitItem
from limits.aio.storage import MemoryStorage
from limits.aio.strategies import MovingWindowRateLimiter

from .config import normalize_origin

#: Streams one chat may hold open at once (tabs of one customer).
STREAMS_PER_ADDRESS = 5
#: Streams one client address may hold open at once.
STREAMS_PER_CLIENT = 50
#: Headers a browser on an allowed origin may send.
ALLOWED_HEADERS = "Authorization, Content-Type, Last-Event-ID"


def client_key(request: web.Request) -> str:
    """Who is asking, for per-client limits: the peer address, an IPv6 one as its /64."""
    remote = request.remote or "unknown"
    try:
        address = ipaddress.ip_address(remote)
    except ValueError:
        return remote
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        return str(ipaddress.ip_network(f"{address}/64", strict=False))
    return str(address)


class Origins:
    """Which browser origins may call the chat's routes.

    A request without ``Origin`` (curl, the bridge's own page on a GET) is
    not a cross-site browser call and passes; one whose origin is the host it
    asked for is the bridge's own page; anything else must be listed.
    """

    def __init__(self, allowed: tuple[str, ...]) -> None:
        self.allowed = frozenset(allowed)

    def check(self, request: web.Request) -> tuple[bool, str | None]:
        """``(allowed, origin to name in Access-Control-Allow-Origin or None)``."""
        origin = request.headers.get("Origin")
        if origin is None:
            return True, None
        normalized = normalize_origin(origin)
        if normalized is None:
            return False, None
        if normalized in self.allowed:
            return True, origin
        host = normalized.partition("://")[2]
        return host == (request.host or "").lower(), None

    @staticmethod
    def cors_headers(origin: str | None) -> dict[str, str]:
        """The CORS headers of an answer to an allowed other origin (none for the bridge's own page)."""
        if origin is None:
            return {}
        return {"Access-Control-Allow-Origin": origin, "Vary": "Origin"}


class RateLimits:
    """Moving-window limits per client address and per chat."""

    def __init__(self, session: RateLimitItem, client: RateLimitItem, address: RateLimitItem) -> None:
        self.storage = MemoryStorage()
        self.limiter = MovingWindowRateLimiter(self.storage)
        self.session = session
        self.client = client
        self.address = address

    async def hit(self, item: RateLimitItem, *key: str) -> float | None:
        """Count one request; None if it is within ``item``, else seconds until one would be."""
        if await self.limiter.hit(item, *key):
            return None
        stats = await self.limiter.get_window_stats(item, *key)
        return max(1.0, math.ceil(stats.reset_time - time.time()))

    async def close(self) -> None:
        """Forget every window (the channel stops)."""
        await self.storage.reset()


class StreamCounts:
    """Open event streams per chat and per client address."""

    def __init__(self) -> None:
        self.by_address: Counter[str] = Counter()
        self.by_client: Counter[str] = Counter()

    def admit(self, address: str, client: str) -> bool:
        """Count a new stream; False (and nothing counted) when a limit is reached."""
        if self.by_address[address] >= STREAMS_PER_ADDRESS or self.by_client[client] >= STREAMS_PER_CLIENT:
            return False
        self.by_address[address] += 1
        self.by_client[client] += 1
        return True

    def release(self, address: str, client: str) -> None:
        """Forget a stream that ended."""
        for counter, key in ((self.by_address, address), (self.by_client, client)):
            counter[key] -= 1
            if counter[key] <= 0:
                del counter[key]
