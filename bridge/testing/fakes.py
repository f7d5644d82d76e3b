"""A base for fake platform servers: an aiohttp app that records every request and can script answers.

A channel's tests talk to its platform's API over real HTTP on loopback: a
small aiohttp app that answers as the platform documents and refuses what
the platform refuses. What every such fake needs besides its routes is the
same: a record of the requests that reached it, and a way to make the next
calls fail (a 500, a 429 with ``Retry-After``, a dropped connection), or
fail after ``k`` successes to break the middle of a split message::

    class FakeAcme(FakePlatform):
        def __init__(self, token: str) -> None:
            super().__init__()
            self.token = token
            self.sent: list[dict[str, Any]] = []
            self.app.router.add_post("/v1/messages", self.messages)

        async def messages(self, request: web.Request) -> web.Response:
            if request.headers.get("Authorization") != f"Bearer {self.token}":
                return web.json_response({"error": "unauthorized"}, status=401)
            body = await request.json()
            self.sent.append(body)
            return web.json_response({"id": f"acme-{len(self.sent)}"})

    fake = FakeAcme("t0k3n")
    server = await start_server(fake.app)           # or pytest-aiohttp's aiohttp_server
    fake.fail_next(1, after=1, status=503)          # the second call fails
    ...
    assert [r.json()["text"] for r in fake.requests_to("/v1/messages")] == [...]

Scripted answers come first, before the routes (and before any
authentication a route does): subclasses narrow which requests they apply
to by overriding ``scripted_for``.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from aiohttp.test_utils import TestServer

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass(frozen=True, slots=True)
class RecordedRequest:
    """One request that reached a fake platform, as it arrived.

    :param query: the query parameters (the last value of a repeated one).
    """

    method: str
    path: str
    query: Mapping[str, str]
    headers: Mapping[str, str]
    body: bytes

    def json(self) -> Any:
        """The body parsed as JSON.

        :raises ValueError: when it is not JSON.
        """
        return json.loads(self.body)


@dataclass(frozen=True, slots=True)
class ScriptedAnswer:
    """An answer a fake gives instead of its route's.

    :param status: the HTTP status.
    :param body: a JSON body (``dict`` or ``list``), or text; None: empty.
    :param headers: extra headers (``Retry-After``).
    :param disconnect: drop the connection without any answer (a crashed
        proxy); the client sees a network error.
    """

    status: int = 500
    body: Any = None
    headers: Mapping[str, str] = field(default_factory=dict)
    disconnect: bool = False

    def response(self) -> web.StreamResponse:
        """Build the aiohttp response."""
        if isinstance(self.body, (dict, list)):
            return web.json_response(self.body, status=self.status, headers=dict(self.headers))
        text = "" if self.body is None else str(self.body)
        return web.Response(status=self.status, text=text, headers=dict(self.headers))


class FakePlatform:
    """The common part of a fake platform API: ``app``, ``requests``, scripted answers.

    Subclasses add their routes to ``self.app.router`` in ``__init__``.

    :ivar requests: every request that reached the app, routed or not, in order.
    """

    def __init__(self) -> None:
        self.requests: list[RecordedRequest] = []
        self._script: list[ScriptedAnswer | None] = []
        self.app = web.Application(middlewares=[self._middleware])

    # -- test controls ----------------------------------------------------

    def script(self, *answers: ScriptedAnswer | None) -> None:
        """Queue answers for the next scripted-for requests, in order; None lets one through."""
        self._script.extend(answers)

    def fail_next(
        self,
        n: int = 1,
        *,
        status: int = 500,
        body: Any = None,
        headers: Mapping[str, str] | None = None,
        after: int = 0,
    ) -> None:
        """Answer the next ``n`` requests with ``status`` (and ``body``), after letting ``after`` through."""
        answer = ScriptedAnswer(status=status, body=body, headers=dict(headers or {}))
        self.script(*([None] * after), *([answer] * n))

    def disconnect_next(self, n: int = 1, *, after: int = 0) -> None:
        """Drop the connection of the next ``n`` requests without answering, after ``after`` others."""
        self.script(*([None] * after), *([ScriptedAnswer(disconnect=True)] * n))

    def requests_to(self, path: str, method: str | None = None) -> list[RecordedRequest]:
        """The recorded requests for ``path`` (and ``method``), in order."""
        return [r for r in self.requests if r.path == path and (method is None or r.method == method)]

    @property
    def pending_script(self) -> int:
        """How many scripted answers (and pass-throughs) are still queued."""
        return len(self._script)

    # -- what subclasses may refine ------------------------------------------

    def scripted_for(self, request: web.Request) -> bool:
        """Whether scripted answers apply to ``request`` (default: every request)."""
        return True

    # -- the middleware ---------------------------------------------------

    @web.middleware
    async def _middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        body = await request.read()  # kept by aiohttp: the route reads it again
        self.requests.append(
            RecordedRequest(
                method=request.method,
                path=request.path,
                query={key: request.query.getall(key)[-1] for key in request.query},
                headers=dict(request.headers),
                body=body,
            )
        )
        if self._script and self.scripted_for(request):
            answer = self._script.pop(0)
            if answer is not None:
                if answer.disconnect:
                    if request.transport is not None:
                        request.transport.close()
                    raise web.HTTPInternalServerError()  # never reaches the closed connection
                return answer.response()
        return await handler(request)


async def start_server(app: web.Application) -> TestServer:
    """Serve ``app`` on a free loopback port; ``server.make_url("/")`` is its base, ``await server.close()`` ends it."""
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    return server
