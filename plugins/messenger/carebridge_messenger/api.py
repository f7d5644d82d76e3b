"""The Messenger Send API client and the meaning of its errors.

Graph errors are decided by ``error.code``/``error_subcode`` (Meta asks
integrators not to rely on HTTP status or titles); :func:`classify` maps each
documented code to the core's error types so the outbox knows whether a retry
can help.

The Page token travels as the ``access_token`` query parameter, as every
official Send API example shows (PROTOCOLS §1.4; the Authorization header is
unconfirmed for this endpoint). The URL with the token therefore exists only
inside aiohttp's request: errors name the failure class and never chain the
aiohttp exception (whose text or request info may carry the full URL), and
``repr`` shows the URL without its query.
"""

from __future__ import annotations

import json
from typing import Any

import aiohttp

from bridge import ChannelAuthFailed, DeliveryError, DeliveryUncertain, WindowClosedError
from carebridge_meta import GraphError

#: Longest text one Messenger message may carry (Send API ``message.text``).
MAX_TEXT = 2000
#: Rate limits (app 4, user 17, page 32, custom 613) and unknown/temporary errors (1, 2).
RETRYABLE_CODES = frozenset({1, 2, 4, 17, 32, 613})
#: Refusals that no retry will change: person unavailable, bad parameter or PSID.
PERMANENT_CODES = frozenset({100, 551})
#: Code 10 with these subcodes means "outside of allowed window"; 2534022 is a
#: reported alternative subcode (unconfirmed), treated the same way because a
#: retry cannot help either way.
WINDOW_SUBCODES = frozenset({2018278, 2534022})
TOKEN_CODE = 190

_TIMEOUT = aiohttp.ClientTimeout(total=30)


class GraphClient:
    """Post to ``{graph_url}/{page_id}/messages?access_token=…`` with the Page token.

    :param http: the core's shared session (never one of our own).
    """

    def __init__(self, http: aiohttp.ClientSession, graph_url: str, page_id: str, token: str) -> None:
        self._http = http
        self._url = f"{graph_url}/{page_id}/messages"
        self._params = {"access_token": token}

    def __repr__(self) -> str:
        return f"GraphClient({self._url!r})"

    async def post(self, body: dict[str, Any]) -> dict[str, Any]:
        """Send one Send API request and return Meta's JSON answer.

        :raises DeliveryError: classified by :func:`classify` (including its
            subclasses ``WindowClosedError`` and ``ChannelAuthFailed``);
            network failures and timeouts are retryable.
        :raises DeliveryUncertain: the request was written in full and the
            connection failed before the answer: Meta may have the message.
        """
        tracker = aiohttp.UploadTracker()
        try:
            async with self._http.post(
                self._url,
                json=body,
                params=self._params,
                timeout=_TIMEOUT,
                allow_redirects=False,
                upload_tracker=tracker,
            ) as resp:
                status = resp.status
                raw = await resp.read()
                retry_after = _retry_after(resp.headers.get("Retry-After"))
        except (TimeoutError, aiohttp.ClientError) as err:
            # Name the failure class only, and do not chain: aiohttp's exceptions
            # may quote the URL, which carries the token.
            if _written(tracker):
                raise DeliveryUncertain(
                    f"Graph API answer lost after the request was sent ({type(err).__name__})", confirmable=True
                ) from None
            raise DeliveryError(
                f"Graph API unreachable ({type(err).__name__})", retryable=True, code="network"
            ) from None
        answer = _json_or_none(raw)
        if status != 200:
            raise classify(GraphError.from_response(status, answer), retry_after)
        if not isinstance(answer, dict):
            # Meta accepted the request; a retry could deliver it twice.
            raise DeliveryError("Graph API answered 200 without a JSON object", retryable=False, code="bad_response")
        return answer

    async def send_message(self, body: dict[str, Any]) -> str:
        """Send one message and return its ``message_id``."""
        answer = await self.post(body)
        message_id = answer.get("message_id")
        if not isinstance(message_id, str) or not message_id:
            raise DeliveryError("Graph API answered 200 without a message_id", retryable=False, code="bad_response")
        return message_id


def classify(error: GraphError, retry_after: float | None = None) -> DeliveryError:
    """Return the error the core should see for a Graph API refusal.

    190 → ``ChannelAuthFailed`` (the channel stops sending); 10/2018278 →
    ``WindowClosedError``; 1, 2, 4, 17, 32, 613 and server errors without a
    known code → retryable; 100, 551 and every other refusal → permanent.
    ``code`` on the result is Meta's ``error.code`` as text (the subcode is
    in the message), or ``http_<status>`` when the body had no Graph error.

    :param retry_after: seconds from a ``Retry-After`` header, if Meta sent one.
    """
    code = str(error.code) if error.code is not None else f"http_{error.status}"
    subcode = f", subcode {error.subcode}" if error.subcode is not None else ""
    text = f"Messenger refused the message (HTTP {error.status}, code {code}{subcode}): {error.message}"
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


def _written(tracker: aiohttp.UploadTracker) -> bool:
    """Whether the whole request body reached the connection (so Meta may have acted on it)."""
    done = tracker.upload_complete
    return done.done() and not done.cancelled() and done.exception() is None


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
