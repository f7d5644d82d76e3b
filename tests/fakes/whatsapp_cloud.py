"""A fake WhatsApp Business Cloud API that rejects what Meta would reject.

Serve ``fake.app`` with pytest-aiohttp's ``aiohttp_server`` and point the
channel's ``graph_url`` at ``fake.graph_url(server)``. It enforces the parts of
the contract (shared/PROTOCOLS.md §0.4, §2.5-2.9) that a bridge can get wrong:

* ``Authorization: Bearer <token>`` on every call, else HTTP 401 with code 190;
* ``POST /{version}/{phone_number_id}/messages``: an unknown number id is
  400 code 100/subcode 33; the body must have ``messaging_product: whatsapp``,
  ``to`` (digits, an optional ``+``), ``type`` ``text`` (``text.body`` of 1..4096
  characters, else 400 code 100) or ``template`` (``template.name`` among
  ``templates``, else 132001; ``language.code`` required), optional
  ``context.message_id``; or a read mark ``{"status": "read", "message_id"}``
  (an id that is not a ``wamid.`` is 131009);
* the 24-hour window per recipient, opened by ``user_wrote(number, ts)`` (or
  ``send_inbound``): free text to a closed window is refused as
  ``window_mode`` says, ``"http"`` (HTTP 400 code 131047) or ``"status"``
  (HTTP 200 and a wamid, then a ``failed`` status with 131047 POSTed, signed
  with ``app_secret``, to ``webhook_url``). Templates pass in both modes;
* ``GET /{version}/{media_id}`` → ``{url, mime_type, sha256 (hex), file_size
  (string), id}`` while the id is younger than 7 days (webhook media ids
  expire then, PROTOCOLS §2.7; afterwards 400 code 100 as for an unknown
  id; ``add_media(..., received_at=)`` backdates one); the URL serves the bytes only with the bearer header
  (401 otherwise) and only for ``url_ttl`` seconds (404 afterwards);
  ``expire_next_urls(n)`` hands out n URLs that are already expired;
  ``media_url_base`` (default: this server) names where those URLs point,
  and ``redirect_downloads_to`` makes a download answer 302 to that base
  (the same ``/media-download/...`` path, which then serves);
* ``GET /{version}/{phone_number_id}`` → the number's profile (used by start()).

Scripted failures: ``fail_next(*items)`` queues answers for the next Graph
calls (messages, media lookups, the number profile; not downloads), in
order. An item is a Meta error code (``130429``, ``131056``, ``80007``, ``1``,
``2``, ``4``, ``131047``, ``190``, ``100``, ``131026``; each answered with Meta's
error body and usual HTTP status), a ``FakeError`` for anything else (e.g.
``FakeError(status=502, code=None)`` for a non-JSON gateway error),
``"disconnect"`` to drop the connection without an answer (nothing
accepted), ``"accept_drop"`` to accept the message (recorded, statuses
follow) and then drop the connection without an answer, as a platform whose
answer is lost in transit, or ``"ok"`` to answer that call normally
(``fail_next("ok", 130429)``: the second call fails). ``answer_delay``
seconds pass between accepting a message and answering (a slow platform).

Recorded: ``sent`` (``SentMessage`` accepted and delivered, in order),
``failed`` (accepted, then failed by status webhook), ``read_marks`` (wamids),
``media_lookups`` (count), ``downloads`` (media ids served), ``calls``
(``"METHOD path"`` of every request a handler served) and ``requests``
(``"METHOD path?query"`` of every request that reached the server, routed or
not: a request built from a crafted id shows up here).

Driving the bridge: set ``webhook_url`` (the bridge's ``/webhooks/whatsapp``),
then ``await send_inbound("+15550002222", "hello", name="Ann")`` posts a signed
text webhook and opens that number's window; ``await post_statuses([...])``
posts raw status items; with ``status_webhooks = True`` every accepted message
is followed by ``sent`` and ``delivered`` statuses (after ``status_delay``
seconds, so the bridge has the send answer first), carrying the message's
``biz_opaque_callback_data`` (at most 512 characters, else 400 code 100) as
Meta does. A status webhook the bridge does not answer 200 (or that cannot
connect) is posted again every ``webhook_retry_every`` seconds, up to
``webhook_retries`` times, as Meta retries. ``await drain()`` waits
for webhooks the fake is still posting; ``webhook_answers`` keeps the
bridge's HTTP status for each.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import itertools
import json
import re
import secrets
import time
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from aiohttp import web
from yarl import URL

from tests.fakes.whatsapp_errors import FakeError, error_response, known_error

__all__ = ["FakeError", "FakeWhatsAppCloud", "SentMessage", "known_error"]

WINDOW = 24 * 3600
#: Set by a scripted ``"accept_drop"``: accept this request's message, then drop the connection.
DROP_ANSWER = web.RequestKey("drop_answer", bool)
MAX_TEXT = 4096
MEDIA_ID_LIFETIME = 7 * 24 * 3600


@dataclass
class SentMessage:
    """A message the fake accepted."""

    id: str
    to: str
    type: str
    text: str | None
    template: str | None
    language: str | None
    context: str | None
    payload: dict[str, Any] = field(repr=False)


@dataclass
class _Media:
    data: bytes
    mime: str
    sha256: str
    received_at: float


class FakeWhatsAppCloud:
    """The fake Cloud API; see the module docstring for its contract."""

    def __init__(
        self,
        *,
        token: str = "test-token",
        phone_number_id: str = "400000000000001",
        app_secret: str = "test-app-secret",
        version: str = "v25.0",
        templates: tuple[str, ...] = ("hello_world",),
        window_mode: str = "http",
        url_ttl: float = 300.0,
    ) -> None:
        self.token = token
        self.phone_number_id = phone_number_id
        self.app_secret = app_secret
        self.version = version
        self.templates = set(templates)
        self.window_mode = window_mode
        self.url_ttl = url_ttl
        self.media_url_base: str | None = None
        self.redirect_downloads_to: str | None = None
        self.webhook_url: str | None = None
        self.status_webhooks = False
        self.status_delay = 0.05  # statuses follow the send answer, as on the real platform
        self.answer_delay = 0.0
        self.webhook_retries = 0
        self.webhook_retry_every = 0.5
        self.sent: list[SentMessage] = []
        self.failed: list[SentMessage] = []
        self.read_marks: list[str] = []
        self.media_lookups = 0
        self.downloads: list[str] = []
        self.calls: list[str] = []
        self.requests: list[str] = []
        self.webhook_answers: list[int] = []
        self._last_inbound: dict[str, float] = {}
        self._script: list[FakeError | str] = []
        self._media: dict[str, _Media] = {}
        self._urls: dict[str, tuple[str, float]] = {}
        self._expire_next = 0
        self._ids = itertools.count(1)
        self._tasks: set[asyncio.Task[None]] = set()
        self._session: aiohttp.ClientSession | None = None
        self.app = web.Application(middlewares=[self._record])
        self.app.router.add_post("/{version}/{node}/messages", self._messages)
        self.app.router.add_get("/media-download/{key}", self._download)
        self.app.router.add_get("/{version}/{node}", self._node)
        self.app.on_cleanup.append(self._cleanup)

    # -- test controls -------------------------------------------------------

    def graph_url(self, server: Any) -> str:
        """The ``graph_url`` for a channel talking to this fake served by ``server``."""
        return str(server.make_url(f"/{self.version}"))

    def user_wrote(self, number: str, ts: float | None = None) -> None:
        """Record that ``number`` wrote to the business at ``ts`` (now by default)."""
        self._last_inbound[_digits(number)] = time.time() if ts is None else ts

    def fail_next(self, *items: int | FakeError | str) -> None:
        """Queue scripted answers for the next Graph calls, in order."""
        for item in items:
            self._script.append(known_error(item) if isinstance(item, int) else item)

    def add_media(
        self, data: bytes, mime: str = "image/jpeg", *, sha256: str | None = None, received_at: float | None = None
    ) -> str:
        """Make ``data`` downloadable; return its media id.

        ``sha256`` overrides the announced digest; ``received_at`` (default
        now) is when its webhook arrived: the id expires 7 days later.
        """
        media_id = str(500000000000000 + next(self._ids))
        digest = sha256 or hashlib.sha256(data).hexdigest()
        self._media[media_id] = _Media(data, mime, digest, time.time() if received_at is None else received_at)
        return media_id

    def expire_next_urls(self, count: int) -> None:
        """The next ``count`` media URLs handed out are already expired."""
        self._expire_next += count

    async def send_inbound(self, number: str, text: str, *, name: str | None = None, ts: float | None = None) -> str:
        """POST a signed text webhook from ``number`` to ``webhook_url``; return its wamid.

        Opens the number's window, as a real message would.
        """
        wa_id = _digits(number)
        when = time.time() if ts is None else ts
        wamid = self._wamid()
        value: dict[str, Any] = {
            "messaging_product": "whatsapp",
            "metadata": {"display_phone_number": "15550001000", "phone_number_id": self.phone_number_id},
            "contacts": [{"profile": {"name": name}, "wa_id": wa_id}] if name else [{"wa_id": wa_id}],
            "messages": [
                {"from": wa_id, "id": wamid, "timestamp": str(int(when)), "type": "text", "text": {"body": text}}
            ],
        }
        self.user_wrote(wa_id, when)
        status = await self._post_webhook(value)
        if status != 200:
            raise AssertionError(f"bridge answered {status} to an inbound webhook")
        return wamid

    async def post_statuses(self, statuses: list[dict[str, Any]]) -> int:
        """POST a signed ``statuses`` webhook; return the bridge's HTTP status."""
        value = {
            "messaging_product": "whatsapp",
            "metadata": {"display_phone_number": "15550001000", "phone_number_id": self.phone_number_id},
            "statuses": statuses,
        }
        return await self._post_webhook(value)

    async def drain(self) -> None:
        """Wait for the status webhooks the fake is still posting."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks))

    # -- handlers ------------------------------------------------------------

    async def _messages(self, request: web.Request) -> web.StreamResponse:
        self.calls.append(f"POST {request.path}")
        refused = self._check_auth(request) or self._scripted(request)
        if refused is not None:
            return refused
        if request.match_info["version"] != self.version or request.match_info["node"] != self.phone_number_id:
            return _invalid("(#100) Unsupported post request. Object does not exist", subcode=33)
        try:
            body = json.loads(await request.read())
        except (UnicodeDecodeError, json.JSONDecodeError):
            return error_response(FakeError(400, 100, "(#100) The request body is not valid JSON"))
        if not isinstance(body, dict) or body.get("messaging_product") != "whatsapp":
            return error_response(FakeError(400, 100, "(#100) The parameter messaging_product is required."))
        if body.get("status") == "read":
            return self._mark_read(body)
        response = self._send(body)
        if response.status == 200 and self.answer_delay:
            await asyncio.sleep(self.answer_delay)
        if response.status == 200 and request.get(DROP_ANSWER):
            assert request.transport is not None
            request.transport.close()  # accepted, and the answer never reaches the client
        return response

    def _mark_read(self, body: dict[str, Any]) -> web.Response:
        message_id = body.get("message_id")
        if not isinstance(message_id, str) or not message_id.startswith("wamid."):
            return error_response(FakeError(400, 131009, "(#131009) Parameter value is not valid"))
        self.read_marks.append(message_id)
        return web.json_response({"success": True})

    def _send(self, body: dict[str, Any]) -> web.Response:
        to = body.get("to")
        if not isinstance(to, str) or not re.fullmatch(r"\+?[1-9]\d{6,14}", to):
            return error_response(FakeError(400, 100, "(#100) Invalid parameter: to"))
        if body.get("recipient_type", "individual") != "individual":
            return error_response(FakeError(400, 100, "(#100) Invalid parameter: recipient_type"))
        context = body.get("context")
        if context is not None and not (isinstance(context, dict) and isinstance(context.get("message_id"), str)):
            return error_response(FakeError(400, 100, "(#100) Invalid parameter: context.message_id"))
        callback = body.get("biz_opaque_callback_data")
        if callback is not None and not (isinstance(callback, str) and len(callback) <= 512):
            return _invalid("(#100) Param biz_opaque_callback_data must be a string of at most 512 characters")
        kind = body.get("type", "text")
        wa_id = _digits(to)
        record = SentMessage(
            id=self._wamid(),
            to=to,
            type=kind,
            text=None,
            template=None,
            language=None,
            context=context["message_id"] if context else None,
            payload=body,
        )
        if kind == "text":
            text = body.get("text")
            if not isinstance(text, dict) or not isinstance(text.get("body"), str) or not text["body"].strip():
                return error_response(FakeError(400, 100, "(#100) The parameter text['body'] is required."))
            if len(text["body"]) > MAX_TEXT:
                return _invalid("(#100) Param text['body'] must be at most 4096 characters long.")
            if not isinstance(text.get("preview_url", False), bool):
                return error_response(FakeError(400, 100, "(#100) Param text['preview_url'] must be a boolean."))
            record.text = text["body"]
            if time.time() - self._last_inbound.get(wa_id, float("-inf")) >= WINDOW:
                if self.window_mode == "http":
                    return error_response(known_error(131047))
                self.failed.append(record)
                self._spawn(self._post_status(record, "failed"))
                return self._accepted(record)
        elif kind == "template":
            template = body.get("template")
            language = template.get("language") if isinstance(template, dict) else None
            if not isinstance(template, dict) or not isinstance(language, dict) or not language.get("code"):
                return _invalid("(#100) The parameter template['language']['code'] is required.")
            if template.get("name") not in self.templates:
                return _invalid("(#132001) Template name does not exist in the translation", code=132001)
            record.template, record.language = template["name"], language["code"]
        else:
            return error_response(FakeError(400, 131051, "(#131051) Unsupported message type"))
        self.sent.append(record)
        if self.status_webhooks:
            self._spawn(self._post_status(record, "sent", "delivered"))
        return self._accepted(record)

    def _accepted(self, record: SentMessage) -> web.Response:
        return web.json_response(
            {
                "messaging_product": "whatsapp",
                "contacts": [{"input": record.to, "wa_id": _digits(record.to)}],
                "messages": [{"id": record.id}],
            }
        )

    async def _node(self, request: web.Request) -> web.StreamResponse:
        self.calls.append(f"GET {request.path}")
        refused = self._check_auth(request) or self._scripted(request)
        if refused is not None:
            return refused
        node = request.match_info["node"]
        if request.match_info["version"] == self.version and node == self.phone_number_id:
            return web.json_response(
                {
                    "verified_name": "Test Business",
                    "display_phone_number": "+1 555-000-1000",
                    "quality_rating": "GREEN",
                    "id": node,
                }
            )
        media = self._media.get(node) if request.match_info["version"] == self.version else None
        if media is not None and time.time() - media.received_at >= MEDIA_ID_LIFETIME:
            media = None  # expired ids are answered like ids that never existed
        if media is None:
            return error_response(
                FakeError(
                    400, 100, f"(#100) Unsupported get request. Object with ID '{node}' does not exist", subcode=33
                )
            )
        self.media_lookups += 1
        key = secrets.token_urlsafe(16)
        expires = time.time() + self.url_ttl
        if self._expire_next:
            self._expire_next -= 1
            expires = 0.0
        self._urls[key] = (node, expires)
        base = URL(self.media_url_base) if self.media_url_base else request.url
        url = str(base.with_path(f"/media-download/{key}").with_query({"ext": "1"}))
        return web.json_response(
            {
                "messaging_product": "whatsapp",
                "url": url,
                "mime_type": media.mime,
                "sha256": media.sha256,
                "file_size": str(len(media.data)),
                "id": node,
            }
        )

    async def _download(self, request: web.Request) -> web.StreamResponse:
        self.calls.append(f"GET {request.path}")
        refused = self._check_auth(request)
        if refused is not None:
            return refused
        if self.redirect_downloads_to and "moved" not in request.query:
            target = URL(self.redirect_downloads_to).with_path(request.path).with_query({**request.query, "moved": "1"})
            raise web.HTTPFound(target)
        entry = self._urls.get(request.match_info["key"])
        if entry is None or time.time() >= entry[1]:
            return web.Response(status=404, text="Not Found")
        media = self._media[entry[0]]
        self.downloads.append(entry[0])
        return web.Response(body=media.data, content_type=media.mime)

    # -- helpers -------------------------------------------------------------

    @web.middleware
    async def _record(self, request: web.Request, handler: Any) -> web.StreamResponse:
        self.requests.append(f"{request.method} {request.path_qs}")
        response: web.StreamResponse = await handler(request)
        return response

    def _check_auth(self, request: web.Request) -> web.StreamResponse | None:
        if request.headers.get("Authorization") != f"Bearer {self.token}":
            return error_response(known_error(190))
        return None

    def _scripted(self, request: web.Request) -> web.StreamResponse | None:
        if not self._script:
            return None
        item = self._script.pop(0)
        if item == "ok":
            return None
        if item == "disconnect":
            assert request.transport is not None
            request.transport.close()
            return web.Response(status=500)
        if item == "accept_drop":
            request[DROP_ANSWER] = True
            return None
        assert isinstance(item, FakeError)
        return error_response(item)

    def _wamid(self) -> str:
        return f"wamid.FAKE{next(self._ids):08d}{secrets.token_hex(6).upper()}"

    def _spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _post_status(self, record: SentMessage, *kinds: str) -> None:
        await asyncio.sleep(self.status_delay)
        for kind in kinds:
            item: dict[str, Any] = {
                "id": record.id,
                "status": kind,
                "timestamp": str(int(time.time())),
                "recipient_id": _digits(record.to),
            }
            if "biz_opaque_callback_data" in record.payload:
                item["biz_opaque_callback_data"] = record.payload["biz_opaque_callback_data"]
            if kind == "failed":
                error = known_error(131047)
                item["errors"] = [
                    {
                        "code": 131047,
                        "title": "Re-engagement message",
                        "message": "Re-engagement message",
                        "error_data": {"details": error.details},
                    }
                ]
            self.webhook_answers.append(await self._post_until_taken([item]))

    async def _post_until_taken(self, statuses: list[dict[str, Any]]) -> int:
        """Post statuses; retry what the bridge did not take (``webhook_retries``), as Meta does."""
        status = 0
        for attempt in range(self.webhook_retries + 1):
            if attempt:
                await asyncio.sleep(self.webhook_retry_every)
            try:
                status = await self.post_statuses(statuses)
            except aiohttp.ClientError:
                status = 0
                if attempt == self.webhook_retries:
                    raise
            if status == 200:
                break
        return status

    async def _post_webhook(self, value: dict[str, Any]) -> int:
        if not self.webhook_url:
            raise AssertionError("set fake.webhook_url before posting webhooks")
        payload = {
            "object": "whatsapp_business_account",
            "entry": [{"id": "300000000000001", "changes": [{"field": "messages", "value": value}]}],
        }
        body = json.dumps(payload).encode("ascii")  # Meta's escaped-unicode form
        signature = "sha256=" + hmac.new(self.app_secret.encode(), body, hashlib.sha256).hexdigest()
        if self._session is None:
            self._session = aiohttp.ClientSession()
        headers = {"Content-Type": "application/json", "X-Hub-Signature-256": signature}
        async with self._session.post(self.webhook_url, data=body, headers=headers) as resp:
            await resp.read()
            return resp.status

    async def _cleanup(self, app: web.Application) -> None:
        await self.drain()
        if self._session is not None:
            await self._session.close()


def _digits(number: str) -> str:
    return number.strip().lstrip("+")


def _invalid(message: str, *, code: int = 100, subcode: int | None = None) -> web.Response:
    """A 400 refusal of the request's content, as Meta answers one."""
    return error_response(FakeError(400, code, message, subcode=subcode))
