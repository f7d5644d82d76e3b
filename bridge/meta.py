"""Meta's webhook and Graph API conventions, shared by the Messenger and WhatsApp plugins.

Both platforms verify a callback with the ``hub.*`` GET handshake, sign each
event POST with ``X-Hub-Signature-256`` (HMAC-SHA256 of the raw body under
the app secret) and report errors in the Graph error envelope. This module
implements those once; it knows nothing of either platform's payloads.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from aiohttp import web

from .http import json_error

if TYPE_CHECKING:
    from .channel import ChannelContext
    from .models import InboundMessage, StatusUpdate

SIGNATURE_HEADER = "X-Hub-Signature-256"


def sign(body: bytes, app_secret: str) -> str:
    """Return the ``X-Hub-Signature-256`` value Meta would send for ``body``."""
    digest = hmac.new(app_secret.encode(), body, hashlib.sha256).hexdigest()
    return f"sha256={digest}"


def signature_ok(body: bytes, header: str | None, app_secret: str) -> bool:
    """Check a signature header against the raw body in constant time."""
    if not header or not app_secret:
        return False
    return hmac.compare_digest(sign(body, app_secret).encode(), header.strip().encode())


def verify_subscription(request: web.Request, verify_token: str) -> web.Response:
    """Answer Meta's ``hub.mode=subscribe`` handshake.

    200 with ``hub.challenge`` echoed verbatim as text/plain when the mode is
    ``subscribe`` and the token matches; 403 otherwise.
    """
    query = request.query
    mode = query.get("hub.mode")
    token = query.get("hub.verify_token", "")
    challenge = query.get("hub.challenge")
    if mode != "subscribe" or challenge is None or not verify_token:
        return json_error(403, "verification_failed", "hub.mode must be subscribe with a hub.challenge")
    if not hmac.compare_digest(token.encode(), verify_token.encode()):
        return json_error(403, "verification_failed", "hub.verify_token does not match")
    return web.Response(status=200, text=challenge, content_type="text/plain")


async def read_signed_json(request: web.Request, app_secret: str) -> dict[str, Any]:
    """Read a webhook POST, check its signature over the raw bytes, parse it.

    :raises web.HTTPException: 413 (too large), 401 (no signature),
        403 (wrong signature), 400 (malformed JSON or not an object),
        each with a JSON error body.
    """
    try:
        body = await request.read()
    except web.HTTPRequestEntityTooLarge as err:
        raise _http_error(413, "body_too_large", f"request body exceeds {request.client_max_size} bytes") from err
    header = request.headers.get(SIGNATURE_HEADER)
    if not header:
        raise _http_error(401, "signature_missing", f"{SIGNATURE_HEADER} header is required")
    if not signature_ok(body, header, app_secret):
        raise _http_error(403, "signature_invalid", f"{SIGNATURE_HEADER} does not match the body")
    try:
        payload = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise _http_error(400, "malformed_json", f"body is not valid JSON: {err}") from err
    if not isinstance(payload, dict):
        raise _http_error(400, "malformed_json", "body must be a JSON object")
    return payload


_ERRORS: dict[int, type[web.HTTPException]] = {
    400: web.HTTPBadRequest,
    401: web.HTTPUnauthorized,
    403: web.HTTPForbidden,
}


def _http_error(status: int, code: str, message: str) -> web.HTTPException:
    text = json_error(status, code, message).text
    if status == 413:
        error: web.HTTPException = web.HTTPRequestEntityTooLarge(
            max_size=0, actual_size=0, text=text, content_type="application/json"
        )
        return error
    return _ERRORS[status](text=text, content_type="application/json")


def webhook_app(
    max_body: int,
    verify: Callable[[web.Request], Awaitable[web.StreamResponse]],
    receive: Callable[[web.Request], Awaitable[web.StreamResponse]],
) -> web.Application:
    """Build the webhook sub-app of a Meta platform: GET handshake, POST events.

    Both the mount path and the one with a trailing slash answer: the callback
    URL is typed by hand in Meta's dashboard.
    """
    app = web.Application(client_max_size=max_body)
    for path in ("", "/"):
        app.router.add_get(path, verify)
        app.router.add_post(path, receive)
    return app


async def hand_over(
    ctx: ChannelContext, messages: Sequence[InboundMessage], statuses: Sequence[StatusUpdate]
) -> web.Response | None:
    """Give one POST's messages, then its statuses, to the core.

    Returns None once both are committed (answer 200), or a 500 JSON answer
    when storing failed: Meta then delivers the POST again, and the core
    drops what it already has.
    """
    try:
        if messages:
            await ctx.deliver(messages)
        if statuses:
            await ctx.update_status(statuses)
    except Exception:  # boundary: Meta must see a failure so that it retries the POST
        ctx.log.exception("storing a webhook failed (%d messages, %d statuses); asking Meta to retry",
                          len(messages), len(statuses))  # fmt: skip
        return json_error(500, "store_failed", "the event could not be stored; retry later")
    return None


def signed_body(payload: dict[str, Any], app_secret: str) -> tuple[bytes, dict[str, str]]:
    """Serialise ``payload`` as Meta does (ASCII, escaped unicode) and sign it.

    Used by ``carebridge simulate`` and by the test suite's fake platforms.
    """
    body = json.dumps(payload).encode("ascii")
    return body, {"Content-Type": "application/json", SIGNATURE_HEADER: sign(body, app_secret)}


@dataclass(frozen=True, slots=True)
class GraphError:
    """The Graph API error envelope, reduced to what decisions need."""

    status: int
    code: int | None
    subcode: int | None
    message: str
    details: str | None = None

    @classmethod
    def from_response(cls, status: int, body: Any) -> GraphError:
        """Read ``{"error": {...}}``; anything else keeps the HTTP status only."""
        error = body.get("error") if isinstance(body, dict) else None
        if not isinstance(error, dict):
            return cls(status=status, code=None, subcode=None, message=f"HTTP {status}")
        data = error.get("error_data")
        details = data.get("details") if isinstance(data, dict) else None
        return cls(
            status=status,
            code=_int_or_none(error.get("code")),
            subcode=_int_or_none(error.get("error_subcode")),
            message=str(error.get("message") or error.get("error_user_msg") or f"HTTP {status}"),
            details=str(details) if details else None,
        )


def _int_or_none(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None
