"""Conversations over the API: list, read the transcript, and act as in chat.

An agent sees the conversations they hold (or held last, once closed) and
those waiting in their queues; an admin sees all. Acting (reply, note, transfer, close, take,
secure) follows ``bridge.relay.actions``, the same rules as the chat
commands, so an admin acts only on their own conversations like anyone else.
Reading a transcript writes a ``conversation.view`` audit entry; sensitive
values are masked unless ``?reveal=1``, which is audited as
``conversation.reveal``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from aiohttp import web

from bridge.relay import actions
from bridge.relay import secure as secure_flow
from bridge.store import Agent, Conversation, Message, Tx
from bridge.web.api.auth import Principal, principal
from bridge.web.api.common import (
    MAX_TEXT,
    bridge_of,
    conversation_before_param,
    conversation_cursor,
    conversation_json,
    fail,
    id_before_param,
    json_body,
    limit_param,
    message_json,
    relay_context,
    text_field,
)

T = TypeVar("T")
API_CHANNEL = "console"
STATUSES = ("queued", "assigned", "closed")
_STATUS_OF: dict[actions.Refusal, int] = {
    actions.Refusal.NOT_FOUND: 404,
    actions.Refusal.NOT_YOURS: 403,
    actions.Refusal.NOT_YOUR_QUEUE: 403,
    actions.Refusal.EMPTY: 400,
    actions.Refusal.UNKNOWN_TARGET: 400,
    actions.Refusal.SENSITIVE: 422,
}


def may_read(caller: Principal, conv: Conversation) -> bool:
    """Whether the caller may see a conversation: an admin, its agent, or a server of the queue it waits in."""
    agent = caller.agent
    return caller.admin or conv.agent_id == agent.id or (conv.status == "queued" and conv.queue in agent.queues)


def conversation_id(request: web.Request) -> int:
    """The ``{id}`` of the path (the route admits digits only)."""
    return int(request.match_info["id"])


async def get_conversations(request: web.Request) -> web.StreamResponse:
    """``GET /api/conversations`` (``?status=``, ``?queue=``, ``?before=``, ``?limit=``), most recent first."""
    caller = principal(request)
    status = request.query.get("status")
    if status is not None and status not in STATUSES:
        fail(400, "bad_request", f"status: one of {', '.join(STATUSES)}")
    queue = request.query.get("queue")
    if queue is not None and not 0 < len(queue) <= 64:
        fail(400, "bad_request", "queue: 1 to 64 characters")
    before = conversation_before_param(request)
    limit = limit_param(request)
    visible_to = None if caller.admin else (caller.agent.id, caller.agent.queues)

    def page(tx: Tx) -> dict[str, Any]:
        rows = tx.conversations.page(visible_to=visible_to, status=status, queue=queue, before=before, limit=limit + 1)
        names = tx.agents.names()
        shown = rows[:limit]
        return {
            "conversations": [conversation_json(tx, conv, names) for conv in shown],
            "next": conversation_cursor(shown[-1]) if len(rows) > limit else None,
        }

    return web.json_response(await bridge_of(request).store.read(page))


async def get_conversation(request: web.Request) -> web.StreamResponse:
    """``GET /api/conversations/{id}``: one conversation in the listing's shape (the console's page head)."""
    caller = principal(request)
    conv_id = conversation_id(request)

    def read(tx: Tx) -> tuple[Conversation | None, dict[str, Any] | None]:
        conv = tx.conversations.get(conv_id)
        if conv is None or not may_read(caller, conv):
            return conv, None
        return conv, conversation_json(tx, conv, tx.agents.names())

    conv, shown = await bridge_of(request).store.read(read)
    if conv is None:
        fail(404, "not_found", f"no conversation {conv_id}")
    if shown is None:
        fail(403, "forbidden", f"conversation {conv_id} is not yours to read")
    return web.json_response({"conversation": shown})


def _reveal(request: web.Request) -> bool:
    value = request.query.get("reveal", "0")
    if value not in ("0", "1"):
        fail(400, "bad_request", "reveal: 0 or 1")
    return value == "1"


async def get_messages(request: web.Request) -> web.StreamResponse:
    """``GET /api/conversations/{id}/messages``: a page of the transcript (oldest first), audited."""
    caller = principal(request)
    bridge = bridge_of(request)
    conv_id = conversation_id(request)
    before = id_before_param(request)
    limit = limit_param(request)
    reveal = _reveal(request)

    def read(tx: Tx) -> tuple[Conversation | None, list[Message], bool, dict[int, str]]:
        conv = tx.conversations.get(conv_id)
        if conv is None or not may_read(caller, conv):
            return conv, [], False, {}
        rows = tx.messages.recent(conv_id, limit + 1, before_id=before, strict=False)
        return conv, rows[-limit:], len(rows) > limit, tx.agents.names()

    conv, messages, more, names = await bridge.store.read(read)
    if conv is None:
        fail(404, "not_found", f"no conversation {conv_id}")
    if not may_read(caller, conv):
        fail(403, "forbidden", f"conversation {conv_id} is not yours to read")
    detail = {"via": "api", "messages": len(messages), "before": before}

    def audit(tx: Tx) -> None:
        who = actions.actor(caller.agent)
        tx.audit.append(who, "conversation.view", f"conversation:{conv_id}", detail)
        if reveal:
            tx.audit.append(who, "conversation.reveal", f"conversation:{conv_id}", detail)

    await bridge.store.write(audit)
    mask = bridge.masker
    shown = [message_json(m, names, m.text if reveal or m.text is None else mask(m.text)) for m in messages]
    return web.json_response({"messages": shown, "next": str(messages[0].id) if more and messages else None})


async def _act(request: web.Request, action: Callable[[Tx, Agent], T]) -> T:
    """Run a shared action for the caller in one write; its refusal becomes a JSON error."""
    caller = principal(request)
    bridge = bridge_of(request)

    def run(tx: Tx) -> T:
        with tx.savepoint():
            return action(tx, caller.agent)

    try:
        result = await bridge.relay.write(run)
    except actions.ActionRefused as refusal:
        fail(_STATUS_OF.get(refusal.refusal, 409), refusal.refusal.value, str(refusal))
    bridge.events.poke()
    return result


def _conversation_answer(tx: Tx, conv: Conversation) -> dict[str, Any]:
    return conversation_json(tx, conv, tx.agents.names())


async def post_message(request: web.Request) -> web.StreamResponse:
    """``POST /api/conversations/{id}/messages`` ``{text}``: reply to the customer, as from chat."""
    conv_id = conversation_id(request)
    text = text_field(await json_body(request), "text", max_length=MAX_TEXT)
    rctx = relay_context(request)

    def reply(tx: Tx, agent: Agent) -> dict[str, Any]:
        message_id = actions.reply(tx, rctx, agent, conv_id, text, via="api")
        message = tx.messages.get(message_id)
        if message is None:  # written in this very transaction
            raise RuntimeError(f"message {message_id} vanished")
        return {"message": message_json(message, tx.agents.names(), message.text)}

    return web.json_response(await _act(request, reply), status=201)


async def post_note(request: web.Request) -> web.StreamResponse:
    """``POST /api/conversations/{id}/notes`` ``{text}``: an internal note, never sent."""
    conv_id = conversation_id(request)
    text = text_field(await json_body(request), "text", max_length=MAX_TEXT)

    def note(tx: Tx, agent: Agent) -> dict[str, Any]:
        message_id = actions.note(tx, agent, conv_id, text, API_CHANNEL)
        conv = tx.conversations.get(conv_id)
        if conv is not None:
            tx.audit.append(actions.actor(agent), "conversation.note", f"conversation:{conv_id}",
                            {"via": "api", "message": message_id})  # fmt: skip
        message = tx.messages.get(message_id)
        if message is None:  # written in this very transaction
            raise RuntimeError(f"message {message_id} vanished")
        return {"message": message_json(message, tx.agents.names(), message.text)}

    return web.json_response(await _act(request, note), status=201)


async def post_transfer(request: web.Request) -> web.StreamResponse:
    """``POST /api/conversations/{id}/transfer`` ``{to, note}``: to a colleague or a queue."""
    conv_id = conversation_id(request)
    body = await json_body(request)
    target = text_field(body, "to", max_length=64)
    note_text = text_field(body, "note", required=False, max_length=MAX_TEXT)
    rctx = relay_context(request)

    def transfer(tx: Tx, agent: Agent) -> dict[str, Any]:
        done = actions.transfer(tx, rctx, agent, conv_id, target, note_text, tx.now(), channel=API_CHANNEL, via="api")
        return {
            "conversation": _conversation_answer(tx, done.conversation),
            "to": {"agent": done.agent.name if done.agent else None, "queue": done.queue},
        }

    return web.json_response(await _act(request, transfer))


async def post_close(request: web.Request) -> web.StreamResponse:
    """``POST /api/conversations/{id}/close`` ``{}``: close it; the customer gets the ``closed`` notice."""
    conv_id = conversation_id(request)
    await json_body(request)
    rctx = relay_context(request)

    def close(tx: Tx, agent: Agent) -> dict[str, Any]:
        done = actions.close(tx, rctx, agent, conv_id, tx.now(), via="api")
        return {"conversation": _conversation_answer(tx, done.conversation)}

    return web.json_response(await _act(request, close))


async def post_take(request: web.Request) -> web.StreamResponse:
    """``POST /api/conversations/{id}/take`` ``{}``: take a conversation waiting in one of your queues."""
    conv_id = conversation_id(request)
    await json_body(request)
    rctx = relay_context(request)

    def take(tx: Tx, agent: Agent) -> dict[str, Any]:
        conv = actions.take(tx, rctx, agent, conv_id, tx.now(), via="api")
        return {"conversation": _conversation_answer(tx, conv)}

    return web.json_response(await _act(request, take))


async def post_secure(request: web.Request) -> web.StreamResponse:
    """``POST /api/conversations/{id}/secure`` ``{text}``: deliver the text by email, never by chat."""
    conv_id = conversation_id(request)
    text = text_field(await json_body(request), "text", max_length=MAX_TEXT)
    rctx = relay_context(request)

    def secure(tx: Tx, agent: Agent) -> dict[str, Any]:
        conv = actions.own_conversation(tx, agent, conv_id)
        try:
            answer = secure_flow.start_secure(tx, rctx, conv, agent, text)
        except secure_flow.SecureRefused as refusal:
            kind = actions.Refusal.EMPTY if refusal.code == "empty" else actions.Refusal.REFUSED
            raise actions.ActionRefused(kind, str(refusal)) from refusal
        tx.audit.append(actions.actor(agent), "conversation.secure", f"conversation:{conv_id}", {"via": "api"})
        return {"result": str(answer)}

    return web.json_response(await _act(request, secure), status=202)
