"""The agent REST API under ``/api/`` (DESIGN §6, §11 Login API, §12): what the console and scripts use.

``make_api(bridge)`` builds the sub-application the main app mounts at
``/api``. Its one middleware (``auth.session_middleware``) lets nothing but
the login and the OpenAPI document through without a session that passed
password and TOTP; the main app's middlewares (JSON errors, metrics, edge
limits) apply here too. Modules: ``auth`` (cookie, CSRF, roles), ``session``
(login, logout, me), ``conversations``, ``admin`` (agents, audit),
``events`` (SSE), ``openapi`` (the document, kept true by a test).
"""

from __future__ import annotations

import asyncio

from aiohttp import web

from bridge.app.bridge import Bridge
from bridge.web.api import admin, conversations, events, openapi, session
from bridge.web.api.auth import Handler, session_middleware
from bridge.web.api.common import API_BRIDGE

PREFIX = "/api"
#: Conversation ids are positive 64-bit integers: longer digit runs are no route (404), never an overflow.
_ID = r"{id:[0-9]{1,18}}"

ROUTES: tuple[tuple[str, str, Handler], ...] = (
    ("POST", "/login", session.post_login),
    ("POST", "/logout", session.post_logout),
    ("GET", "/me", session.get_me),
    ("GET", "/conversations", conversations.get_conversations),
    ("GET", f"/conversations/{_ID}", conversations.get_conversation),
    ("GET", f"/conversations/{_ID}/messages", conversations.get_messages),
    ("POST", f"/conversations/{_ID}/messages", conversations.post_message),
    ("POST", f"/conversations/{_ID}/notes", conversations.post_note),
    ("POST", f"/conversations/{_ID}/transfer", conversations.post_transfer),
    ("POST", f"/conversations/{_ID}/close", conversations.post_close),
    ("POST", f"/conversations/{_ID}/take", conversations.post_take),
    ("POST", f"/conversations/{_ID}/secure", conversations.post_secure),
    ("GET", "/events", events.get_events),
    ("GET", "/agents", admin.get_agents),
    ("POST", "/agents", admin.post_agent),
    ("PATCH", "/agents/{name}", admin.patch_agent),
    ("GET", "/audit", admin.get_audit),
    ("GET", "/audit/verify", admin.get_audit_verify),
    ("GET", "/openapi.json", openapi.get_openapi),
)


def make_api(bridge: Bridge) -> web.Application:
    """The ``/api`` sub-application for ``bridge``."""
    app = web.Application(middlewares=[session_middleware])
    app[API_BRIDGE] = bridge
    app[session.PASSWORD_SLOTS] = asyncio.Semaphore(2)
    for method, path, handler in ROUTES:
        if method == "GET":
            app.router.add_get(path, handler, allow_head=False)
        else:
            app.router.add_route(method, path, handler)
    return app
