"""The console's routes: its pages (Jinja2 templates) and its files, with their security headers."""

from __future__ import annotations

import shlex
import sys
from collections.abc import Awaitable, Callable, Mapping
from importlib import resources
from pathlib import Path
from typing import Any

import aiohttp_jinja2
import jinja2
from aiohttp import web

from bridge.app.bridge import Bridge
from bridge.config import Config
from bridge.http_errors import http_error

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

#: First path segments the console serves (channels' pages may not take them).
CONSOLE_PATHS = frozenset({"", "login", "logout", "conversations", "admin", "static", "console"})
#: Every page and file: this origin only, no inline script or style, never framed.
POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self';"
    " object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)
HEADERS = {
    "Content-Security-Policy": POLICY,
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
}
_TYPES = {".js": "text/javascript; charset=utf-8", ".css": "text/css; charset=utf-8", ".svg": "image/svg+xml"}
TEMPLATES = web.AppKey("console_templates", jinja2.Environment)
CONSOLE_BRIDGE = web.AppKey("console_bridge", Bridge)
STATIC_FILES = web.AppKey("console_static", dict)


def add_console(app: web.Application, bridge: Bridge) -> None:
    """Serve the console's pages and files on ``app`` (the main application)."""
    aiohttp_jinja2.setup(
        app,
        loader=jinja2.PackageLoader("bridge.web.console", "templates"),
        app_key=TEMPLATES,
        autoescape=True,
        undefined=jinja2.StrictUndefined,
    )
    app[CONSOLE_BRIDGE] = bridge
    app[STATIC_FILES] = _static_files()
    pages: dict[str, Handler] = {
        "/": _page("inbox.html", "Inbox"),
        "/login": login,
        "/conversations/{id:[0-9]{1,18}}": conversation,
        "/admin/agents": _page("agents.html", "Agents"),
        "/admin/health": _page("health.html", "Channel health"),
        "/admin/audit": _page("audit.html", "Audit log"),
    }
    for path, handler in pages.items():
        app.router.add_get(path, handler)
    app.router.add_get("/static/console/{name}", static)


def _static_files() -> dict[str, bytes]:
    folder = resources.files("bridge.web.console").joinpath("static")
    return {item.name: item.read_bytes() for item in folder.iterdir() if item.name[item.name.rfind(".") :] in _TYPES}


def channels_info(bridge: Bridge) -> dict[str, dict[str, Any]]:
    """Each channel's display label and reply window (seconds or None), for the pages' scripts."""
    info: dict[str, dict[str, Any]] = {"console": {"label": "Console", "reply_window": None}}
    for name, cls in sorted(bridge.registry.channels.items()):
        info[name] = {"label": cls.display_label(), "reply_window": cls.reply_window}
    return info


def _render(request: web.Request, template: str, title: str, **extra: Any) -> web.Response:
    bridge = request.app[CONSOLE_BRIDGE]
    context: Mapping[str, Any] = {"title": title, "page": template.removesuffix(".html"),
                                  "channels": channels_info(bridge), **extra}  # fmt: skip
    response = aiohttp_jinja2.render_template(template, request, context, app_key=TEMPLATES)
    response.headers.update(HEADERS)
    response.headers["Cache-Control"] = "no-store"
    return response


def _page(template: str, title: str) -> Handler:
    async def handler(request: web.Request) -> web.StreamResponse:
        return _render(request, template, title)

    handler.__doc__ = f"The console's {title.lower()} page."
    return handler


async def conversation(request: web.Request) -> web.StreamResponse:
    """One conversation: transcript, reply, note, transfer, close, secure."""
    conversation_id = int(request.match_info["id"])
    return _render(request, "conversation.html", f"Conversation #{conversation_id}", conversation_id=conversation_id)


async def login(request: web.Request) -> web.StreamResponse:
    """The login page; with no agent in the store it names the command that creates the first admin."""
    bridge = request.app[CONSOLE_BRIDGE]
    first_run = not await bridge.store.read(lambda tx: tx.agents.names())
    command = first_admin_command(bridge.config) if first_run else ""
    return _render(request, "login.html", "Log in", first_run=first_run, command=command)


async def static(request: web.Request) -> web.StreamResponse:
    """The console's style and scripts."""
    name = request.match_info["name"]
    body = request.app[STATIC_FILES].get(name)
    if body is None:
        raise http_error(404, "not_found", "no such file")
    response = web.Response(body=body, headers=HEADERS)
    response.headers["Content-Type"] = _TYPES[name[name.rfind(".") :]]
    response.headers["Cache-Control"] = "no-cache"
    return response


def first_admin_command(config: Config) -> str:
    """The exact command that creates the first admin, as the operator would type it here.

    The ``carebridge`` beside the running interpreter (``.venv/bin/carebridge``
    after ``make run``), relative to the working directory when it lies
    under it; ``-c FILE`` unless the file is the ``./bridge.toml`` the
    command finds by itself (or the daemon runs on the embedded defaults).
    """
    script = Path(sys.executable).parent / "carebridge"
    executable = "carebridge"
    if script.exists():
        try:
            executable = str(script.relative_to(Path.cwd()))
        except ValueError:
            executable = str(script)
    parts = [executable, "agent", "add", "admin", "--channel", "console", "--role", "admin"]
    if config.path is not None and config.path != (Path.cwd() / "bridge.toml").resolve():
        parts += ["-c", str(config.path)]
    return shlex.join(parts)
