"""The Instagram messaging API client, its text limit and the meaning of its errors.

Graph errors are decided by ``error.code``/``error_subcode`` (Meta asks
integrators not to rely on HTTP status or titles); :func:`classify` maps each
documented code to the core's error types so the outbox knows whether a retry
can help.

The Instagram User access token travels as an ``Authorization: Bearer``
header, as the Instagram API with Instagram Login's examples show, so it is
never part of a URL. Errors still name only the failure class and never chain
the aiohttp exception: its text could carry request details.
"""

from __future__ import annotations

import json
from typing import Any

import aiohttp

from bridge import ChannelAuthFailed, DeliveryError, WindowClosedError, split_text
from carebridge_meta import GraphError

#: Longest text one Instagram message may carry: Meta's pages say both "less than 1000
#: characters" and "UTF-8 and 1000 bytes or less", so every part keeps to both limits.
MAX_TEXT = 1000
MAX_BYTES = 1000
#: Rate limits (app 4, user 17, page 32, custom 613) and unknown/temporary errors (1, 2).
RETRYABLE_CODES = frozenset({1, 2, 4, 17, 32, 613})
#: Refusals that no retry will change: person unavailable, bad parameter or IGSID.
PERMANENT_CODES = frozenset({100, 551})
#: Code 10 with these subcodes means "outside of allowed window" (2534022 is
#: the subcode seen on Instagram, 2018278 the Messenger one; both mean the same).
WINDOW_SUBCODES = frozenset({2018278, 2534022})
TOKEN_CODE = 190

_TIMEOUT = aiohttp.ClientTimeout(total=30)


def split_message(text: str, limit: int = MAX_TEXT, max_bytes: int = MAX_BYTES) -> list[str]:
    """Split ``text`` into parts of at most ``limit`` characters and ``max_bytes`` UTF-8 bytes, in order.

    Cuts at word boundaries (``bridge.split_text``). A part short enough in
    characters but too long in bytes (emoji, non-Latin scripts) is split again
    with as many characters as its first ``max_bytes`` bytes hold; that count
    is below the part's length, so every round makes progress.
    """
    parts: list[str] = []
    for part in split_text(text, limit):
        encoded = part.encode("utf-8")
        if len(encoded) <= max_bytes:
            parts.append(part)
            continue
        fitting = len(encoded[:max_bytes].decode("utf-8", "ignore"))
        parts.extend(split_message(part, max(1, fitting), max_bytes))
    return parts


class GraphClient:
    """Post to ``{graph_url}/{ig_user_id}/messages`` with the Instagram User access token.

    :param http: the core's shared session (never one of our own).
    """

    def __init__(self, http: aiohttp.ClientSession, graph_url: str, ig_user_id: str, token: str) -> None:
        self._http = http
        self._url = f"{graph_url}/{ig_user_id}/messages"
        self._headers = {"Authorization": f"Bearer {token}"}

    def __repr__(self) -> str:
        return f"GraphClient({self._url!r})"

    async def post(self, body: dict[str, Any]) -> dict[str, Any]:
        """Send one request and return Meta's JSON answer.

        :raises DeliveryError: classified by :func:`classify` (including its
            subclasses ``WindowClosedError`` and ``ChannelAuthFailed``);
            network failures and timeouts are retryable.
        """
        try:
            async with self._http.post(
                self._url, json=body, headers=self._headers, timeout=_TIMEOUT, allow_redirects=False
            ) as resp:
                status = resp.status
                raw = await resp.read()
                retry_after = _retry_after(resp.headers.get("Retry-After"))
        except (TimeoutError, aiohttp.ClientError) as err:
            raise DeliveryError(
                f"Instagram API unreachable ({type(err).__name__})", retryable=True, code="network"
            ) from None
        answer = _json_or_none(raw)
        if status != 200:
            raise classify(GraphError.from_response(status, answer), retry_after)
        if not isinstance(answer, dict):
            # Meta accepted the request; a retry could deliver it twice.
            raise DeliveryError(
                "Instagram API answered 200 without a JSON object", retryable=False, code="bad_response"
            )
        return answer

    async def send_message(self, body: dict[str, Any]) -> str:
        """Send one message and return its ``message_id``."""
        answer = await self.post(body)
        message_id = answer.get("message_id")
        if not isinstance(message_id, str) or not message_id:
            raise DeliveryError("Instagram API answered 200 without a message_id", retryable=False, code="bad_response")
        return message_id


def classify(error: GraphError, retry_after: float | None = None) -> DeliveryError:
    """Return the error the core should see for a Graph API refusal.

    190 → ``ChannelAuthFailed`` (the channel stops sending); 10 with a window
    subcode → ``WindowClosedError``; 1, 2, 4, 17, 32, 613 and server errors
    without a known code → retryable; 100, 551 and every other refusal →
    permanent. ``code`` on the result is Meta's ``error.code`` as text, or
    ``http_<status>`` when the body had no Graph error.

    :param retry_after: seconds from a ``Retry-After`` header, if Meta sent one.
    """
    code = str(error.code) if error.code is not None else f"http_{error.status}"
    subcode = f", subcode {error.subcode}" if error.subcode is not None else ""
    text = f"Instagram refused the message (HTTP {error.status}, code {code}{subcode}): {error.message}"
    if error.code == TOKEN_CODE:
        return ChannelAuthFailed(text, code=code)
    if error.code == 10 and error.subcode in WINDOW_SUBCODES:
        return WindowClosedError(text, code=code)
    if error.code in RETRYABLE_CODES:
        return DeliveryError(text, retryable=True, code=code, retry_after=retry_after)
    if error.code in PERMANENT_CODES:
        return DeliveryError(text, retryable=False, code=code)
    if error.code is None and (error.status >= 500 or error.status == 429):
        return DeliveryError(text, retryable=True, code=code, retry_after=retry_after)
    return DeliveryError(text, retryable=False, code=code)


def _retry_after(value: str | None) -> float | None:
    try:
        return max(0.0, float(value)) if value else None
    except ValueError:
        return None


def _json_or_none(raw: bytes) -> object:
    try:
        return json.loads(raw)
    except (UnicodeDecodeError, ValueError):
        return None
