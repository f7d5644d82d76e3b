"""Who is calling: the session cookie, its CSRF token, and the roles.

Nothing under ``/api/`` but the login and the OpenAPI document answers
without a session that passed password and TOTP. The cookie holds a random
token (the store keeps only a keyed hash of it); it is HttpOnly and
SameSite=Strict, and Secure behind https. Every state-changing call must also
send ``X-CSRF-Token``: an HMAC of the session token, so it needs no storage,
changes with every session, and a page on another site can neither read nor
send it.
"""

from __future__ import annotations

import contextvars
import hashlib
import hmac
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from aiohttp import web

from bridge.store import Agent, ConsoleSession, Tx
from bridge.web.api.common import bridge_of, fail

COOKIE = "carebridge_session"
COOKIE_PATH = "/api"
CSRF_HEADER = "X-CSRF-Token"
_SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
_MAX_TOKEN = 128

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
#: The caller of the request being handled (set by the middleware for the handler's task).
_PRINCIPAL: contextvars.ContextVar[Principal | None] = contextvars.ContextVar("carebridge_principal", default=None)
#: Handlers that answer without a session (login, the OpenAPI document).
_PUBLIC: set[Handler] = set()


@dataclass(frozen=True, slots=True)
class Principal:
    """The caller: their session, the agent (as stored now) and the session token (for CSRF)."""

    session: ConsoleSession
    agent: Agent
    token: str

    @property
    def admin(self) -> bool:
        """Whether the agent is an admin."""
        return self.agent.role == "admin"

    @property
    def csrf_token(self) -> str:
        """The token state-changing calls of this session must send."""
        return csrf_for(self.token)


def public(handler: Handler) -> Handler:
    """Mark a handler that answers without a session."""
    _PUBLIC.add(handler)
    return handler


def new_token() -> str:
    """A new session token: 256 bits from the OS CSPRNG."""
    return secrets.token_urlsafe(32)


def csrf_for(token: str) -> str:
    """The CSRF token of the session whose cookie token is ``token``."""
    return hmac.new(token.encode(), b"carebridge-csrf", hashlib.sha256).hexdigest()


def secure_cookies(request: web.Request) -> bool:
    """Whether cookies get the Secure flag: ``public_url`` is https, or the bridge serves TLS itself."""
    server = bridge_of(request).config.server
    return server.public_url.lower().startswith("https://") or server.tls_cert is not None


def set_session_cookie(request: web.Request, response: web.StreamResponse, token: str, ttl: float) -> None:
    """Give the browser the session cookie."""
    response.set_cookie(
        COOKIE, token, max_age=max(1, int(ttl)), path=COOKIE_PATH, httponly=True, samesite="Strict",
        secure=secure_cookies(request),
    )  # fmt: skip


def clear_session_cookie(request: web.Request, response: web.StreamResponse) -> None:
    """Tell the browser to forget the session cookie."""
    response.del_cookie(COOKIE, path=COOKIE_PATH, secure=secure_cookies(request), httponly=True, samesite="Strict")


def principal(request: web.Request) -> Principal:
    """The caller of a handler behind the session middleware."""
    found = _PRINCIPAL.get()
    if found is None:  # a handler not behind the middleware: a wiring error
        raise RuntimeError("no session on this request")
    return found


def require_admin(request: web.Request) -> Principal:
    """The caller, who must be an admin (403 otherwise)."""
    caller = principal(request)
    if not caller.admin:
        fail(403, "forbidden", "only an admin may do this")
    return caller


def _find(tx: Tx, token: str) -> tuple[ConsoleSession, Agent] | None:
    session = tx.sessions.find(token, tx.now())
    if session is None:
        return None
    agent = tx.agents.get(session.agent_id)
    if agent is None or agent.disabled:
        return None
    return session, agent


async def lookup(request: web.Request, token: str) -> Principal | None:
    """The live session of ``token`` and its enabled agent, or None."""
    found = await bridge_of(request).store.read(lambda tx: _find(tx, token))
    return None if found is None else Principal(found[0], found[1], token)


@web.middleware
async def session_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Require a live session (401) and, for state-changing calls, its CSRF token (403)."""
    if handler in _PUBLIC:
        return await handler(request)
    token = request.cookies.get(COOKIE, "")
    found = await lookup(request, token) if 0 < len(token) <= _MAX_TOKEN else None
    if found is None:
        fail(401, "unauthorized", "log in first: POST /api/login with username, password and totp")
    if request.method not in _SAFE_METHODS:
        sent = request.headers.get(CSRF_HEADER, "")
        if not hmac.compare_digest(sent.encode("utf-8", "surrogateescape"), found.csrf_token.encode()):
            fail(403, "csrf_failed", f"missing or wrong {CSRF_HEADER} header (the csrf_token of your login)")
    reset = _PRINCIPAL.set(found)
    try:
        return await handler(request)
    finally:
        _PRINCIPAL.reset(reset)
