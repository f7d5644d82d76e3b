"""The chat's HTTP routes: the page, its files, ``/session``, ``/messages`` and ``/events``.

Mounted by the core at ``/webhooks/webchat`` (the page at ``/chat``)::

    POST /webhooks/webchat/session   {"name"?, "email"?}  -> 201 {"token", "address"}
    POST /webhooks/webchat/messages  Bearer TOKEN, {"text"} -> 201 once committed
    GET  /webhooks/webchat/events    Bearer TOKEN or ?token= -> text/event-stream
    GET  /webhooks/webchat/widget.js, /webhooks/webchat/static/{chat.js,chat.css}

Every answer that is not a file is JSON; errors have the core's shape
(``{"error": {"code", "message"}}``). The token is never logged: the core
logs paths without query strings.
"""

from __future__ import annotations

import json
import time
import uuid
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import web
from aiohttp_sse import sse_response

from bridge import CONTACT_EMAIL, ChannelContext, InboundMessage, http_error, json_error, read_body

from .assets import Assets, file_response, page_policy
from .config import WebchatConfig
from .guards import ALLOWED_HEADERS, Origins, RateLimits, StreamCounts, client_key
from .streams import StreamHub, last_event_id, pump
from .tokens import address_of, bearer, new_token

CHANNEL = "webchat"
MAX_NAME = 80
MAX_EMAIL = 254
#: Profiles (name, email) kept for chats that have not written yet.
MAX_PROFILES = 10000
PING_SECONDS = 15.0

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass(frozen=True, slots=True)
class Profile:
    """What a customer told the chat about themself when it opened."""

    name: str | None
    email: str | None


class ChatRoutes:
    """The handlers, sharing the channel's settings, guards and streams."""

    def __init__(self, settings: WebchatConfig, ctx: ChannelContext, hub: StreamHub) -> None:
        self.settings = settings
        self.ctx = ctx
        self.hub = hub
        self.origins = Origins(settings.allowed_origins)
        self.limits = RateLimits(settings.session_rate, settings.client_rate, settings.address_rate)
        self.streams = StreamCounts()
        self.assets = Assets.load(settings.title, settings.max_text)
        # Given at /session, handed to the core with the chat's first message.
        self.profiles: OrderedDict[str, Profile] = OrderedDict()

    def app(self) -> web.Application:
        """The sub-application the core mounts at ``/webhooks/webchat``."""
        app = web.Application(client_max_size=self.ctx.max_body, middlewares=[self._cors_on_errors])
        for path, handler in (("/session", self.session), ("/messages", self.messages)):
            app.router.add_post(path, handler)
            app.router.add_route("OPTIONS", path, self.preflight)
        app.router.add_get("/events", self.events)
        app.router.add_route("OPTIONS", "/events", self.preflight)
        app.router.add_get("/widget.js", self.widget)
        app.router.add_get("/static/{name}", self.static)
        app.on_shutdown.append(self._shutdown)
        return app

    @web.middleware
    async def _cors_on_errors(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        """Let an allowed other site read the chat's refusals too (400, 401, 413, 429)."""
        try:
            return await handler(request)
        except web.HTTPException as exc:
            allowed, origin = self.origins.check(request)
            if allowed:
                exc.headers.update(Origins.cors_headers(origin))
            raise

    async def _shutdown(self, app: web.Application) -> None:
        """End the open streams before the server waits for its handlers."""
        self.hub.close_all()

    # --- files --------------------------------------------------------------

    async def page(self, request: web.Request) -> web.StreamResponse:
        """``GET /chat``: the customer page (framed only by ``allowed_origins``)."""
        headers = {
            "Content-Security-Policy": page_policy(self.settings.allowed_origins),
            "Referrer-Policy": "no-referrer",
            "Cache-Control": "no-cache",
        }
        if not self.settings.allowed_origins:
            headers["X-Frame-Options"] = "DENY"
        return file_response(self.assets.page, "chat.html", headers=headers)

    async def static(self, request: web.Request) -> web.StreamResponse:
        """The page's script and style."""
        name = request.match_info["name"]
        body = self.assets.files.get(name)
        if body is None:
            raise http_error(404, "not_found", "no such file")
        return file_response(body, name)

    async def widget(self, request: web.Request) -> web.StreamResponse:
        """``widget.js`` for the company's own site: a button that opens /chat in a frame."""
        return file_response(self.assets.widget, "widget.js", headers={"Cross-Origin-Resource-Policy": "cross-origin"})

    # --- API ------------------------------------------------------------------

    def _origin(self, request: web.Request) -> dict[str, str]:
        """CORS headers for the answer; 403 for a browser on a site that is not allowed."""
        allowed, origin = self.origins.check(request)
        if not allowed:
            raise http_error(
                403, "origin_not_allowed", "this site may not use the chat (channels.webchat.allowed_origins)"
            )
        return Origins.cors_headers(origin)

    async def preflight(self, request: web.Request) -> web.StreamResponse:
        """CORS preflight: allowed origins may POST JSON with a Bearer token and open streams."""
        headers = self._origin(request)
        if not headers:
            return web.Response(status=204)
        headers.update({
            "Access-Control-Allow-Methods": "GET, POST",
            "Access-Control-Allow-Headers": ALLOWED_HEADERS,
            "Access-Control-Max-Age": "600",
        })  # fmt: skip
        return web.Response(status=204, headers=headers)

    async def _limited(self, item: Any, *key: str) -> None:
        retry = await self.limits.hit(item, *key)
        if retry is not None:
            error = http_error(429, "too_many_requests", "slow down and try again")
            error.headers["Retry-After"] = str(int(retry))
            raise error

    def _address(self, request: web.Request, *, query: bool = False) -> str:
        token = bearer(request.headers.get("Authorization", ""))
        if not token and query:
            token = request.query.get("token", "")
        address = address_of(token) if token else None
        if address is None:
            error = http_error(401, "unauthorized", "a chat token is needed (Authorization: Bearer TOKEN)")
            error.headers["WWW-Authenticate"] = 'Bearer realm="carebridge-webchat"'
            raise error
        return address

    async def _json(self, request: web.Request) -> dict[str, Any]:
        body = await read_body(request)
        if not body.strip():
            return {}
        try:
            payload = json.loads(body)
        except (ValueError, UnicodeDecodeError):
            raise http_error(400, "bad_json", "the body must be a JSON object") from None
        if not isinstance(payload, dict):
            raise http_error(400, "bad_json", "the body must be a JSON object")
        return payload

    async def session(self, request: web.Request) -> web.StreamResponse:
        """``POST /session``: a new chat token and its address; name and email are optional."""
        cors = self._origin(request)
        await self._limited(self.limits.session, "session", client_key(request))
        payload = await self._json(request)
        profile = Profile(name=_name(payload.get("name")), email=_email(payload.get("email")))
        token = new_token()
        address = address_of(token)
        assert address is not None  # new_token makes well-formed tokens
        if profile.name or profile.email:
            self.profiles[address] = profile
            while len(self.profiles) > MAX_PROFILES:
                self.profiles.popitem(last=False)
        return web.json_response({"token": token, "address": f"{CHANNEL}:{address}"}, status=201, headers=cors)

    async def messages(self, request: web.Request) -> web.StreamResponse:
        """``POST /messages``: store the customer's text; 201 only once the core committed it."""
        cors = self._origin(request)
        address = self._address(request)
        await self._limited(self.limits.client, "client", client_key(request))
        await self._limited(self.limits.address, "address", address)
        payload = await self._json(request)
        text = payload.get("text")
        if not isinstance(text, str) or not text.strip():
            raise http_error(400, "empty_text", 'send a non-empty "text"')
        text = text.strip()
        if len(text) > self.settings.max_text:
            return json_error(
                413, "text_too_long", f"a message may have at most {self.settings.max_text} characters", headers=cors
            )
        profile = self.profiles.get(address)
        external_id = uuid.uuid4().hex
        message = InboundMessage(
            channel=CHANNEL,
            sender=address,
            external_id=external_id,
            text=text,
            timestamp=time.time(),
            sender_name=profile.name if profile else None,
            meta={CONTACT_EMAIL: profile.email} if profile and profile.email else {},
        )
        try:
            await self.ctx.deliver([message])
        except Exception:  # boundary: the customer must learn that their message was not stored
            self.ctx.log.exception("storing a chat message failed")
            return json_error(503, "store_failed", "the message could not be stored; try again", headers=cors)
        self.profiles.pop(address, None)
        self.hub.wake(address)
        return web.json_response({"id": external_id}, status=201, headers=cors)

    async def events(self, request: web.Request) -> web.StreamResponse:
        """``GET /events``: the chat's messages as Server-Sent Events, replayed then live."""
        cors = self._origin(request)
        address = self._address(request, query=True)
        client = client_key(request)
        if not self.streams.admit(address, client):
            return json_error(
                429, "too_many_streams", "too many open chat windows", headers={**cors, "Retry-After": "10"}
            )
        stream = self.hub.open(address)
        try:
            async with sse_response(request, headers=cors, ping_interval=PING_SECONDS) as sse:
                await pump(self.ctx, request, sse, stream, last_event_id(request))
            return sse
        finally:
            self.hub.close(stream)
            self.streams.release(address, client)

    async def close(self) -> None:
        """Release the rate-limit windows (the channel stops)."""
        await self.limits.close()


def _name(value: object) -> str | None:
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise http_error(400, "bad_name", '"name" must be a text')
    name = " ".join("".join(c for c in value if c.isprintable()).split())
    if len(name) > MAX_NAME:
        raise http_error(400, "bad_name", f'"name" may have at most {MAX_NAME} characters')
    return name or None


def _email(value: object) -> str | None:
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise http_error(400, "bad_email", '"email" must be a text')
    email = value.strip().lower()
    local, at, domain = email.rpartition("@")
    labels = domain.split(".")
    if (
        not at
        or not local
        or len(email) > MAX_EMAIL
        or len(labels) < 2
        or not all(labels)
        or any(c.isspace() or c in '<>()[],;:"\\' for c in email)
    ):
        raise http_error(400, "bad_email", '"email" is not an email address')
    return email
