"""``POST /api/login``, ``POST /api/logout`` and ``GET /api/me``.

A login needs the username, the console password and a TOTP code, every
time. Every failure answers the same 401 ``login_failed`` (an unknown user
costs the same scrypt check against a dummy hash), a lock of the account, the
name or the client address answers 429 with ``Retry-After``; all of it is
audited and counted in ``carebridge_login_failures_total``. The rules are
``bridge.agents.login``'s, shared with chat ``/login``, so a code used in one
is refused in the other. An agent whose channel is the console starts their
shift with the session (they receive conversations only there); other agents
keep their chat shift apart.
"""

from __future__ import annotations

import asyncio
import math
from typing import Any

from aiohttp import web

from bridge.agents import login, passwords
from bridge.app.events import iso
from bridge.http_errors import json_error
from bridge.relay import actions
from bridge.store import Agent, ConsoleSession, Tx
from bridge.web.api.auth import (
    clear_session_cookie,
    csrf_for,
    new_token,
    principal,
    public,
    set_session_cookie,
)
from bridge.web.api.common import bridge_of, json_body, relay_context, text_field
from bridge.web.edge import client_key

CONSOLE = "console"
LOGIN_FAILED = "wrong username, password or code"
#: scrypt costs ~32 MiB and tens of milliseconds: at most this many at once.
PASSWORD_SLOTS = web.AppKey("password_slots", asyncio.Semaphore)


def me_json(agent: Agent, session: ConsoleSession, token: str) -> dict[str, Any]:
    """Who is logged in (DESIGN §12 ``/api/me``, plus what the console needs)."""
    return {
        "name": agent.name,
        "role": agent.role,
        "channel": agent.channel,
        "queues": list(agent.queues),
        "capacity": agent.capacity,
        "csrf_token": csrf_for(token),
        "expires_at": iso(session.expires_at),
    }


async def check_password(request: web.Request, password: str, stored: str) -> bool:
    """Check a password off the event loop, a few at a time."""
    async with request.app[PASSWORD_SLOTS]:
        return await asyncio.to_thread(passwords.check_password, password, stored)


async def hash_password(request: web.Request, password: str) -> str:
    """Hash a new console password off the event loop, a few at a time."""
    async with request.app[PASSWORD_SLOTS]:
        return await asyncio.to_thread(passwords.hash_password, password)


def _refused(request: web.Request, result: login.LoginResult) -> web.Response:
    bridge_of(request).metrics.login_failures.inc()
    if result.outcome is login.LoginOutcome.LOCKED:
        wait = max(1, math.ceil(result.retry_after))
        return json_error(
            429, "login_locked", f"too many failed logins; try again in {wait} seconds",
            headers={"Retry-After": str(wait)},
        )  # fmt: skip
    return json_error(401, "login_failed", LOGIN_FAILED)


@public
async def post_login(request: web.Request) -> web.StreamResponse:
    """``POST /api/login`` ``{username, password, totp}`` → the session cookie and ``csrf_token``."""
    body = await json_body(request)
    username = text_field(body, "username", max_length=1024)
    password = text_field(body, "password", max_length=4096)
    code = text_field(body, "totp", max_length=64)
    bridge = bridge_of(request)
    rctx = relay_context(request)
    security = bridge.config.security
    policy = login.LoginPolicy.from_security(security)
    address = client_key(request.remote)
    actor = "api:login"
    detail = {"via": "api", "address": address}
    candidate = await bridge.store.read(lambda tx: login.console_candidate(tx, username, address, tx.now(), policy))
    if candidate.retry_after > 0:
        agent = candidate.agent
        result = await bridge.store.write(
            lambda tx: login.refuse_locked(tx, agent, candidate.retry_after, actor, detail)
        )
        return _refused(request, result)
    password_ok = await check_password(request, password, candidate.password_hash)
    token = new_token()
    ttl = security.session_ttl

    def decide(tx: Tx) -> tuple[login.LoginResult, Agent | None, ConsoleSession | None]:
        now = tx.now()
        result, agent = login.finish_console_login(
            tx, username, address, password_ok, code, now, policy, actor=actor, detail=detail
        )
        if agent is None:
            return result, None, None
        session = tx.sessions.create(agent.id, token, ttl)
        if agent.channel == CONSOLE:
            actions.start_shift(tx, rctx, agent, now, ttl)
        return result, agent, session

    result, agent, session = await bridge.relay.write(decide)
    if agent is None or session is None:
        return _refused(request, result)
    bridge.events.poke()
    response = web.json_response(me_json(agent, session, token))
    set_session_cookie(request, response, token, ttl)
    return response


async def post_logout(request: web.Request) -> web.StreamResponse:
    """``POST /api/logout``: end this session (a console agent's last one also ends their shift)."""
    caller = principal(request)
    bridge = bridge_of(request)
    rctx = relay_context(request)

    def end(tx: Tx) -> int:
        now = tx.now()
        tx.sessions.end(caller.session.id)
        requeued = 0
        if caller.agent.channel == CONSOLE and tx.sessions.live_count(caller.agent.id, now) == 0:
            requeued = actions.end_shift(tx, rctx, caller.agent, now)
        detail = {"via": "api", "requeued": requeued}
        tx.audit.append(actions.actor(caller.agent), "agent.logout", login.subject(caller.agent.id), detail)
        return requeued

    await bridge.relay.write(end)
    bridge.events.close_session(caller.session.id)
    response = web.json_response({"ok": True})
    clear_session_cookie(request, response)
    return response


async def get_me(request: web.Request) -> web.StreamResponse:
    """``GET /api/me``: the logged-in agent."""
    caller = principal(request)
    return web.json_response(me_json(caller.agent, caller.session, caller.token))
