"""``GET /api/events``: Server-Sent Events of what the session's agent may see.

Events are ``message`` (``{"conversation_id", "message": {...}}``, sensitive
values masked), ``assigned``, ``transferred`` and ``closed``
(``{"conversation_id"}``), each with an ``id`` a reconnecting client sends
back as ``Last-Event-ID`` to resume (``bridge.app.events``). A comment line
every ``HEARTBEAT`` seconds keeps proxies from closing an idle stream; at the
same pace the session is checked again, so a logout, an expiry or a disabled
agent ends the stream. Each stream holds one connection, which counts
towards ``[server] max_connections_per_address``.
"""

from __future__ import annotations

import json
import logging

from aiohttp import web
from aiohttp_sse import sse_response

from bridge.app.events import LiveEvent, parse_cursor
from bridge.web.api.auth import Principal, lookup, principal
from bridge.web.api.common import bridge_of

log = logging.getLogger(__name__)

HEARTBEAT = 15.0
#: How long a browser waits before reconnecting after the stream ends (milliseconds).
RETRY_MS = 3000


def _visible(caller: Principal, event: LiveEvent) -> bool:
    return event.audience.admits(caller.agent.id, caller.agent.queues, caller.admin)


async def get_events(request: web.Request) -> web.StreamResponse:
    """Stream live events until the client leaves, the session ends or the bridge stops."""
    caller = principal(request)
    bridge = bridge_of(request)
    hub = bridge.events
    resume = parse_cursor(request.headers.get("Last-Event-ID"))
    subscription = await hub.subscribe(caller.agent.id, caller.session.id)
    try:
        backlog = await hub.since(resume) if resume is not None else []
        replayed = {past.row for past in backlog}
        async with sse_response(request, ping_interval=HEARTBEAT) as stream:
            try:
                # A comment and the reconnection delay: no event, but the client knows it is connected.
                await stream.write(f": connected\r\nretry: {RETRY_MS}\r\n\r\n".encode())
                for past in backlog:
                    if _visible(caller, past):
                        await stream.send(json.dumps(past.data), id=past.id, event=past.name)
                while stream.is_connected():
                    event = await subscription.next(HEARTBEAT)
                    if subscription.closed:
                        break
                    if event is None:
                        refreshed = await lookup(request, caller.token)
                        if refreshed is None:
                            break
                        caller = refreshed  # queues or role may have changed
                        continue
                    if event.row in replayed:
                        continue  # already sent from the backlog
                    if _visible(caller, event):
                        await stream.send(json.dumps(event.data), id=event.id, event=event.name)
            except (ConnectionResetError, TimeoutError) as err:  # nothing more to send
                log.debug(
                    "live events of agent %s ended: the client left or stalled (%s)",
                    caller.agent.id,
                    type(err).__name__,
                )
        return stream
    finally:
        hub.unsubscribe(subscription)
