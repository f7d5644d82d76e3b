"""What every API handler shares: the bridge key, JSON bodies, query values, errors, shapes.

Errors are DESIGN §6's ``{"error": {"code", "message"}}``: a handler raises
``fail(status, code, message)`` and the app's error middleware passes the JSON
answer through. Bodies were already read by the edge guard, so ``json_body``
only parses.
"""

from __future__ import annotations

import json
import re
from typing import Any, NoReturn

from aiohttp import web

from bridge.app.bridge import Bridge
from bridge.app.events import iso
from bridge.http_errors import http_error
from bridge.relay import RelayContext, reads
from bridge.store import Conversation, Message, Tx

API_BRIDGE = web.AppKey("api_bridge", Bridge)

DEFAULT_LIMIT = 50
MAX_LIMIT = 200
#: Longest reply or note accepted (channels split long texts; this bounds abuse).
MAX_TEXT = 20_000
_CONVERSATION_CURSOR = re.compile(r"^(\d{1,12}(?:\.\d{1,17})?)_(\d{1,18})$")
_ID = re.compile(r"^\d{1,18}$")


def fail(status: int, code: str, message: str) -> NoReturn:
    """Stop the handler with a JSON error answer."""
    raise http_error(status, code, message)


def bridge_of(request: web.Request) -> Bridge:
    """The bridge the API serves."""
    return request.app[API_BRIDGE]


def relay_context(request: web.Request) -> RelayContext:
    """The running relay's context (503 while the bridge starts or stops)."""
    rctx = bridge_of(request).relay.rctx
    if rctx is None:
        fail(503, "unavailable", "the bridge is not running")
    return rctx


async def json_body(request: web.Request) -> dict[str, Any]:
    """The request's JSON object (``{}`` for an empty body).

    :raises HTTPBadRequest: not JSON, or not an object.
    """
    raw = await request.read()
    if not raw.strip():
        return {}
    try:
        data = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        fail(400, "bad_request", "the body is not valid JSON")
    if not isinstance(data, dict):
        fail(400, "bad_request", "the body must be a JSON object")
    return data


def text_field(body: dict[str, Any], name: str, *, required: bool = True, max_length: int = MAX_TEXT) -> str:
    """A string field of a JSON body (``""`` when optional and absent)."""
    value = body.get(name)
    if value is None:
        if required:
            fail(400, "bad_request", f"{name}: required")
        return ""
    if not isinstance(value, str):
        fail(400, "bad_request", f"{name}: expected a string")
    if len(value) > max_length:
        fail(400, "bad_request", f"{name}: at most {max_length} characters")
    return value


def limit_param(request: web.Request) -> int:
    """``?limit=`` (1 to 200, default 50)."""
    text = request.query.get("limit")
    if text is None:
        return DEFAULT_LIMIT
    if not _ID.match(text) or not 1 <= int(text) <= MAX_LIMIT:
        fail(400, "bad_request", f"limit: a whole number from 1 to {MAX_LIMIT}")
    return int(text)


def id_before_param(request: web.Request) -> int | None:
    """``?before=`` as an id cursor (messages, audit entries), or None."""
    text = request.query.get("before")
    if text is None:
        return None
    if not _ID.match(text):
        fail(400, "bad_request", "before: not a cursor this API gave out")
    return int(text)


def conversation_cursor(conv: Conversation) -> str:
    """The ``next`` cursor after ``conv`` in a listing (its activity time, exactly, and id)."""
    return f"{float(conv.updated_at)!r}_{conv.id}"


def conversation_before_param(request: web.Request) -> tuple[float, int] | None:
    """``?before=`` of a conversation listing, or None."""
    text = request.query.get("before")
    if text is None:
        return None
    match = _CONVERSATION_CURSOR.match(text)
    if match is None:
        fail(400, "bad_request", "before: not a cursor this API gave out")
    return float(match.group(1)), int(match.group(2))


def conversation_json(tx: Tx, conv: Conversation, names: dict[int, str]) -> dict[str, Any]:
    """The §11 shape of a conversation (``names``: agent usernames by id).

    Beyond §11: ``unread``, the customer's messages since the last reply or note
    (what waits for an answer), and ``last_inbound_at``, when the customer last
    wrote on this channel (the console counts the platform's reply window down from it).
    """
    last_inbound = tx.contacts.last_inbound_at(conv.contact_id, conv.channel)
    return {
        "id": conv.id,
        "status": conv.status,
        "channel": conv.channel,
        "contact_name": reads.contact_name(tx, conv.contact_id),
        "agent": names.get(conv.agent_id) if conv.agent_id is not None else None,
        "queue": conv.queue,
        "created_at": iso(conv.created_at),
        "updated_at": iso(conv.updated_at),
        "unread": tx.messages.unanswered(conv.id),
        "last_inbound_at": None if last_inbound is None else iso(last_inbound),
    }


def message_json(message: Message, names: dict[int, str], text: str | None) -> dict[str, Any]:
    """The §12 shape of a message, with ``text`` as shown (masked or revealed)."""
    return {
        "id": message.id,
        "direction": message.direction,
        "channel": message.channel,
        "text": text,
        "created_at": iso(message.created_at),
        "sensitive": message.sensitive,
        "status": message.status,
        "agent": names.get(message.agent_id) if message.agent_id is not None else None,
    }
