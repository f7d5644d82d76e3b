"""A fake Telegram Bot API server that refuses what the Bot API refuses.

Usage with pytest-aiohttp::

    api = FakeBotApi(token="123456:test-token")
    server = await aiohttp_server(api.app)
    section["api_url"] = str(server.make_url(""))          # http://127.0.0.1:PORT
    await api.user_writes(43, "hello")                     # posts an update to the registered webhook
    assert api.texts_to(43) == ["answer"]

Every method is ``POST /bot<token>/<method>`` with a JSON body (query
parameters are read too), answered ``{"ok": true, "result": ...}`` or
``{"ok": false, "error_code": N, "description": "..."}``, as the Bot API does
(plugins/telegram/README.md, "Facts"). What it enforces:

- the token in the path: a path that is no ``/bot<id>:<secret>/<method>``, or
  an unknown method, is 404 ``Not Found``; a well-formed but wrong (or
  :meth:`revoke_token`-d) token is 401 ``Unauthorized``;
- ``getMe`` answers the bot's ``User``;
- ``sendMessage``: ``chat_id`` of a chat that started the bot (else 400 ``chat
  not found``; a chat that :meth:`block`-ed it is 403 ``Forbidden: bot was
  blocked by the user``), ``text`` of 1..4096 characters (400 ``message text is
  empty`` / ``message is too long``), optional ``reply_parameters`` with a
  ``message_id`` of that chat (400 ``message to be replied not found`` unless
  ``allow_sending_without_reply``); answers the sent ``Message``. Message ids
  count per chat, as Telegram's do (two chats both have a message 1);
- ``setWebhook``: an HTTPS ``url`` on port 443, 80, 88 or 8443 (400 ``bad
  webhook: ...``; with ``insecure_loopback`` an ``http://127.0.0.1`` URL on any
  port is accepted too, for tests), ``secret_token`` of 1-256 characters of
  ``A-Za-z0-9_-``, ``allowed_updates`` a list of strings, optional
  ``drop_pending_updates``; answers ``{"ok": true, "result": true,
  "description": "Webhook was set"}``.

Flood control: :meth:`flood` answers the next ``n`` calls 429 ``Too Many
Requests: retry after N`` with ``parameters.retry_after``; :meth:`fail_next`
answers the next call with a 5xx (JSON, or plain text as a proxy would);
``after=k`` lets ``k`` calls through first.

Driving the bridge: once ``setWebhook`` was called (or ``webhook_url`` and
``secret_token`` are set directly), :meth:`user_writes`, :meth:`user_edits`,
:meth:`user_presses` and :meth:`post_update` post updates with the
``X-Telegram-Bot-Api-Secret-Token`` header, skipping kinds left out of
``allowed_updates`` as Telegram does. ``webhook_answers`` keeps the bridge's
status and body for each.

Recorded: ``sent`` (accepted ``sendMessage`` calls, in order), ``calls`` (the
method name of every authenticated call), ``webhook`` (the last accepted
``setWebhook`` parameters).
"""

from __future__ import annotations

import itertools
import re
import time
from collections import defaultdict
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import aiohttp
from aiohttp import web

SECRET_HEADER = "X-Telegram-Bot-Api-Secret-Token"
DEFAULT_TOKEN = "123456789:AAtest-bot-token_0123456789"
MAX_TEXT = 4096
WEBHOOK_PORTS = (443, 80, 88, 8443)
_SECRET = re.compile(r"^[A-Za-z0-9_-]{1,256}$")
_TOKEN = re.compile(r"^\d+:[A-Za-z0-9_-]+$")


@dataclass(frozen=True, slots=True)
class SentMessage:
    """A ``sendMessage`` the fake accepted."""

    chat_id: int
    message_id: int
    text: str
    reply_to: int | None


@dataclass(frozen=True, slots=True)
class Failure:
    """One scripted answer: a status with a Bot API error body, or plain text."""

    status: int
    description: str
    json: bool = True
    retry_after: int | None = None


class FakeBotApi:
    """The fake Bot API; see the module docstring for its contract."""

    def __init__(self, token: str = DEFAULT_TOKEN, *, insecure_loopback: bool = False) -> None:
        self.token = token
        self.bot_id = int(token.partition(":")[0])
        self.insecure_loopback = insecure_loopback
        self.sent: list[SentMessage] = []
        self.calls: list[str] = []
        self.webhook: dict[str, Any] | None = None
        self.webhook_url: str | None = None
        self.secret_token: str | None = None
        self.allowed_updates: list[str] | None = None
        self.webhook_answers: list[tuple[int, str]] = []
        self._revoked = False
        self._started: dict[int, dict[str, Any]] = {}
        self._blocked: set[int] = set()
        self._messages: dict[int, set[int]] = defaultdict(set)
        self._next_id: dict[int, itertools.count[int]] = defaultdict(lambda: itertools.count(1))
        self._updates = itertools.count(100000001)
        self._script: list[Failure | None] = []
        self.app = web.Application()
        self.app.router.add_route("*", "/{path:.*}", self._handle)

    # -- test controls ----------------------------------------------------

    def user_started(self, chat_id: int, first_name: str = "Ann", last_name: str | None = None) -> None:
        """Record that user ``chat_id`` opened a private chat with the bot (it may write to them now)."""
        user = {"id": chat_id, "is_bot": False, "first_name": first_name}
        if last_name:
            user["last_name"] = last_name
        self._started[chat_id] = user

    def earlier_message(self, chat_id: int, first_name: str = "Ann") -> int:
        """A message user ``chat_id`` wrote before the test (no update is posted); return its id."""
        self.user_started(chat_id, first_name)
        message_id = next(self._next_id[chat_id])
        self._messages[chat_id].add(message_id)
        return message_id

    def block(self, chat_id: int) -> None:
        """The user blocks the bot: sends to them are 403 from now on."""
        self._blocked.add(chat_id)

    def revoke_token(self) -> None:
        """The token is revoked (@BotFather): every call is 401 from now on."""
        self._revoked = True

    def flood(self, n: int = 1, retry_after: int = 3, *, after: int = 0) -> None:
        """Answer ``n`` calls with 429 and ``retry_after``, after letting ``after`` through."""
        failure = Failure(429, f"Too Many Requests: retry after {retry_after}", retry_after=retry_after)
        self._script.extend([None] * after + [failure] * n)

    def fail_next(self, n: int = 1, status: int = 500, *, json: bool = True, after: int = 0) -> None:
        """Answer ``n`` calls with ``status`` (a Bot API error body, or plain text with ``json=False``)."""
        description = "Internal Server Error" if status == 500 else "Bad Gateway" if status == 502 else f"HTTP {status}"
        self._script.extend([None] * after + [Failure(status, description, json=json)] * n)

    def texts_to(self, chat_id: int) -> list[str]:
        """Texts accepted for ``chat_id``, in order."""
        return [s.text for s in self.sent if s.chat_id == chat_id]

    # -- updates to the bridge --------------------------------------------

    async def user_writes(
        self,
        chat_id: int,
        text: str,
        *,
        first_name: str = "Ann",
        last_name: str | None = None,
        reply_to: int | None = None,
        message_id: int | None = None,
    ) -> int:
        """User ``chat_id`` writes ``text`` in their private chat; return the message id.

        Passing an earlier ``message_id`` again posts a new update for that
        same message, as Telegram's redelivery would.
        """
        self.user_started(chat_id, first_name, last_name)
        if message_id is None:
            message_id = next(self._next_id[chat_id])
        self._messages[chat_id].add(message_id)
        message = self._message(chat_id, message_id, text, self._started[chat_id])
        if reply_to is not None:
            message["reply_to_message"] = {"message_id": reply_to, "chat": message["chat"], "date": message["date"]}
        await self.post_update({"message": message})
        return message_id

    async def user_edits(self, chat_id: int, message_id: int, text: str) -> None:
        """User ``chat_id`` edits their message ``message_id`` to ``text``."""
        message = self._message(chat_id, message_id, text, self._started[chat_id])
        message["edit_date"] = int(time.time()) + 1
        await self.post_update({"edited_message": message})

    async def user_presses(self, chat_id: int, data: str, message_id: int) -> str:
        """User ``chat_id`` presses an inline button carrying ``data`` under ``message_id``; return the query id."""
        query_id = f"{chat_id}{next(self._updates)}"
        user = self._started[chat_id]
        await self.post_update({
            "callback_query": {
                "id": query_id, "from": user, "chat_instance": "-8301234567890",
                "message": self._message(chat_id, message_id, "(the message with the button)", self._bot_user()),
                "data": data,
            }
        })  # fmt: skip
        return query_id

    async def post_update(self, body: dict[str, Any]) -> int | None:
        """POST ``body`` (an update without ``update_id``) to the webhook; return the bridge's status.

        An update of a kind left out of ``allowed_updates`` is not sent (None), as on Telegram.
        """
        if not self.webhook_url or not self.secret_token:
            raise AssertionError("the bot has no webhook: call setWebhook first (carebridge telegram set-webhook)")
        kind = next(iter(body))
        if self.allowed_updates and kind not in self.allowed_updates:
            return None
        update = {"update_id": next(self._updates), **body}
        headers = {SECRET_HEADER: self.secret_token}
        async with (
            aiohttp.ClientSession() as session,
            session.post(self.webhook_url, json=update, headers=headers) as resp,
        ):
            text = await resp.text()
            self.webhook_answers.append((resp.status, text))
            if resp.status != 200:
                raise AssertionError(f"bridge answered {resp.status} to a Telegram update: {text}")
            return resp.status

    # -- the Bot API ------------------------------------------------------

    async def _handle(self, request: web.Request) -> web.Response:
        match = re.fullmatch(r"/bot([^/]+)/([A-Za-z]+)", request.path)
        if match is None or not _TOKEN.match(match.group(1)):
            return _error(404, "Not Found")
        token, method = match.groups()
        if token != self.token or self._revoked:
            return _error(401, "Unauthorized")
        handler = {"getme": self._get_me, "sendmessage": self._send_message, "setwebhook": self._set_webhook}.get(
            method.lower()  # "All methods in the Bot API are case-insensitive."
        )
        if handler is None:
            return _error(404, "Not Found")
        self.calls.append(method)
        scripted = self._script.pop(0) if self._script else None
        if scripted is not None:
            return _scripted(scripted)
        params: dict[str, Any] = dict(request.query)
        if request.can_read_body:
            try:
                body = await request.json()
            except ValueError:
                return _error(400, "Bad Request: can't parse JSON")
            if not isinstance(body, dict):
                return _error(400, "Bad Request: request body must be a JSON object")
            params.update(body)
        return handler(params)

    def _get_me(self, params: dict[str, Any]) -> web.Response:
        return _ok(self._bot_user())

    def _send_message(self, params: dict[str, Any]) -> web.Response:
        chat_id = params.get("chat_id")
        if isinstance(chat_id, str) and re.fullmatch(r"-?\d+", chat_id):
            chat_id = int(chat_id)
        if isinstance(chat_id, bool) or not isinstance(chat_id, int):
            return _error(400, "Bad Request: chat_id is empty" if chat_id is None else "Bad Request: chat not found")
        if chat_id not in self._started:
            return _error(400, "Bad Request: chat not found")
        if chat_id in self._blocked:
            return _error(403, "Forbidden: bot was blocked by the user")
        text = params.get("text")
        if not isinstance(text, str) or not text.strip():
            return _error(400, "Bad Request: message text is empty")
        if len(text) > MAX_TEXT:
            return _error(400, "Bad Request: message is too long")
        reply_to: int | None = None
        reply = params.get("reply_parameters")
        if reply is not None:
            quoted = reply.get("message_id") if isinstance(reply, dict) else None
            if isinstance(quoted, bool) or not isinstance(quoted, int):
                return _error(400, "Bad Request: invalid reply parameters specified")
            if quoted in self._messages[chat_id]:
                reply_to = quoted
            elif not reply.get("allow_sending_without_reply"):
                return _error(400, "Bad Request: message to be replied not found")
        message_id = next(self._next_id[chat_id])
        self._messages[chat_id].add(message_id)
        self.sent.append(SentMessage(chat_id, message_id, text, reply_to))
        message = self._message(chat_id, message_id, text, self._bot_user())
        if reply_to is not None:
            message["reply_to_message"] = {"message_id": reply_to, "chat": message["chat"], "date": message["date"]}
        return _ok(message)

    def _set_webhook(self, params: dict[str, Any]) -> web.Response:
        url = params.get("url")
        if not isinstance(url, str):
            return _error(400, "Bad Request: bad webhook: Failed to resolve host: Name or service not known")
        parts = urlsplit(url)
        loopback = self.insecure_loopback and parts.hostname == "127.0.0.1"
        if parts.scheme != "https" and not loopback:
            return _error(400, "Bad Request: bad webhook: An HTTPS URL must be provided for webhook")
        if (parts.port or 443) not in WEBHOOK_PORTS and not loopback:
            return _error(400, "Bad Request: bad webhook: Webhook can be set up only on ports 80, 88, 443 or 8443")
        secret = params.get("secret_token")
        if secret is not None and (not isinstance(secret, str) or not _SECRET.match(secret)):
            return _error(400, "Bad Request: secret token contains unallowed characters")
        allowed = params.get("allowed_updates")
        if allowed is not None and (not isinstance(allowed, list) or not all(isinstance(a, str) for a in allowed)):
            return _error(400, "Bad Request: can't parse allowed updates")
        self.webhook = params
        self.webhook_url = url
        self.secret_token = secret
        self.allowed_updates = allowed
        return web.json_response({"ok": True, "result": True, "description": "Webhook was set"})

    # -- shapes -----------------------------------------------------------

    def _bot_user(self) -> dict[str, Any]:
        return {
            "id": self.bot_id, "is_bot": True, "first_name": "Carebridge Test", "username": "carebridge_test_bot",
            "can_join_groups": True, "can_read_all_group_messages": False, "supports_inline_queries": False,
        }  # fmt: skip

    def _message(self, chat_id: int, message_id: int, text: str, sender: dict[str, Any]) -> dict[str, Any]:
        user = self._started.get(chat_id, {"first_name": "Ann"})
        chat = {"id": chat_id, "type": "private", "first_name": user["first_name"]}
        if "last_name" in user:
            chat["last_name"] = user["last_name"]
        return {"message_id": message_id, "from": sender, "chat": chat, "date": int(time.time()), "text": text}


def _ok(result: object) -> web.Response:
    return web.json_response({"ok": True, "result": result})


def _error(status: int, description: str, retry_after: int | None = None) -> web.Response:
    body: dict[str, Any] = {"ok": False, "error_code": status, "description": description}
    if retry_after is not None:
        body["parameters"] = {"retry_after": retry_after}
    return web.json_response(body, status=status)


def _scripted(failure: Failure) -> web.Response:
    if not failure.json:
        return web.Response(status=failure.status, text=f"<html><body>{failure.description}</body></html>")
    return _error(failure.status, failure.description, failure.retry_after)
