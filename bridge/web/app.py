"""The aiohttp applications: console, agent API (``/api``), channel webhooks and pages, /healthz, /metrics.

Why here and not in app.py: the HTTP surface (routes, size limit, error
shape, request metrics) is one concern, the wiring of resources another.
``make_app`` ties the bridge's start/stop to the application's
``cleanup_ctx``, so the server starts the bridge before it listens and stops
it only after in-flight requests have finished.

/healthz and /metrics are for operators, not the public: with ``[server]
admin_listen`` they move to a separate application (``make_admin_app``) on
that address and the main one answers 404 for them; with ``admin_token``
they need ``Authorization: Bearer TOKEN`` wherever they are served. The
edge limits (``bridge.web.edge``) guard request bodies on the main app.
"""

from __future__ import annotations

import hmac
import logging
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable

from aiohttp import web

from bridge.app.bridge import Bridge
from bridge.errors import PluginLoadError
from bridge.http_errors import json_error
from bridge.web.api import PREFIX as API_PREFIX
from bridge.web.api import make_api
from bridge.web.console import CONSOLE_PATHS, add_console
from bridge.web.edge import EdgeLimits, body_guard

log = logging.getLogger(__name__)

BRIDGE = web.AppKey("bridge", Bridge)
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    408: "request_timeout",
    409: "conflict",
    413: "too_large",
    415: "unsupported_media_type",
    429: "too_many_requests",
    503: "unavailable",
}
_QUIET = ("/healthz", "/metrics")


def make_app(bridge: Bridge) -> web.Application:
    """Build the web application for ``bridge``.

    Mounts each enabled channel's ``web_app()`` at ``/webhooks/<name>`` and its
    ``pages()`` at top level, the agent console (``bridge.web.console``) at
    ``/``, and /healthz and /metrics unless ``[server] admin_listen`` serves them. The
    bridge is started when the app starts and stopped when it is cleaned up;
    closing the bridge stays with whoever created it.
    """
    server = bridge.config.server
    app = web.Application(
        client_max_size=server.max_body,
        middlewares=[_metrics_middleware, _error_middleware, body_guard(EdgeLimits.from_server(server))],
    )
    app[BRIDGE] = bridge
    app.cleanup_ctx.append(_lifecycle)
    app.on_shutdown.append(_end_streams)
    if server.admin_listen is None:
        _add_admin_routes(app)
    app.add_subapp(API_PREFIX, make_api(bridge))
    for name, channel in bridge.channels.items():
        sub = channel.web_app()
        if sub is not None:
            app.add_subapp(f"/webhooks/{name}", sub)
    add_console(app, bridge)
    _add_channel_pages(app, bridge)
    return app


#: First path segments the core serves (or keeps for itself); a channel's page may not take them.
RESERVED_SEGMENTS = frozenset({"api", "healthz", "metrics", "webhooks", *CONSOLE_PATHS})
_PAGE_PATH = re.compile(r"^/[a-z0-9][a-z0-9_-]*$")


def _add_channel_pages(app: web.Application, bridge: Bridge) -> None:
    """Serve each channel's ``pages()`` at their top-level paths (GET and HEAD).

    :raises PluginLoadError: naming the channel, for a path that is malformed,
        reserved by the core or already served by another channel.
    """
    taken: dict[str, str] = {}
    for name, channel in bridge.channels.items():
        for path, handler in channel.pages().items():
            if not _PAGE_PATH.match(path) or path[1:] in RESERVED_SEGMENTS:
                raise PluginLoadError(f"channel {name}: cannot serve a page at {path!r} (reserved or malformed)")
            if path in taken:
                raise PluginLoadError(f"channel {name}: the page {path} is already served by channel {taken[path]}")
            taken[path] = name
            app.router.add_get(path, handler)


def make_admin_app(bridge: Bridge) -> web.Application:
    """The application for ``[server] admin_listen``: /healthz and /metrics only.

    It does not start or stop the bridge: the main application does.
    """
    app = web.Application(client_max_size=1024, middlewares=[_metrics_middleware, _error_middleware])
    app[BRIDGE] = bridge
    _add_admin_routes(app)
    return app


def _add_admin_routes(app: web.Application) -> None:
    app.router.add_get("/healthz", _admin_only(healthz))
    app.router.add_get("/metrics", _admin_only(metrics))


def _admin_only(handler: Handler) -> Handler:
    """Require ``Authorization: Bearer <admin_token>`` when ``[server] admin_token`` is set."""

    async def checked(request: web.Request) -> web.StreamResponse:
        token = request.app[BRIDGE].config.server.admin_token
        if token and not _bearer_matches(request.headers.get("Authorization", ""), token):
            return json_error(
                401,
                "unauthorized",
                "this endpoint needs the admin token (Authorization: Bearer ...)",
                headers={"WWW-Authenticate": 'Bearer realm="carebridge-admin"'},
            )
        return await handler(request)

    checked.__doc__ = handler.__doc__
    return checked


def _bearer_matches(header: str, token: str) -> bool:
    """Constant-time comparison of a ``Bearer`` credential with the admin token."""
    scheme, _, given = header.partition(" ")
    if scheme.lower() != "bearer":
        return False
    return hmac.compare_digest(given.strip().encode("utf-8", "surrogateescape"), token.encode("utf-8"))


async def _end_streams(app: web.Application) -> None:
    """End live-update streams before in-flight requests are awaited: they would never finish by themselves."""
    bridge = app[BRIDGE]
    if hasattr(bridge, "events"):
        bridge.events.close_all()


async def _lifecycle(app: web.Application) -> AsyncIterator[None]:
    bridge = app[BRIDGE]
    await bridge.start()
    yield
    await bridge.stop()


def _route_label(request: web.Request, bridge: Bridge) -> tuple[str, str | None]:
    """Return a low-cardinality route label and the webhook channel, if any."""
    parts = request.path.split("/", 3)
    if len(parts) >= 3 and parts[1] == "webhooks" and parts[2] in bridge.channels:
        return f"/webhooks/{parts[2]}", parts[2]
    resource = request.match_info.route.resource
    if resource is None:
        return "unmatched", None
    return resource.canonical, None


@web.middleware
async def _metrics_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Count every request by route and status, time webhooks, log one line each."""
    bridge = request.app[BRIDGE]
    started = time.perf_counter()
    status = 500
    try:
        response = await handler(request)
        status = response.status
        return response
    except web.HTTPException as exc:
        status = exc.status
        raise
    finally:
        elapsed = time.perf_counter() - started
        route, channel = _route_label(request, bridge)
        bridge.metrics.http_requests.labels(route=route, status=str(status)).inc()
        if channel is not None:
            bridge.metrics.webhook_latency.labels(channel=channel).observe(elapsed)
        # The path only: query strings can carry tokens (Meta's hub.verify_token).
        level = logging.DEBUG if request.path in _QUIET else logging.INFO
        log.log(level, "%s %s %d %.1fms", request.method, request.path, status, elapsed * 1000)


@web.middleware
async def _error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Answer every error as ``{"error": {"code", "message"}}`` (DESIGN §6)."""
    max_body = request.app[BRIDGE].config.server.max_body
    if request.content_length is not None and request.content_length > max_body:
        return json_error(413, "too_large", f"request body exceeds {max_body} bytes")
    try:
        return await handler(request)
    except web.HTTPException as exc:
        if exc.status < 400 or exc.content_type == "application/json":
            raise
        if exc.status == 413:
            return json_error(413, "too_large", f"request body exceeds {max_body} bytes")
        headers = {k: v for k, v in exc.headers.items() if k in ("Allow", "Retry-After", "WWW-Authenticate")}
        return json_error(exc.status, _CODES.get(exc.status, f"http_{exc.status}"), exc.reason, headers=headers)
    except Exception:  # boundary: an unexpected error becomes a 500 JSON answer, logged with its traceback
        log.exception("unhandled error in %s %s", request.method, request.path)
        return json_error(500, "internal_error", "internal error")


async def healthz(request: web.Request) -> web.Response:
    """``GET /healthz``: status, version, plugins, channels, store, scheduler, outbox."""
    document = request.app[BRIDGE].health()
    status = 503 if document["store"].get("status") == "error" else 200
    return web.json_response(document, status=status)


async def metrics(request: web.Request) -> web.Response:
    """``GET /metrics``: the Prometheus text exposition."""
    body, content_type = request.app[BRIDGE].metrics.render()
    response = web.Response(body=body)
    response.headers["Content-Type"] = content_type
    return response
