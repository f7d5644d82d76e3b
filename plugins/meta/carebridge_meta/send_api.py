"""The Send API client Messenger and Instagram share, and the meaning of its refusals.

Both platforms take a message as ``POST {graph_url}/{account id}/messages``
with ``{"recipient": {"id": ...}, "message": ...}`` (or a ``sender_action``),
answer ``{"message_id": ...}``, and refuse with the Graph error envelope.
Refusals are decided by ``error.code``/``error_subcode`` (Meta asks
integrators not to rely on HTTP status or titles): :func:`classify_refusal`
maps each documented code to the core's error types so the outbox knows
whether a retry can help.

Where the token travels differs (Messenger's Page token as the
``access_token`` query parameter, Instagram's user token as a Bearer
header). Either way the URL or the headers with the token exist only inside
aiohttp's request: errors name the failure class and never chain the
aiohttp exception (whose text or request info may carry them), and ``repr``
shows the URL without any query.
"""

from __future__ import annotations

import json
from typing import Any, ClassVar, Literal

import aiohttp

from bridge import ChannelAuthFailed, DeliveryError, DeliveryUncertain, WindowClosedError

from .graph_errors import GraphError

#: Rate limits (app 4, user 17, page 32, custom 613) and unknown/temporary errors (1, 2).
RETRYABLE_CODES = frozenset({1, 2, 4, 17, 32, 613})
#: Refusals that no retry will change: person unavailable, bad parameter or recipient id.
PERMANENT_CODES = frozenset({100, 551})
#: Code 10 with one of ``WINDOW_SUBCODES`` means "outside of allowed window".
WINDOW_CODE = 10
#: 2018278 is Messenger's window subcode and 2534022 the one seen on Instagram
#: (from integrators' tables; PROTOCOLS §1.6); a retry cannot help with either.
WINDOW_SUBCODES = frozenset({2018278, 2534022})
#: The access token is invalid or expired.
TOKEN_CODE = 190

_TIMEOUT = aiohttp.ClientTimeout(total=30)


def classify_refusal(error: GraphError, retry_after: float | None = None, *, platform: str) -> DeliveryError:
    """Return the error the core should see for a Send API refusal.

    190 → ``ChannelAuthFailed`` (the channel stops sending); 10 with a window
    subcode → ``WindowClosedError``; 1, 2, 4, 17, 32, 613 and a 5xx or 429
    without a known code → retryable; 100, 551 and every other refusal →
    permanent. ``code`` on the result is Meta's ``error.code`` as text (the
    subcode is in the message), or ``http_<status>`` when the body had no
    Graph error.

    :param retry_after: seconds from a ``Retry-After`` header, if Meta sent one.
    :param platform: the platform's display name, which starts the message
        (``Messenger refused the message (HTTP 400, code 551): ...``).
    """
    code = str(error.code) if error.code is not None else f"http_{error.status}"
    subcode = f", subcode {error.subcode}" if error.subcode is not None else ""
    text = f"{platform} refused the message (HTTP {error.status}, code {code}{subcode}): {error.message}"
    if error.code == TOKEN_CODE:
        return ChannelAuthFailed(text, code=code)
    if error.code == WINDOW_CODE and error.subcode in WINDOW_SUBCODES:
        return WindowClosedError(text, code=code)
    if error.code in RETRYABLE_CODES:
        return DeliveryError(text, retryable=True, code=code, retry_after=retry_after)
    if error.code in PERMANENT_CODES:
        return DeliveryError(text, retryable=False, code=code)
    if error.code is None and (error.status >= 500 or error.status == 429):
        return DeliveryError(text, retryable=True, code=code, retry_after=retry_after)
    return DeliveryError(text, retryable=False, code=code)


class SendApiClient:
    """Post Send API requests to one account's ``{graph_url}/{account_id}/messages`` edge.

    A platform's subclass names itself and says where its token travels.

    :param http: the core's shared session (never one of our own).
    :param token: the access token (never logged, never in an error).

    :cvar platform: the display name refusals start with (:func:`classify_refusal`).
    :cvar api: the API's name in transport errors (``Graph API unreachable (...)``).
    :cvar token_in: ``query``: the ``access_token`` query parameter (Messenger's
        documented form); ``header``: an ``Authorization: Bearer`` header.
    :cvar confirmed_by_echo: the echo of every sent message names its
        delivery (Messenger's ``metadata``), so an answer lost after the whole
        request was written is ``DeliveryUncertain`` and the core waits for
        that echo; without such an echo it is a plain retryable network error.
    """

    platform: ClassVar[str]
    api: ClassVar[str] = "Graph API"
    token_in: ClassVar[Literal["query", "header"]]
    confirmed_by_echo: ClassVar[bool] = False

    def __init__(self, http: aiohttp.ClientSession, graph_url: str, account_id: str, token: str) -> None:
        self._http = http
        self._url = f"{graph_url}/{account_id}/messages"
        self._params = {"access_token": token} if self.token_in == "query" else None
        self._headers = {"Authorization": f"Bearer {token}"} if self.token_in == "header" else None

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self._url!r})"

    async def post(self, body: dict[str, Any]) -> dict[str, Any]:
        """Send one request and return Meta's JSON answer.

        :raises DeliveryError: classified by :func:`classify_refusal`
            (including its subclasses ``WindowClosedError`` and
            ``ChannelAuthFailed``); network failures and timeouts are retryable.
        :raises DeliveryUncertain: with ``confirmed_by_echo``, the request was
            written in full and the connection failed before the answer: Meta
            may have the message.
        """
        tracker = aiohttp.UploadTracker()
        try:
            async with self._http.post(
                self._url,
                json=body,
                params=self._params,
                headers=self._headers,
                timeout=_TIMEOUT,
                allow_redirects=False,
                upload_tracker=tracker,
            ) as resp:
                status = resp.status
                raw = await resp.read()
                retry_after = _retry_after(resp.headers.get("Retry-After"))
        except (TimeoutError, aiohttp.ClientError) as err:
            # Name the failure class only, and do not chain: aiohttp's exceptions
            # may quote the URL or the request, which carry the token.
            if self.confirmed_by_echo and _written(tracker):
                raise DeliveryUncertain(
                    f"{self.api} answer lost after the request was sent ({type(err).__name__})", confirmable=True
                ) from None
            raise DeliveryError(
                f"{self.api} unreachable ({type(err).__name__})", retryable=True, code="network"
            ) from None
        answer = _json_or_none(raw)
        if status != 200:
            raise classify_refusal(GraphError.from_response(status, answer), retry_after, platform=self.platform)
        if not isinstance(answer, dict):
            # Meta accepted the request; a retry could deliver it twice.
            raise DeliveryError(f"{self.api} answered 200 without a JSON object", retryable=False, code="bad_response")
        return answer

    async def send_message(self, body: dict[str, Any]) -> str:
        """Send one message and return its ``message_id``."""
        answer = await self.post(body)
        message_id = answer.get("message_id")
        if not isinstance(message_id, str) or not message_id:
            raise DeliveryError(f"{self.api} answered 200 without a message_id", retryable=False, code="bad_response")
        return message_id


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
