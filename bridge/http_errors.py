"""JSON error answers in the shape of DESIGN §6, shared by core and plugins.

Every error the bridge answers over HTTP, whether the core's or a plugin's,
reads ``{"error": {"code": ..., "message": ...}}``: a platform's retry logic
and an operator's curl then see one shape. ``json_error`` is for handlers that
return their answer; ``http_error`` for helpers deep in a handler that must
stop it (``raise http_error(...)``).
"""

from __future__ import annotations

import json

from aiohttp import web

# The statuses a handler refuses a request with; each class takes only the
# keyword arguments of ``web.Response`` (413 is built apart: it wants sizes).
_EXCEPTIONS: dict[int, type[web.HTTPException]] = {
    400: web.HTTPBadRequest,
    401: web.HTTPUnauthorized,
    403: web.HTTPForbidden,
    404: web.HTTPNotFound,
    409: web.HTTPConflict,
    415: web.HTTPUnsupportedMediaType,
    422: web.HTTPUnprocessableEntity,
    429: web.HTTPTooManyRequests,
    500: web.HTTPInternalServerError,
    503: web.HTTPServiceUnavailable,
}


def json_error(status: int, code: str, message: str, *, headers: dict[str, str] | None = None) -> web.Response:
    """Return ``{"error": {"code": ..., "message": ...}}`` with ``status``."""
    return web.Response(status=status, text=_body(code, message), content_type="application/json", headers=headers)


def http_error(status: int, code: str, message: str) -> web.HTTPException:
    """Return an exception to raise that answers like ``json_error(status, code, message)``.

    :raises ValueError: for a status that is not one a handler refuses with
        (400, 401, 403, 404, 409, 413, 415, 422, 429, 500, 503).
    """
    text = _body(code, message)
    if status == 413:
        # The sizes only feed aiohttp's default text, which ``text`` replaces.
        return web.HTTPRequestEntityTooLarge(max_size=0, actual_size=0, text=text, content_type="application/json")
    try:
        exception = _EXCEPTIONS[status]
    except KeyError:
        raise ValueError(f"no JSON error exception for HTTP status {status}") from None
    return exception(text=text, content_type="application/json")


def _body(code: str, message: str) -> str:
    return json.dumps({"error": {"code": code, "message": message}})
