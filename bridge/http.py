"""JSON error answers in the shape of DESIGN §6, shared by core and plugins."""

from __future__ import annotations

import json

from aiohttp import web


def json_error(status: int, code: str, message: str, *, headers: dict[str, str] | None = None) -> web.Response:
    """Return ``{"error": {"code": ..., "message": ...}}`` with ``status``."""
    body = json.dumps({"error": {"code": code, "message": message}})
    return web.Response(status=status, text=body, content_type="application/json", headers=headers)
