"""Meta's error answers for the fake WhatsApp Cloud API (PROTOCOLS §0.4, §2.8).

Each scripted or contract refusal of ``FakeWhatsAppCloud`` is built here, in
the Graph error envelope with WhatsApp's ``error_data.details``, so the
fake's own module stays about the contract it enforces.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from aiohttp import web


@dataclass(frozen=True)
class FakeError:
    """One scripted error answer."""

    status: int
    code: int | None
    message: str = ""
    subcode: int | None = None
    details: str | None = None
    retry_after: float | None = None


_KNOWN: dict[int, tuple[int, str, str | None]] = {
    1: (500, "(#1) An unknown error occurred", None),
    2: (503, "(#2) Service temporarily unavailable", None),
    4: (400, "(#4) Application request limit reached", None),
    100: (400, "(#100) Invalid parameter", None),
    190: (401, "Invalid OAuth access token - Cannot parse access token", None),
    80007: (400, "(#80007) Rate limit issues", "The WhatsApp Business Account has reached its rate limit."),
    130429: (400, "(#130429) Rate limit hit", "Cloud API message throughput has been reached."),
    131026: (400, "(#131026) Message undeliverable", "Message failed to send because of an unknown error."),
    131047: (
        400,
        "(#131047) Re-engagement message",
        "Message failed to send because more than 24 hours have passed since the customer last replied to this number.",
    ),
    131056: (
        400,
        "(#131056) (Business Account, Consumer Account) pair rate limit hit",
        "Message failed to send because there were too many messages sent from this phone number "
        "to the same phone number in a short period of time.",
    ),
}


def known_error(code: int) -> FakeError:
    """Meta's answer for ``code`` (see ``_KNOWN``)."""
    status, message, details = _KNOWN[code]
    return FakeError(status=status, code=code, message=message, details=details)


def error_response(error: FakeError) -> web.Response:
    """Meta's answer for ``error``: the Graph envelope, or a bare gateway page when ``code`` is None."""
    body: dict[str, Any] = {"message": error.message, "type": "OAuthException", "fbtrace_id": "AFakeTrace0001"}
    if error.code is None:
        return web.Response(status=error.status, text="<html><body>Bad Gateway</body></html>", content_type="text/html")
    body["code"] = error.code
    if error.subcode is not None:
        body["error_subcode"] = error.subcode
    if error.details:
        body["error_data"] = {"messaging_product": "whatsapp", "details": error.details}
    if error.status >= 500:
        body["is_transient"] = True
    headers = {"Retry-After": str(error.retry_after)} if error.retry_after is not None else None
    return web.json_response({"error": body}, status=error.status, headers=headers)
