"""A fake Messenger Send API that refuses what Meta refuses.

Usage with pytest-aiohttp::

    graph = FakeMessengerGraph(page_id="100000000000001", token="page-token")
    server = await aiohttp_server(graph.app)
    section["graph_url"] = str(server.make_url("/v25.0"))   # any vNN.N prefix works
    graph.customer_wrote("2000000000000001")                # now; or ts=epoch seconds
    ...                                                     # run the code under test
    assert graph.texts_to("2000000000000001") == ["hello"]

Routes: ``POST /{version}/{page_id}/messages`` and ``POST /{page_id}/messages``
(``/me/messages`` too). What it enforces, each refusal with Meta's own error
body (PROTOCOLS §0.4, §1.6):

- the Page token, as ``Authorization: Bearer`` or ``access_token`` query
  parameter → otherwise 401, code 190;
- the right Page id in the path → otherwise 400, code 100 / 33;
- a JSON object with ``recipient.id`` and exactly one of ``message`` (with
  ``text`` or ``attachment``) or ``sender_action`` → otherwise 400, code 100;
- ``messaging_type`` RESPONSE | UPDATE | MESSAGE_TAG, and ``tag`` HUMAN_AGENT
  with MESSAGE_TAG only → otherwise 400, code 100;
- ``text`` ≤ 2000 characters and ``metadata`` ≤ 1000 → otherwise 400, code 100;
- the window per recipient, from :meth:`customer_wrote`: a PSID that never
  wrote → 400, 100 / 2018001; after 24 h only MESSAGE_TAG + HUMAN_AGENT is
  accepted, after 7 days nothing → 400, 10 / 2018278.

Scripted failures: :meth:`fail_next` queues ``n`` refusals with a given code
(the body is Meta's for that code), answered before any check but the token;
``after=k`` lets ``k`` requests through first (to fail the middle of a split);
``code=None`` answers ``status`` with a plain-text body, as a proxy in front
of the API would.

Lost answers: :meth:`drop_answers` makes the next ``n`` accepted messages
end with the connection closed instead of the answer (the message is kept);
``answer_delay`` seconds pass between accepting and answering. Echoes: with
``webhook_url`` and ``app_secret`` set and ``echo_webhooks = True``, every
accepted message is followed (after ``echo_delay``) by the signed
``message_echoes`` event Meta sends the Page: ``is_echo``, ``app_id``,
``mid`` and the message's ``metadata``.

Recorded: ``sent`` holds each accepted message request body (with the
``message_id`` the fake answered added under ``"_message_id"``), ``actions``
each accepted sender action body, ``requests`` every body that reached the
route, accepted or not; ``urls`` the path and query of each request and
``auth`` how each carried the token (``"bearer"``, ``"query"`` or ``"none"``).
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import itertools
import json
import time
from dataclasses import dataclass
from typing import Any

import aiohttp
from aiohttp import web

STANDARD_WINDOW = 24 * 3600.0
HUMAN_AGENT_WINDOW = 7 * 24 * 3600.0
MESSAGING_TYPES = ("RESPONSE", "UPDATE", "MESSAGE_TAG")
SENDER_ACTIONS = ("typing_on", "typing_off", "mark_seen")

# Meta's wording for each code (PROTOCOLS §1.6); (status, message, subcode, type, transient).
_KNOWN: dict[int, tuple[int, str, int | None, str, bool]] = {
    1: (500, "An unknown error has occurred.", None, "OAuthException", True),
    2: (500, "An unexpected error has occurred. Please retry your request later.", None, "OAuthException", True),
    4: (400, "(#4) Application request limit reached", None, "OAuthException", True),
    10: (400, "(#10) This message is sent outside of allowed window.", 2018278, "OAuthException", False),
    17: (400, "(#17) User request limit reached", None, "OAuthException", True),
    32: (400, "(#32) Page request limit reached", None, "OAuthException", True),
    100: (400, "(#100) No matching user found", 2018001, "OAuthException", False),
    190: (401, "Invalid OAuth access token.", 1234567, "OAuthException", False),
    551: (400, "(#551) This person isn't available right now.", 1545041, "OAuthException", False),
    613: (400, "(#613) Calls to this api have exceeded the rate limit.", None, "OAuthException", True),
}


@dataclass(frozen=True, slots=True)
class ScriptedError:
    """One refusal queued by :meth:`FakeMessengerGraph.fail_next`."""

    code: int | None
    subcode: int | None
    status: int
    message: str


def error_body(code: int, message: str, subcode: int | None = None, *, transient: bool = False) -> dict[str, Any]:
    """Return a Graph error envelope as Meta writes it."""
    error: dict[str, Any] = {"message": message, "type": "OAuthException", "code": code, "fbtrace_id": "AFakeTrace01"}
    if subcode is not None:
        error["error_subcode"] = subcode
    if transient:
        error["is_transient"] = True
    return {"error": error}


class FakeMessengerGraph:
    """An aiohttp app standing in for ``graph.facebook.com`` (Send API only).

    :param page_id: the Page whose ``/messages`` edge exists.
    :param token: the Page access token it accepts.
    """

    def __init__(self, page_id: str = "100000000000001", token: str = "test-page-token") -> None:
        self.page_id = page_id
        self.token = token
        self.sent: list[dict[str, Any]] = []
        self.actions: list[dict[str, Any]] = []
        self.requests: list[Any] = []
        self.urls: list[str] = []
        self.auth: list[str] = []
        self.last_wrote: dict[str, float] = {}
        self._script: list[ScriptedError | None] = []  # None: let one request through
        self._ids = itertools.count(1)
        self.dropped: list[Any] = []  # held requests whose sender was gone when released
        self.held = 0  # requests waiting at the gate now
        self._gate = asyncio.Event()
        self._gate.set()
        self._drop = 0
        self.answer_delay = 0.0
        self.webhook_url: str | None = None
        self.app_secret: str | None = None
        self.echo_webhooks = False
        self.echo_delay = 0.05
        self.echo_answers: list[int] = []
        self._tasks: set[asyncio.Task[None]] = set()
        self.app = web.Application()
        self.app.on_cleanup.append(self._cleanup)
        for path in ("/{version:v\\d+\\.\\d+}/{node}/messages", "/{node}/messages"):
            self.app.router.add_post(path, self._messages)

    # -- test controls ----------------------------------------------------

    def customer_wrote(self, psid: str, ts: float | None = None) -> None:
        """Record that ``psid`` last wrote to the Page at ``ts`` (default: now)."""
        self.last_wrote[psid] = time.time() if ts is None else ts

    def fail_next(
        self,
        n: int = 1,
        code: int | None = 2,
        subcode: int | None = None,
        status: int | None = None,
        message: str | None = None,
        after: int = 0,
    ) -> None:
        """Refuse ``n`` authenticated requests with Meta's error ``code``, after ``after`` others.

        ``subcode``, ``status`` and ``message`` default to Meta's for that code.
        """
        default = (502 if code is None else 400, f"(#{code}) Scripted error", None, "OAuthException", False)
        known = _KNOWN.get(code, default) if code is not None else default
        scripted = ScriptedError(
            code=code,
            subcode=subcode if subcode is not None else known[2],
            status=status if status is not None else known[0],
            message=message if message is not None else known[1],
        )
        self._script.extend([None] * after + [scripted] * n)

    def drop_answers(self, n: int = 1) -> None:
        """Accept the next ``n`` messages, then close the connection instead of answering."""
        self._drop += n

    async def drain(self) -> None:
        """Wait for the echo webhooks the fake is still posting."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks))

    def texts_to(self, psid: str) -> list[str]:
        """Return the texts accepted for ``psid``, in order."""
        return [b["message"]["text"] for b in self.sent if b["recipient"]["id"] == psid and "text" in b["message"]]

    # -- the route --------------------------------------------------------

    def hold(self) -> None:
        """Keep message requests waiting, unanswered and unrecorded, until :meth:`release`.

        A request whose client is gone by then (its process was killed) is
        dropped: the platform never had it, as when a sender dies with the
        request still on the wire.
        """
        self._gate.clear()

    def release(self) -> None:
        """Let held requests through (those whose client vanished are dropped)."""
        self._gate.set()

    async def _messages(self, request: web.Request) -> web.Response:
        try:
            body: Any = await request.json()
        except ValueError:
            body = None
        if not self._gate.is_set():
            self.held += 1
            try:
                await self._gate.wait()
            except asyncio.CancelledError:  # the server noticed the sender gone and cancelled us
                self.dropped.append(body)
                raise
            finally:
                self.held -= 1
            transport = request.transport
            if transport is None or transport.is_closing():
                self.dropped.append(body)
                return web.Response(status=499)
        self.requests.append(body)
        self.urls.append(str(request.rel_url))
        header = request.headers.get("Authorization", "")
        via = "bearer" if header.startswith("Bearer ") else "query" if "access_token" in request.query else "none"
        self.auth.append(via)
        if not self._token_ok(request):
            return self._refuse(401, 190, "Invalid OAuth access token.", 1234567)
        scripted = self._script.pop(0) if self._script else None
        if scripted is not None:
            return self._scripted(scripted)
        node = request.match_info["node"]
        if node not in (self.page_id, "me"):
            return self._refuse(400, 100, f"Unsupported post request. Object with ID '{node}' does not exist.", 33)
        problem = _shape_problem(body)
        if problem:
            return self._refuse(400, 100, f"(#100) {problem}")
        recipient = body["recipient"]["id"]
        if recipient not in self.last_wrote:
            return self._refuse(400, 100, "(#100) No matching user found", 2018001)
        age = time.time() - self.last_wrote[recipient]
        tagged = body.get("messaging_type") == "MESSAGE_TAG"
        if age >= HUMAN_AGENT_WINDOW or (age >= STANDARD_WINDOW and not tagged):
            return self._refuse(400, 10, "(#10) This message is sent outside of allowed window.", 2018278)
        if "sender_action" in body:
            self.actions.append(body)
            return web.json_response({"recipient_id": recipient})
        message_id = f"m_fake{next(self._ids):06d}"
        self.sent.append({**body, "_message_id": message_id})
        if self.echo_webhooks:
            task = asyncio.get_running_loop().create_task(self._echo(body, message_id))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        if self.answer_delay:
            await asyncio.sleep(self.answer_delay)
        if self._drop:
            self._drop -= 1
            assert request.transport is not None
            request.transport.close()  # accepted, and the answer never reaches the client
        return web.json_response({"recipient_id": recipient, "message_id": message_id})

    async def _echo(self, body: dict[str, Any], message_id: str) -> None:
        """Post the ``message_echoes`` event of an accepted message, signed as Meta signs it."""
        await asyncio.sleep(self.echo_delay)
        if not self.webhook_url or not self.app_secret:
            raise AssertionError("set webhook_url and app_secret for echo webhooks")
        now_ms = int(time.time() * 1000)
        message = {"is_echo": True, "app_id": 1517776481860111, "mid": message_id, **body["message"]}
        payload = {"object": "page", "entry": [{"id": self.page_id, "time": now_ms, "messaging": [{
            "sender": {"id": self.page_id}, "recipient": {"id": body["recipient"]["id"]},
            "timestamp": now_ms, "message": message,
        }]}]}  # fmt: skip
        raw = json.dumps(payload).encode()
        signature = "sha256=" + hmac.new(self.app_secret.encode(), raw, hashlib.sha256).hexdigest()
        headers = {"Content-Type": "application/json", "X-Hub-Signature-256": signature}
        async with (
            aiohttp.ClientSession() as session,
            session.post(self.webhook_url, data=raw, headers=headers) as resp,
        ):
            self.echo_answers.append(resp.status)

    async def _cleanup(self, app: web.Application) -> None:
        await self.drain()

    @staticmethod
    def _scripted(scripted: ScriptedError) -> web.Response:
        if scripted.code is None:
            return web.Response(status=scripted.status, text="Bad Gateway")
        transient = _KNOWN.get(scripted.code, (0, "", None, "", False))[4]
        body = error_body(scripted.code, scripted.message, scripted.subcode, transient=transient)
        return web.json_response(body, status=scripted.status)

    def _token_ok(self, request: web.Request) -> bool:
        header = request.headers.get("Authorization", "")
        if header.startswith("Bearer ") and header[len("Bearer ") :] == self.token:
            return True
        return request.query.get("access_token") == self.token

    @staticmethod
    def _refuse(status: int, code: int, message: str, subcode: int | None = None) -> web.Response:
        return web.json_response(error_body(code, message, subcode), status=status)


def _shape_problem(body: object) -> str | None:
    """Return what Meta would object to in a Send API body, or None."""
    if not isinstance(body, dict):
        return "The request body must be a JSON object"
    recipient = body.get("recipient")
    if not isinstance(recipient, dict) or not isinstance(recipient.get("id"), str) or not recipient["id"]:
        return "param recipient[id] must be a non-empty string"
    has_message, has_action = "message" in body, "sender_action" in body
    if has_message == has_action:
        return "Exactly one of message or sender_action must be set"
    if has_action:
        if body["sender_action"] not in SENDER_ACTIONS:
            return f"param sender_action must be one of {', '.join(SENDER_ACTIONS)}"
        return None
    messaging_type = body.get("messaging_type")
    if messaging_type not in MESSAGING_TYPES:
        return f"param messaging_type must be one of {', '.join(MESSAGING_TYPES)}"
    tag = body.get("tag")
    if messaging_type == "MESSAGE_TAG" and tag != "HUMAN_AGENT":
        return "param tag must be HUMAN_AGENT for a human agent reply"
    if messaging_type != "MESSAGE_TAG" and tag is not None:
        return "param tag is only allowed with messaging_type MESSAGE_TAG"
    message = body["message"]
    if not isinstance(message, dict):
        return "param message must be an object"
    has_text, has_attachment = "text" in message, "attachment" in message
    if has_text == has_attachment:
        return "Text or attachment must be set"
    if has_text:
        text = message["text"]
        if not isinstance(text, str) or not text:
            return "param message[text] must be a non-empty UTF-8 string"
        if len(text) > 2000:
            return "Length of param message[text] must be less than or equal to 2000"
    metadata = message.get("metadata")
    if metadata is not None and (not isinstance(metadata, str) or len(metadata) > 1000):
        return "Length of param message[metadata] must be less than or equal to 1000"
    return None
