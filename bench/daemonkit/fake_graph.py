"""A minimal fake Graph API for the daemon benchmark, run as its own process.

Run: ``python fake_graph.py --port P --phone-number-id ID --wa-token T --page-id ID --page-token T``

It answers the calls the WhatsApp and Messenger plugins make, with Meta's
success bodies, and refuses a wrong token (401, code 190) or an unknown node
(400, code 100 / 33) as Meta does, so a misconfigured benchmark fails loudly
instead of measuring error paths:

- ``GET /{version}/{phone_number_id}`` (WhatsApp start check): the number's profile;
- ``GET /{version}/{page_id}``: the Page (``{"name", "id"}``);
- ``POST /{version}/{phone_number_id}/messages`` (Bearer token): a text, a
  template or a read mark; answers ``{"messaging_product", "contacts",
  "messages": [{"id": "wamid..."}]}`` (``{"success": true}`` for a read mark);
- ``POST /{version}/{page_id}/messages`` (``access_token`` query or Bearer):
  a message, answered ``{"recipient_id", "message_id": "m_..."}``, or a sender
  action, answered ``{"recipient_id"}``.

Why it records arrival times: the benchmark's end-to-end latency runs from
the moment a webhook is sent to the moment its relay reaches this process.
Every text carrying a marker ``bench-<N>.`` is recorded as ``N -> arrival``
on ``time.monotonic()``, the clock the load generator reads too (one
system-wide clock on Linux). Texts without a marker (login confirmations,
notices) are kept per recipient. Control routes, under ``/_bench/``, are the
benchmark's own: ``GET arrivals`` (and forget them), ``GET texts?to=ID``,
``GET stats``, ``POST delay?seconds=S`` (answer every Graph call S seconds
late: a slow platform that lets a backlog build without timeouts).
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import re
import secrets
import time
from collections import Counter, defaultdict
from typing import Any

from aiohttp import web

MARKER = re.compile(r"bench-(\d+)\.")
FIELDS = ("port", "phone_number_id", "wa_token", "page_id", "page_token")


def graph_error(status: int, code: int, message: str, subcode: int | None = None) -> web.Response:
    """Meta's error envelope."""
    error: dict[str, Any] = {"message": message, "type": "OAuthException", "code": code, "fbtrace_id": "ABenchTrace"}
    if subcode is not None:
        error["error_subcode"] = subcode
    return web.json_response({"error": error}, status=status)


class FakeGraph:
    """The state and the routes of the fake (one WhatsApp number, one Page)."""

    def __init__(self, phone_number_id: str, wa_token: str, page_id: str, page_token: str) -> None:
        self.phone_number_id = phone_number_id
        self.wa_token = wa_token
        self.page_id = page_id
        self.page_token = page_token
        self.delay = 0.0
        self.arrivals: dict[int, float] = {}
        self.texts: dict[str, list[str]] = defaultdict(list)
        self.stats: Counter[str] = Counter()
        self._ids = itertools.count(1)
        self.app = web.Application()
        self.app.router.add_get("/_bench/arrivals", self._take_arrivals)
        self.app.router.add_get("/_bench/texts", self._texts)
        self.app.router.add_get("/_bench/stats", self._stats)
        self.app.router.add_post("/_bench/delay", self._set_delay)
        self.app.router.add_post("/{version}/{node}/messages", self._messages)
        self.app.router.add_get("/{version}/{node}", self._node)

    # -- Graph routes ---------------------------------------------------------

    async def _node(self, request: web.Request) -> web.Response:
        node = request.match_info["node"]
        if node == self.phone_number_id and self._bearer(request) == self.wa_token:
            return web.json_response({"verified_name": "Bench Business", "display_phone_number": "+1 555-000-1000",
                                      "quality_rating": "GREEN", "id": node})  # fmt: skip
        if node == self.page_id and self.page_token in (self._bearer(request), request.query.get("access_token")):
            return web.json_response({"name": "Bench Page", "id": node})
        if node in (self.phone_number_id, self.page_id):
            return graph_error(401, 190, "Invalid OAuth access token.")
        return graph_error(400, 100, f"Unsupported get request. Object with ID '{node}' does not exist", 33)

    async def _messages(self, request: web.Request) -> web.Response:
        body = await request.read()
        if self.delay:
            await asyncio.sleep(self.delay)
        arrived = time.monotonic()
        node = request.match_info["node"]
        try:
            payload = json.loads(body)
        except ValueError:
            return graph_error(400, 100, "(#100) The request body is not valid JSON")
        if not isinstance(payload, dict):
            return graph_error(400, 100, "(#100) The request body must be a JSON object")
        if node == self.phone_number_id:
            if self._bearer(request) != self.wa_token:
                return graph_error(401, 190, "Invalid OAuth access token.")
            return self._whatsapp(payload, arrived)
        if node == self.page_id:
            if self.page_token not in (self._bearer(request), request.query.get("access_token")):
                return graph_error(401, 190, "Invalid OAuth access token.")
            return self._messenger(payload, arrived)
        return graph_error(400, 100, f"Unsupported post request. Object with ID '{node}' does not exist", 33)

    def _whatsapp(self, payload: dict[str, Any], arrived: float) -> web.Response:
        if payload.get("messaging_product") != "whatsapp":
            return graph_error(400, 100, "(#100) The parameter messaging_product is required.")
        if payload.get("status") == "read":
            self.stats["whatsapp_read"] += 1
            return web.json_response({"success": True})
        to = str(payload.get("to") or "")
        kind = payload.get("type", "text")
        if not to.lstrip("+").isdigit():
            return graph_error(400, 100, "(#100) Invalid parameter: to")
        if kind == "text":
            text = (payload.get("text") or {}).get("body")
            if not isinstance(text, str) or not text.strip():
                return graph_error(400, 100, "(#100) The parameter text['body'] is required.")
            self._record(to.lstrip("+"), text, arrived)
        elif kind != "template":
            return graph_error(400, 131051, "(#131051) Unsupported message type")
        self.stats[f"whatsapp_{kind}"] += 1
        wamid = f"wamid.BENCH{next(self._ids):010d}{secrets.token_hex(4).upper()}"
        return web.json_response({"messaging_product": "whatsapp",
                                  "contacts": [{"input": to, "wa_id": to.lstrip("+")}],
                                  "messages": [{"id": wamid}]})  # fmt: skip

    def _messenger(self, payload: dict[str, Any], arrived: float) -> web.Response:
        recipient = (payload.get("recipient") or {}).get("id")
        if not isinstance(recipient, str) or not recipient:
            return graph_error(400, 100, "(#100) param recipient[id] must be a non-empty string")
        if "sender_action" in payload:
            self.stats["messenger_action"] += 1
            return web.json_response({"recipient_id": recipient})
        text = (payload.get("message") or {}).get("text")
        if not isinstance(text, str) or not text or len(text) > 2000:
            return graph_error(400, 100, "(#100) param message[text] must be a UTF-8 string of 1 to 2000 characters")
        if payload.get("messaging_type") not in ("RESPONSE", "UPDATE", "MESSAGE_TAG"):
            return graph_error(400, 100, "(#100) param messaging_type must be one of RESPONSE, UPDATE, MESSAGE_TAG")
        self.stats["messenger_text"] += 1
        self._record(recipient, text, arrived)
        return web.json_response({"recipient_id": recipient, "message_id": f"m_bench{next(self._ids):010d}"})

    def _record(self, recipient: str, text: str, arrived: float) -> None:
        found = MARKER.search(text)
        if found:
            self.arrivals[int(found.group(1))] = arrived
        else:
            self.texts[recipient].append(text)

    @staticmethod
    def _bearer(request: web.Request) -> str | None:
        header = request.headers.get("Authorization", "")
        return header[len("Bearer ") :] if header.startswith("Bearer ") else None

    # -- control routes -------------------------------------------------------

    async def _take_arrivals(self, request: web.Request) -> web.Response:
        taken, self.arrivals = self.arrivals, {}
        return web.json_response({str(k): v for k, v in taken.items()})

    async def _texts(self, request: web.Request) -> web.Response:
        return web.json_response(self.texts.get(request.query.get("to", ""), []))

    async def _stats(self, request: web.Request) -> web.Response:
        return web.json_response({**self.stats, "pending_arrivals": len(self.arrivals)})

    async def _set_delay(self, request: web.Request) -> web.Response:
        self.delay = float(request.query.get("seconds", "0"))
        return web.json_response({"delay": self.delay})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    for field in FIELDS:
        parser.add_argument(f"--{field.replace('_', '-')}", required=True, type=int if field == "port" else str)
    args = parser.parse_args()
    fake = FakeGraph(args.phone_number_id, args.wa_token, args.page_id, args.page_token)
    web.run_app(fake.app, host="127.0.0.1", port=args.port, access_log=None, print=None)


if __name__ == "__main__":
    main()
