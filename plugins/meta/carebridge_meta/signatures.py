"""Meta's ``X-Hub-Signature-256``: HMAC-SHA256 of the raw body under the app secret.

Meta signs the body as it sends it, unicode escaped (``\\u00e9``), so the
check runs over the bytes as received, before any JSON parse, and compares in
constant time. Both Messenger and WhatsApp sign every event POST this way.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from typing import Any

from aiohttp import web

from bridge import http_error, read_body

SIGNATURE_HEADER = "X-Hub-Signature-256"


def sign(body: bytes, app_secret: str) -> str:
    """Return the ``X-Hub-Signature-256`` value Meta would send for ``body``."""
    digest = hmac.new(app_secret.encode(), body, hashlib.sha256).hexdigest()
    return f"sha256={digest}"


def signature_ok(body: bytes, header: str | None, app_secret: str) -> bool:
    """Check a signature header against the raw body in constant time.

    An empty secret never matches: a misconfigured channel must fail closed.
    """
    if not header or not app_secret:
        return False
    return hmac.compare_digest(sign(body, app_secret).encode(), header.strip().encode())


async def read_signed_json(request: web.Request, app_secret: str) -> dict[str, Any]:
    """Read a webhook POST, check its signature over the raw bytes, parse it.

    :raises web.HTTPException: 413 (too large), 401 (no signature),
        403 (wrong signature), 400 (malformed JSON or not an object),
        each with a JSON error body.
    """
    body = await read_body(request)
    header = request.headers.get(SIGNATURE_HEADER)
    if not header:
        raise http_error(401, "signature_missing", f"{SIGNATURE_HEADER} header is required")
    if not signature_ok(body, header, app_secret):
        raise http_error(403, "signature_invalid", f"{SIGNATURE_HEADER} does not match the body")
    try:
        payload = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise http_error(400, "malformed_json", f"body is not valid JSON: {err}") from err
    if not isinstance(payload, dict):
        raise http_error(400, "malformed_json", "body must be a JSON object")
    return payload


def signed_body(payload: dict[str, Any], app_secret: str) -> tuple[bytes, dict[str, str]]:
    """Serialise ``payload`` as Meta does (ASCII, escaped unicode) and sign it.

    Used by ``carebridge simulate`` and by the test suite's fake platforms.
    """
    body = json.dumps(payload).encode("ascii")
    return body, {"Content-Type": "application/json", SIGNATURE_HEADER: sign(body, app_secret)}
