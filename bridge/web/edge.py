"""Limits at the HTTP edge: slow clients, crowds from one address, body bytes in flight.

Why here: aiohttp reads a request for as long as the client cares to send
it and buffers every body a handler reads, so one client trickling bytes,
or two hundred sending 2 MiB bodies slowly, can hold connections and memory
without end. Three guards, each O(1) per connection or request and none
holding a lock across an await (the event loop is the only writer of the
counters):

* the request head must arrive within ``[server] header_timeout`` of the
  connection opening or of the previous answer: that is aiohttp's
  keep-alive timer, which the runner is built with (``runner_options``);
* ``ConnectionGate`` counts open connections per client address; past
  ``max_connections_per_address`` a new connection is answered 429 and
  closed before aiohttp sees it (``GuardedSite`` puts it in front);
* ``body_guard`` reserves a body's size (its ``Content-Length``, or
  ``max_body`` for a chunked one) against ``max_inflight_body_bytes`` (503
  beyond it) and ``max_inflight_body_bytes_per_address`` (429) before a
  byte is read, then reads the whole body within ``body_timeout`` (408
  after it) and only then calls the handler, which finds the bytes already
  read (``request.read()``, ``json()`` and ``text()`` return them). Memory
  for bodies therefore stays under the total whatever clients do.

An IPv6 client counts per /64, the block one subscriber usually holds.
Behind a reverse proxy every connection comes from the proxy's address: the
per-address limits then apply to the proxy as a whole.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import logging
import ssl
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import web
from aiohttp.typedefs import Middleware

from bridge.http_errors import json_error

log = logging.getLogger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

#: How long a refused connection may finish sending before it is closed, so it can read the 429.
REFUSED_LINGER = 1.0
#: How long aiohttp keeps reading (and dropping) a body nobody read before it closes the connection.
MAX_LINGER = 2.0
_WARN_EVERY = 60.0


@dataclass(frozen=True, slots=True)
class EdgeLimits:
    """The ``[server]`` values the guards need (see ``bridge.config.settings.ServerConfig``)."""

    header_timeout: float
    body_timeout: float
    max_body: int
    max_connections_per_address: int
    max_inflight_body_bytes: int
    max_inflight_body_bytes_per_address: int

    @classmethod
    def from_server(cls, server: Any) -> EdgeLimits:
        """Take the values from a ``ServerConfig``."""
        return cls(
            header_timeout=server.header_timeout,
            body_timeout=server.body_timeout,
            max_body=server.max_body,
            max_connections_per_address=server.max_connections_per_address,
            max_inflight_body_bytes=server.max_inflight_body_bytes,
            max_inflight_body_bytes_per_address=server.max_inflight_body_bytes_per_address,
        )

    def runner_options(self) -> dict[str, float]:
        """Keyword arguments for ``web.AppRunner``: the head timeout rides aiohttp's keep-alive timer."""
        return {"keepalive_timeout": self.header_timeout, "lingering_time": min(self.body_timeout, MAX_LINGER)}


def client_key(address: str | None) -> str:
    """The unit the per-address limits count: the IP, or its /64 for IPv6."""
    if not address:
        return ""
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return address
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.IPv6Network((ip, 64), strict=False))
    return str(ip)


class _Throttled:
    """At most one warning a minute for a refusal that a flood would repeat thousands of times."""

    def __init__(self, what: str) -> None:
        self._what = what
        self._last = float("-inf")
        self._since = 0

    def warn(self, detail: str) -> None:
        self._since += 1
        now = time.monotonic()
        if now - self._last >= _WARN_EVERY:
            log.warning("%s: %s (%d since the last warning)", self._what, detail, self._since)
            self._last, self._since = now, 0


# --- connections --------------------------------------------------------------


class ConnectionGate:
    """Open connections per client address; ``limit`` 0 means no limit."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.open: dict[str, int] = {}
        self._warning = _Throttled("connection refused")

    def admit(self, key: str) -> bool:
        """Count a new connection from ``key``, or refuse it (and count nothing)."""
        count = self.open.get(key, 0)
        if self.limit and count >= self.limit:
            self._warning.warn(f"{count} connections already open from one address (limit {self.limit})")
            return False
        self.open[key] = count + 1
        return True

    def release(self, key: str) -> None:
        """Forget one connection from ``key``."""
        count = self.open.get(key, 0) - 1
        if count > 0:
            self.open[key] = count
        else:
            self.open.pop(key, None)


_REFUSAL = json.dumps(
    {"error": {"code": "too_many_connections", "message": "too many connections from this address"}}
).encode()
_REFUSAL_RESPONSE = (
    b"HTTP/1.1 429 Too Many Requests\r\n"
    b"Content-Type: application/json\r\n"
    b"Content-Length: " + str(len(_REFUSAL)).encode() + b"\r\n"
    b"Retry-After: 1\r\n"
    b"Connection: close\r\n\r\n" + _REFUSAL
)


class GatedProtocol(asyncio.Protocol):
    """Stands in front of aiohttp's protocol: admitted connections pass through, others get 429.

    aiohttp's handler is created only for an admitted connection, so a refused
    one costs a socket for at most ``REFUSED_LINGER`` seconds and nothing else.
    """

    def __init__(self, make_handler: Callable[[], asyncio.Protocol], gate: ConnectionGate) -> None:
        self._make_handler = make_handler
        self._gate = gate
        self._inner: asyncio.Protocol | None = None
        self._key = ""
        self._close_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        peer = transport.get_extra_info("peername")
        self._key = client_key(peer[0] if isinstance(peer, tuple) and peer else None)
        if not self._gate.admit(self._key):
            self._refuse(transport)
            return
        self._inner = self._make_handler()
        self._inner.connection_made(transport)

    def _refuse(self, transport: asyncio.BaseTransport) -> None:
        if not isinstance(transport, asyncio.WriteTransport):  # every TCP or TLS transport is one
            transport.close()
            return
        transport.write(_REFUSAL_RESPONSE)
        # Let the client finish its request and read the answer; a close with
        # unread bytes would reset the connection before it could.
        if transport.can_write_eof():
            transport.write_eof()
        self._close_timer = asyncio.get_running_loop().call_later(REFUSED_LINGER, transport.close)

    def data_received(self, data: bytes) -> None:
        if self._inner is not None:
            self._inner.data_received(data)

    def eof_received(self) -> bool | None:
        if self._inner is not None:
            return self._inner.eof_received()
        return None  # a refused connection: close now

    def pause_writing(self) -> None:
        if self._inner is not None:
            self._inner.pause_writing()

    def resume_writing(self) -> None:
        if self._inner is not None:
            self._inner.resume_writing()

    def connection_lost(self, exc: Exception | None) -> None:
        if self._close_timer is not None:
            self._close_timer.cancel()
        if self._inner is not None:
            self._gate.release(self._key)
            self._inner.connection_lost(exc)
            self._inner = None


class GuardedSite(web.BaseSite):
    """A TCP site whose connections pass a ``ConnectionGate`` first (else like ``web.TCPSite``)."""

    def __init__(
        self,
        runner: web.BaseRunner,
        host: str,
        port: int,
        gate: ConnectionGate,
        *,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        super().__init__(runner, ssl_context=ssl_context)
        self._host = host
        self._port = port
        self._gate = gate

    @property
    def name(self) -> str:
        scheme = "https" if self._ssl_context else "http"
        host = f"[{self._host}]" if ":" in self._host else self._host
        return f"{scheme}://{host}:{self._port}"

    async def start(self) -> None:
        """Listen; each connection gets a ``GatedProtocol`` around the runner's aiohttp handler."""
        await super().start()
        server = self._runner.server
        assert server is not None  # BaseSite refuses a runner that was not set up
        gate = self._gate
        self._server = await asyncio.get_running_loop().create_server(
            lambda: GatedProtocol(server, gate),
            self._host,
            self._port,
            ssl=self._ssl_context,
            backlog=self._backlog,
            reuse_address=True,
        )


# --- request bodies -----------------------------------------------------------


class BodyBudget:
    """Bytes of request bodies being received or held by a handler, in total and per address."""

    def __init__(self, total: int, per_address: int) -> None:
        self.total_limit = total
        self.address_limit = per_address
        self.total = 0
        self.by_address: dict[str, int] = {}
        self._total_warning = _Throttled("request refused (503)")
        self._address_warning = _Throttled("request refused (429)")

    def reserve(self, key: str, size: int) -> web.Response | None:
        """Reserve ``size`` bytes for ``key``; None when granted, else the refusal to answer."""
        held = self.by_address.get(key, 0)
        if held + size > self.address_limit:
            self._address_warning.warn(f"{held} body bytes in flight from one address (limit {self.address_limit})")
            return _refusal(429, "too_many_requests", "too many request bytes in flight from this address")
        if self.total + size > self.total_limit:
            self._total_warning.warn(f"{self.total} body bytes in flight (limit {self.total_limit})")
            return _refusal(503, "busy", "too many request bytes in flight; try again shortly")
        self.by_address[key] = held + size
        self.total += size
        return None

    def release(self, key: str, size: int) -> None:
        """Give back what ``reserve`` granted."""
        self.total -= size
        held = self.by_address.get(key, 0) - size
        if held > 0:
            self.by_address[key] = held
        else:
            self.by_address.pop(key, None)


def _refusal(status: int, code: str, message: str) -> web.Response:
    response = json_error(status, code, message, headers={"Retry-After": "1"})
    response.force_close()  # the body was not read: this connection cannot carry another request
    return response


def body_guard(limits: EdgeLimits) -> Middleware:
    """The middleware that bounds body bytes in flight and the time to receive a body."""
    budget = BodyBudget(limits.max_inflight_body_bytes, limits.max_inflight_body_bytes_per_address)
    timeout = limits.body_timeout

    @web.middleware
    async def guard(request: web.Request, handler: Handler) -> web.StreamResponse:
        if not request.body_exists:
            return await handler(request)
        size = request.content_length if request.content_length is not None else limits.max_body
        key = client_key(request.remote)
        refused = budget.reserve(key, size)
        if refused is not None:
            return refused
        try:
            try:
                async with asyncio.timeout(timeout):
                    await request.read()
            except TimeoutError:
                response = json_error(408, "request_timeout", f"request body not received within {timeout:g}s")
                response.force_close()
                return response
            except ConnectionError:
                response = json_error(400, "bad_request", "the connection broke while the body was being sent")
                response.force_close()
                return response
            return await handler(request)
        finally:
            budget.release(key, size)

    return guard
