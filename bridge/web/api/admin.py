"""Admin only: agents (list, add, change, disable) and the audit log.

The same rules as ``carebridge agent``: names and queues are checked by
``bridge.agents``, addresses by their own channel (``Addresses``), a new
agent's password by the password policy. Disabling ends the agent's shift and
console sessions at once and hands their conversations to colleagues or the
queue. Every change is audited, and so is reading the audit log.
"""

from __future__ import annotations

from typing import Any

import segno
from aiohttp import web

from bridge import agents
from bridge.agents import ROLES, AgentError, passwords, totp
from bridge.app.events import iso
from bridge.models import Address
from bridge.relay import actions
from bridge.store import Agent, AuditEntry, Tx
from bridge.web.api.auth import require_admin
from bridge.web.api.common import (
    bridge_of,
    fail,
    id_before_param,
    json_body,
    limit_param,
    relay_context,
    text_field,
)
from bridge.web.api.session import hash_password

MAX_CAPACITY = 1000


def agent_json(tx: Tx, agent: Agent, now: float) -> dict[str, Any]:
    """An agent as admins see it (the address masked, as ``agent list`` shows it)."""
    return {
        "name": agent.name,
        "role": agent.role,
        "channel": agent.channel,
        "address": agents.mask_address(agent.preferred),
        "queues": list(agent.queues),
        "capacity": agent.capacity,
        "disabled": agent.disabled,
        "online": agents.is_online(tx, agent.id, now),
    }


def _address(request: web.Request, text: str) -> Address:
    try:
        return relay_context(request).addresses.parse(text)
    except AgentError as err:
        fail(400, "bad_request", f"channel: {err}")


def _queues(body: dict[str, Any]) -> tuple[str, ...] | None:
    value = body.get("queues")
    if value is None:
        return None
    if not isinstance(value, list) or not all(isinstance(q, str) for q in value) or len(value) > 100:
        fail(400, "bad_request", "queues: a list of queue names")
    try:
        return agents.validate_queues(value)
    except AgentError as err:
        fail(400, "bad_request", f"queues: {err}")


def _capacity(body: dict[str, Any]) -> int | None:
    value = body.get("capacity")
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_CAPACITY:
        fail(400, "bad_request", f"capacity: a whole number from 1 to {MAX_CAPACITY}")
    return value


async def get_agents(request: web.Request) -> web.StreamResponse:
    """``GET /api/agents``: every agent, by name."""
    require_admin(request)

    def listing(tx: Tx) -> dict[str, Any]:
        now = tx.now()
        return {"agents": [agent_json(tx, agent, now) for agent in tx.agents.all()]}

    return web.json_response(await bridge_of(request).store.read(listing))


async def post_agent(request: web.Request) -> web.StreamResponse:
    """``POST /api/agents``: enrol an agent; the answer carries the otpauth URI (and its QR code) once."""
    caller = require_admin(request)
    body = await json_body(request)
    name = text_field(body, "name", max_length=64)
    try:
        agents.validate_name(name)
    except AgentError as err:
        fail(400, "bad_request", f"name: {err}")
    address = _address(request, text_field(body, "channel", max_length=400))
    role = text_field(body, "role", required=False, max_length=16) or "agent"
    if role not in ROLES:
        fail(400, "bad_request", f"role: one of {', '.join(ROLES)}")
    email = text_field(body, "email", required=False, max_length=254) or None
    if email is not None:
        try:
            email = agents.normalize_email(email)
        except AgentError as err:
            fail(400, "bad_request", f"email: {err}")
    queues = _queues(body) or ()
    capacity = _capacity(body) or 5
    password = text_field(body, "password", max_length=passwords.MAX_LENGTH)
    try:
        passwords.check_policy(password)
    except passwords.PasswordPolicyError as err:
        fail(400, "bad_request", f"password: {err}")
    bridge = bridge_of(request)
    password_hash = await hash_password(request, password)
    secret = totp.new_secret()

    def enrol(tx: Tx) -> dict[str, Any]:
        if tx.agents.name_taken(name):
            fail(409, "conflict", f"an agent named {name!r} already exists")
        owner = agents.address_owner(tx, address)
        if owner is not None:
            fail(409, "conflict", f"that {address.channel} address already belongs to another agent")
        agent = agents.create_agent(
            tx, name=name, address=address, role=role, email=email, queues=queues, capacity=capacity,
            totp_secret=secret, password_hash=password_hash,
        )  # fmt: skip
        detail = {"name": agent.name, "role": agent.role, "channel": agent.channel, "queues": list(agent.queues),
                  "via": "api"}  # fmt: skip
        tx.audit.append(actions.actor(caller.agent), "agent.add", f"agent:{agent.id}", detail)
        return agent_json(tx, agent, tx.now())

    try:
        created = await bridge.store.write(enrol)
    except AgentError as err:
        fail(400, "bad_request", str(err))
    uri = totp.provisioning_uri(secret, account=name, issuer=bridge.config.security.totp_issuer)
    svg = segno.make(uri, error="m").svg_inline(scale=4)
    return web.json_response({"agent": created, "otpauth_uri": uri, "totp_qr_svg": svg}, status=201)


async def patch_agent(request: web.Request) -> web.StreamResponse:
    """``PATCH /api/agents/{name}``: change channel, queues or capacity, or disable."""
    caller = require_admin(request)
    name = request.match_info["name"]
    body = await json_body(request)
    channel_text = text_field(body, "channel", required=False, max_length=400)
    address = _address(request, channel_text) if channel_text else None
    queues = _queues(body)
    capacity = _capacity(body)
    disabled = body.get("disabled")
    if disabled is not None and not isinstance(disabled, bool):
        fail(400, "bad_request", "disabled: true or false")
    if disabled is False:
        fail(400, "bad_request", "disabled: an agent cannot be enabled again; add a new one")
    bridge = bridge_of(request)
    rctx = relay_context(request)
    who = actions.actor(caller.agent)

    def change(tx: Tx) -> tuple[dict[str, Any], int | None]:
        agent = tx.agents.get_by_name(name)
        if agent is None:
            fail(404, "not_found", f"no agent named {name!r}")
        if disabled and agent.id == caller.agent.id:
            fail(409, "conflict", "you cannot disable yourself")
        subject = f"agent:{agent.id}"
        with tx.savepoint():
            if address is not None:
                owner = agents.address_owner(tx, address)
                if owner is not None and owner.id != agent.id:
                    fail(409, "conflict", f"that {address.channel} address already belongs to another agent")
                updated = agents.set_channel(tx, agent.id, address)
                tx.audit.append(who, "agent.set_channel", subject,
                                {"from": agent.channel, "to": updated.channel, "via": "api"})  # fmt: skip
            if queues is not None:
                tx.agents.set_queues(agent.id, queues)
                tx.audit.append(who, "agent.set_queues", subject, {"queues": list(queues), "via": "api"})
            if capacity is not None:
                tx.agents.set_capacity(agent.id, capacity)
                tx.audit.append(who, "agent.set_capacity", subject, {"capacity": capacity, "via": "api"})
            ended: int | None = None
            if disabled and not agent.disabled:
                requeued = actions.disable_agent(tx, rctx, agent)
                tx.audit.append(who, "agent.disable", subject, {"requeued": requeued, "via": "api"})
                ended = agent.id
        current = tx.agents.get(agent.id) or agent
        return agent_json(tx, current, tx.now()), ended

    try:
        shown, ended = await bridge.relay.write(change)
    except AgentError as err:
        fail(400, "bad_request", str(err))
    if ended is not None:
        bridge.events.close_agent(ended)
    bridge.events.poke()
    return web.json_response({"agent": shown})


def _entry_json(entry: AuditEntry) -> dict[str, Any]:
    return {
        "id": entry.id,
        "at": iso(entry.at),
        "actor": entry.actor,
        "action": entry.action,
        "subject": entry.subject,
        "detail": entry.detail,
    }


async def get_audit(request: web.Request) -> web.StreamResponse:
    """``GET /api/audit`` (``?subject=``, ``?before=``, ``?limit=``): the audit log, newest first."""
    caller = require_admin(request)
    before = id_before_param(request)
    limit = limit_param(request)
    subject = request.query.get("subject")
    if subject is not None and not 0 < len(subject) <= 128:
        fail(400, "bad_request", "subject: 1 to 128 characters")

    def page(tx: Tx) -> dict[str, Any]:
        tx.audit.append(actions.actor(caller.agent), "audit.view", None, {"via": "api", "subject": subject})
        rows = tx.audit.page(before_id=before, limit=limit + 1, subject=subject)
        shown = rows[:limit]
        return {
            "entries": [_entry_json(entry) for entry in shown],
            "next": str(shown[-1].id) if len(rows) > limit else None,
        }

    return web.json_response(await bridge_of(request).store.write(page))


async def get_audit_verify(request: web.Request) -> web.StreamResponse:
    """``GET /api/audit/verify``: walk the audit log's hash chain, as ``carebridge audit verify`` does."""
    require_admin(request)
    result = await bridge_of(request).store.read(lambda tx: tx.audit.verify())
    return web.json_response({"ok": result.ok, "count": result.count, "bad_id": result.bad_id, "reason": result.reason})
