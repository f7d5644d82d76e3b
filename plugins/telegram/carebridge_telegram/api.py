"""The Bot API client and the meaning of its answers.

Every Bot API method is ``POST {api_url}/bot<token>/<method>`` with a JSON
body, answered with ``{"ok": true, "result": ...}`` or ``{"ok": false,
"error_code", "description", "parameters": {"retry_after", ...}}``.

The Bot API wants the bot token inside the URL path; there is no header
alternative. So the URL exists only inside this module and aiohttp's request:
``repr`` shows the server without it, errors name only the failure class and
never chain aiohttp's exception (whose text or request info quotes the full
URL), and no URL is ever logged. The daemon's log filter also masks the token
as a last line of defence.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import aiohttp

from bridge import ChannelAuthFailed, DeliveryError

#: "Text of the message to be sent, 1-4096 characters after entities parsing" (sendMessage).
MAX_TEXT = 4096
#: Statuses that mean the token itself is refused: 401 for a revoked or wrong token,
#: 404 for a path the Bot API does not know (a malformed token or a wrong api_url).
AUTH_STATUSES = frozenset({401, 404})

_TIMEOUT = aiohttp.ClientTimeout(total=30)
_MAX_DESCRIPTION = 200


@dataclass(frozen=True, slots=True)
class Answer:
    """One Bot API answer, reduced to what decisions need.

    :param status: the HTTP status.
    :param ok: the answer's ``ok``; False too when the body is no Bot API answer.
    :param result: ``result`` when ``ok``.
    :param error_code: ``error_code`` (equal to the status in practice; the
        Bot API says its contents may change, so decisions use the status first).
    :param description: ``description``, or ``HTTP <status>``.
    :param retry_after: ``parameters.retry_after`` (flood control), else a ``Retry-After`` header.
    :param body: the JSON answer as received (printed by ``telegram set-webhook``).
    """

    status: int
    ok: bool
    result: Any = None
    error_code: int | None = None
    description: str = ""
    retry_after: float | None = None
    body: Any = None

    @property
    def code(self) -> int:
        """The status to decide on: ``error_code`` when the HTTP status is a plain 200."""
        return self.error_code if self.status == 200 and self.error_code else self.status


class BotApi:
    """Call Bot API methods for one bot.

    :param http: a client session (the core's shared one inside the daemon).
    """

    def __init__(self, http: aiohttp.ClientSession, api_url: str, token: str) -> None:
        self._http = http
        self._api_url = api_url
        self._base = f"{api_url}/bot{token}/"

    def __repr__(self) -> str:
        return f"BotApi({self._api_url!r})"

    async def request(self, method: str, payload: dict[str, Any] | None = None) -> Answer:
        """Call ``method`` and return its answer, successful or not.

        :raises DeliveryError: retryable, code ``network``, when the server
            cannot be reached or does not answer in time.
        """
        try:
            async with self._http.post(
                self._base + method, json=payload or {}, timeout=_TIMEOUT, allow_redirects=False
            ) as resp:
                status = resp.status
                raw = await resp.read()
                header = resp.headers.get("Retry-After")
        except (TimeoutError, aiohttp.ClientError) as err:
            # Name the failure class only, and do not chain: the URL carries the token.
            raise DeliveryError(f"Bot API unreachable ({type(err).__name__})", retryable=True, code="network") from None
        return parse_answer(status, raw, header)

    async def send_message(self, payload: dict[str, Any]) -> int:
        """Call ``sendMessage`` and return the new message's ``message_id``.

        :raises DeliveryError: classified by :func:`classify`.
        """
        answer = await self.request("sendMessage", payload)
        if not answer.ok:
            raise classify(answer)
        result = answer.result
        message_id = result.get("message_id") if isinstance(result, dict) else None
        if isinstance(message_id, bool) or not isinstance(message_id, int):
            # Telegram accepted the message; a retry could deliver it twice.
            raise DeliveryError("Bot API answered ok without a message_id", retryable=False, code="bad_response")
        return message_id


def parse_answer(status: int, raw: bytes, retry_after_header: str | None = None) -> Answer:
    """Read a Bot API answer; a body that is not one keeps the HTTP status only."""
    try:
        body: Any = json.loads(raw)
    except (UnicodeDecodeError, ValueError):
        body = None
    if not isinstance(body, dict):
        return Answer(status=status, ok=False, description=f"HTTP {status}", retry_after=_seconds(retry_after_header))
    parameters = body.get("parameters")
    retry_after = parameters.get("retry_after") if isinstance(parameters, dict) else None
    error_code = body.get("error_code")
    description = body.get("description")
    return Answer(
        status=status,
        ok=status == 200 and body.get("ok") is True,
        result=body.get("result"),
        error_code=error_code if isinstance(error_code, int) and not isinstance(error_code, bool) else None,
        description=str(description)[:_MAX_DESCRIPTION] if description else f"HTTP {status}",
        retry_after=_seconds(retry_after) if retry_after is not None else _seconds(retry_after_header),
        body=body,
    )


def classify(answer: Answer) -> DeliveryError:
    """Return the error the core should see for a refused ``sendMessage``.

    429 (flood control) → retryable after ``retry_after``; 5xx → retryable;
    401 and 404 → ``ChannelAuthFailed`` (the token is refused: the channel
    stops sending); 400 (bad request, chat not found), 403 (the user blocked
    the bot) and every other refusal → permanent. ``code`` is the status as text.
    """
    code = answer.code
    text = f"Telegram refused the message (HTTP {answer.status}, code {code}): {answer.description}"
    if code in AUTH_STATUSES:
        return ChannelAuthFailed(text, code=str(code))
    if code == 429 or code >= 500:
        return DeliveryError(text, retryable=True, code=str(code), retry_after=answer.retry_after)
    return DeliveryError(text, retryable=False, code=str(code))


def _seconds(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None
