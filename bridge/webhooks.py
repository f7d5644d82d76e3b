"""Building blocks of a webhook channel, for plugin authors of any platform.

A platform that pushes events over HTTP needs the same three things whatever
its payloads: a sub-app that answers on the mount path with or without a
trailing slash, the raw body within the operator's size limit (signatures
are computed over the bytes as sent), and an answer that tells the platform
to retry when storing failed. They live here once, public through ``bridge``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence

from aiohttp import web

from bridge.channel import ChannelContext
from bridge.http_errors import http_error, json_error
from bridge.models import InboundMessage, StatusUpdate

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def webhook_app(max_body: int, *, receive: Handler, verify: Handler | None = None) -> web.Application:
    """Build a channel's webhook sub-app: POST events to ``receive``, GET to ``verify``.

    Both the mount path (``/webhooks/<name>``) and the one with a trailing
    slash answer: callback URLs are often typed by hand in a platform's
    dashboard. ``verify`` is the GET handshake of platforms that have one
    (Meta's ``hub.challenge``); without it a GET is 405.

    :param max_body: ``ctx.max_body``, the largest body accepted when the
        sub-app is served on its own (tests); mounted in the bridge, the
        bridge's application enforces the same ``[server] max_body``.
    """
    app = web.Application(client_max_size=max_body)
    for path in ("", "/"):
        if verify is not None:
            app.router.add_get(path, verify)
        app.router.add_post(path, receive)
    return app


async def read_body(request: web.Request) -> bytes:
    """Return the request's raw body, refusing one over the size limit.

    The limit is the serving application's ``client_max_size``: ``[server]
    max_body`` in the bridge. A declared ``Content-Length`` over it is refused
    before any byte is read; a chunked body as soon as it passes it.

    :raises web.HTTPException: 413 with a JSON body (code ``body_too_large``).
    """
    limit = request.client_max_size
    if request.content_length is not None and 0 < limit < request.content_length:
        raise _too_large(limit)
    try:
        return await request.read()
    except web.HTTPRequestEntityTooLarge as err:
        raise _too_large(limit) from err


def _too_large(limit: int) -> web.HTTPException:
    return http_error(413, "body_too_large", f"request body exceeds {limit} bytes")


async def hand_over(
    ctx: ChannelContext, messages: Sequence[InboundMessage], statuses: Sequence[StatusUpdate]
) -> web.Response | None:
    """Give one POST's messages, then its statuses, to the core.

    Returns None once both are committed (answer the platform with 2xx now),
    or a 500 JSON answer when storing failed: the platform then delivers the
    POST again, and the core drops what it already has.
    """
    try:
        if messages:
            await ctx.deliver(messages)
        if statuses:
            await ctx.update_status(statuses)
    except Exception:  # boundary: the platform must see a failure so that it retries the POST
        ctx.log.exception("storing a webhook failed (%d messages, %d statuses); asking the platform to retry",
                          len(messages), len(statuses))  # fmt: skip
        return json_error(500, "store_failed", "the event could not be stored; retry later")
    return None
