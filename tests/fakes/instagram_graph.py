"""A fake Instagram messaging API (Instagram API with Instagram Login) that refuses what Meta refuses.

Usage with pytest-aiohttp::

    graph = FakeInstagramGraph(ig_user_id="17841400000000001", token="ig-token", app_secret="s")
    server = await aiohttp_server(graph.app)
    section["graph_url"] = graph.graph_url(server)       # .../v25.0
    graph.customer_wrote("1111111111111111")             # now; or ts=epoch seconds
    ...                                                  # run the code under test
    assert graph.texts_to("1111111111111111") == ["hello"]

Routes: ``POST /{version}/{ig_user_id}/messages`` and ``POST /{version}/me/messages``
(the two documented send paths). What it enforces, each refusal with Meta's
own error body (plugins/instagram/README.md, "Facts"):

- the Instagram User access token as ``Authorization: Bearer`` (an
  ``access_token`` query parameter is accepted too) → otherwise 401, code 190;
- the right account id in the path → otherwise 400, code 100 / 33;
- a JSON object with ``recipient.id`` and exactly one of ``message`` (with
  ``text`` or ``attachment``) or ``sender_action`` → otherwise 400, code 100;
- ``messaging_type`` RESPONSE | UPDATE | MESSAGE_TAG, and ``tag`` HUMAN_AGENT
  with MESSAGE_TAG only → otherwise 400, code 100;
- ``text`` of 1..1000 characters and at most 1000 UTF-8 bytes → otherwise 400, code 100;
- the window per recipient, from :meth:`customer_wrote`: an IGSID that never
  wrote → 400, 100 / 2534014; after 24 h only MESSAGE_TAG + HUMAN_AGENT is
  accepted, after 7 days nothing → 400, 10 / 2534022.

Scripted failures: :meth:`fail_next` queues ``n`` refusals with a given code
(answered before any check but the token); ``after=k`` lets ``k`` requests
through first; ``code=None`` answers ``status`` with a plain-text body, as a
proxy in front of the API would.

Webhooks: with ``webhook_url`` set, :meth:`send_inbound` posts a text message
(optionally quoting a message or replying to a story), signed with
``app_secret`` as Meta signs, and opens that customer's window.

Recorded: ``sent`` holds each accepted message body (with the ``message_id``
the fake answered under ``"_message_id"``), ``actions`` each accepted sender
action, ``requests`` every body that reached the route, ``auth`` how each
request carried the token (``"bearer"``, ``"query"`` or ``"none"``).
"""

from __future__ import annotations

import itertools
import json
import time
from dataclasses import dataclass
from typing import Any

import aiohttp
from aiohttp import web
from aiohttp.test_utils import TestServer

from carebridge_meta import signed_body

STANDARD_WINDOW = 24 * 3600.0
HUMAN_AGENT_WINDOW = 7 * 24 * 3600.0
MAX_TEXT = 1000
MESSAGING_TYPES = ("RESPONSE", "UPDATE", "MESSAGE_TAG")
SENDER_ACTIONS = ("typing_on", "typing_off", "mark_seen")

# Meta's wording for each code; (status, message, subcode, transient).
_KNOWN: dict[int, tuple[int, str, int | None, bool]] = {
    1: (500, "An unknown error has occurred.", None, True),
    2: (500, "An unexpected error has occurred. Please retry your request later.", None, True),
    4: (400, "(#4) Application request limit reached", None, True),
    10: (400, "(#10) This message is sent outside of allowed window.", 2534022, False),
    17: (400, "(#17) User request limit reached", None, True),
    32: (400, "(#32) Page request limit reached", None, True),
    100: (400, "(#100) No matching user found", 2534014, False),
    190: (401, "Invalid OAuth access token - Cannot parse access token", None, False),
    551: (400, "(#551) This person isn't available right now.", 1545041, False),
    613: (400, "(#613) Calls to this api have exceeded the rate limit.", None, True),
}


@dataclass(frozen=True, slots=True)
class ScriptedError:
    """One refusal queued by :meth:`FakeInstagramGraph.fail_next`."""

    code: int | None
    subcode: int | None
    status: int
    message: str


def error_body(code: int, message: str, subcode: int | None = None, *, transient: bool = False) -> dict[str, Any]:
    """Return a Graph error envelope as Meta writes it."""
    error: dict[str, Any] = {"message": message, "type": "OAuthException", "code": code, "fbtrace_id": "AIgFakeTrace1"}
    if subcode is not None:
        error["error_subcode"] = subcode
    if transient:
        error["is_transient"] = True
    return {"error": error}


class FakeInstagramGraph:
    """An aiohttp app standing in for ``graph.instagram.com`` (messaging only).

    :param ig_user_id: the professional account whose ``/messages`` edge exists.
    :param token: the access token it accepts.
    :param app_secret: the secret its webhooks are signed with.
    """

    def __init__(
        self,
        ig_user_id: str = "17841400000000001",
        token: str = "test-ig-token",
        app_secret: str = "test-ig-app-secret",
        version: str = "v25.0",
    ) -> None:
        self.ig_user_id = ig_user_id
        self.token = token
        self.app_secret = app_secret
        self.version = version
        self.webhook_url: str | None = None
        self.sent: list[dict[str, Any]] = []
        self.actions: list[dict[str, Any]] = []
        self.requests: list[Any] = []
        self.auth: list[str] = []
        self.last_wrote: dict[str, float] = {}
        self._script: list[ScriptedError | None] = []  # None: let one request through
        self._ids = itertools.count(1)
        self._mids = itertools.count(1)
        self.app = web.Application()
        self.app.router.add_post("/{version:v\\d+\\.\\d+}/{node}/messages", self._messages)

    # -- test controls ----------------------------------------------------

    def graph_url(self, server: TestServer) -> str:
        """The ``graph_url`` for a channel talking to this fake served by ``server``."""
        return str(server.make_url(f"/{self.version}"))

    def customer_wrote(self, igsid: str, ts: float | None = None) -> None:
        """Record that ``igsid`` last wrote to the account at ``ts`` (default: now)."""
        self.last_wrote[igsid] = time.time() if ts is None else ts

    def fail_next(
        self,
        n: int = 1,
        code: int | None = 2,
        subcode: int | None = None,
        status: int | None = None,
        message: str | None = None,
        after: int = 0,
    ) -> None:
        """Refuse ``n`` authenticated requests with Meta's error ``code``, after ``after`` others."""
        default = (502 if code is None else 400, f"(#{code}) Scripted error", None, False)
        known = _KNOWN.get(code, default) if code is not None else default
        scripted = ScriptedError(
            code=code,
            subcode=subcode if subcode is not None else known[2],
            status=status if status is not None else known[0],
            message=message if message is not None else known[1],
        )
        self._script.extend([None] * after + [scripted] * n)

    def texts_to(self, igsid: str) -> list[str]:
        """Return the texts accepted for ``igsid``, in order."""
        return [b["message"]["text"] for b in self.sent if b["recipient"]["id"] == igsid and "text" in b["message"]]

    async def send_inbound(
        self, igsid: str, text: str, *, mid: str | None = None, reply_to: str | None = None, ts: float | None = None
    ) -> str:
        """POST a signed text-message webhook from ``igsid`` to ``webhook_url``; return its mid.

        Opens the customer's window, as a real message does. Passing an earlier
        ``mid`` again is Meta redelivering that message.
        """
        if not self.webhook_url:
            raise AssertionError("set fake.webhook_url before posting webhooks")
        when = time.time() if ts is None else ts
        now_ms = int(when * 1000)
        mid = mid or f"aWdfZAG1faXRlbToxOklHTWVzc2FnZAUlE{next(self._mids):06d}"
        message: dict[str, Any] = {"mid": mid, "text": text}
        if reply_to:
            message["reply_to"] = {"mid": reply_to}
        payload = {
            "object": "instagram",
            "entry": [{"id": self.ig_user_id, "time": now_ms, "messaging": [
                {"sender": {"id": igsid}, "recipient": {"id": self.ig_user_id}, "timestamp": now_ms, "message": message}
            ]}],
        }  # fmt: skip
        self.customer_wrote(igsid, when)
        body, headers = signed_body(payload, self.app_secret)
        async with (
            aiohttp.ClientSession() as session,
            session.post(self.webhook_url, data=body, headers=headers) as resp,
        ):
            if resp.status != 200:
                raise AssertionError(f"bridge answered {resp.status} to an Instagram webhook: {await resp.text()}")
        return mid

    # -- the route --------------------------------------------------------

    async def _messages(self, request: web.Request) -> web.Response:
        try:
            body: Any = json.loads(await request.read())
        except ValueError:
            body = None
        self.requests.append(body)
        header = request.headers.get("Authorization", "")
        via = "bearer" if header.startswith("Bearer ") else "query" if "access_token" in request.query else "none"
        self.auth.append(via)
        if not self._token_ok(request):
            return self._refuse(401, 190, "Invalid OAuth access token - Cannot parse access token")
        scripted = self._script.pop(0) if self._script else None
        if scripted is not None:
            return self._scripted(scripted)
        node = request.match_info["node"]
        if node not in (self.ig_user_id, "me"):
            return self._refuse(400, 100, f"Unsupported post request. Object with ID '{node}' does not exist.", 33)
        problem = _shape_problem(body)
        if problem:
            return self._refuse(400, 100, f"(#100) {problem}")
        recipient = body["recipient"]["id"]
        if recipient not in self.last_wrote:
            return self._refuse(400, 100, "(#100) No matching user found", 2534014)
        age = time.time() - self.last_wrote[recipient]
        tagged = body.get("messaging_type") == "MESSAGE_TAG"
        if age >= HUMAN_AGENT_WINDOW or (age >= STANDARD_WINDOW and not tagged):
            return self._refuse(400, 10, "(#10) This message is sent outside of allowed window.", 2534022)
        if "sender_action" in body:
            self.actions.append(body)
            return web.json_response({"recipient_id": recipient})
        message_id = f"aWdfZAG1faXRlbToxOklHTWVzc2FnZAUlEOjE3O{next(self._ids):06d}"
        self.sent.append({**body, "_message_id": message_id})
        return web.json_response({"recipient_id": recipient, "message_id": message_id})

    @staticmethod
    def _scripted(scripted: ScriptedError) -> web.Response:
        if scripted.code is None:
            return web.Response(status=scripted.status, text="Bad Gateway")
        transient = _KNOWN.get(scripted.code, (0, "", None, False))[3]
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
    """Return what Meta would object to in a send body, or None."""
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
    messaging_type = body.get("messaging_type", "RESPONSE")
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
        if len(text) > MAX_TEXT or len(text.encode("utf-8")) > MAX_TEXT:
            return "Length of param message[text] must be less than or equal to 1000"
    return None
