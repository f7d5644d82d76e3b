"""Signed Meta webhooks as the platforms send them, built ahead of the load.

Why ahead: signing is the platform's work, not the daemon's, and must cost
the load generator nothing while it measures (wrk's Lua cannot compute an
HMAC at all), so bodies and their ``X-Hub-Signature-256`` are made here, in
bulk, and handed over as files or lists. Every message gets an id of its own
(``wamid.`` / ``m_``): the daemon drops a repeated id as a duplicate, which
would measure the wrong path.
"""

from __future__ import annotations

import hashlib
import hmac
import itertools
import json
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

#: What a customer typically writes: about 150 bytes of text.
TEXT = ("Hello, I ordered a blue jacket last week and it still has not arrived. "
        "Order 4711, could you check the tracking for me? Thanks!")  # fmt: skip


@dataclass(frozen=True, slots=True)
class MetaApp:
    """The test credentials of the two Meta channels (all made up, loopback only)."""

    phone_number_id: str = "400000000000001"
    wa_token: str = "bench-whatsapp-token"
    wa_secret: str = "bench-whatsapp-app-secret"
    page_id: str = "100000000000001"
    page_token: str = "bench-page-token"
    page_secret: str = "bench-messenger-app-secret"
    verify_token: str = "bench-verify"


class Webhook(NamedTuple):
    """One POST: its path, its signature header value and its raw body."""

    path: str
    signature: str
    body: bytes


def sign(body: bytes, secret: str) -> str:
    """``X-Hub-Signature-256``: the sha256 HMAC of the raw body under the app secret."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def _dump(payload: object) -> bytes:
    # Meta sends compact JSON with non-ASCII escaped.
    return json.dumps(payload, separators=(",", ":")).encode("ascii")


class Ids:
    """Unique message ids for one benchmark run (a fresh store per run)."""

    def __init__(self) -> None:
        self._next = itertools.count(1)
        self._tag = f"{time.time_ns() % 10**12:012d}"

    def wamid(self) -> str:
        return f"wamid.HBgLBENCH{self._tag}{next(self._next):012d}"

    def mid(self) -> str:
        return f"m_bench{self._tag}{next(self._next):012d}"


def whatsapp_text(app: MetaApp, wa_id: str, wamid: str, text: str) -> Webhook:
    """A single-message WhatsApp Cloud API webhook from ``wa_id`` (digits, no ``+``)."""
    payload = {
        "object": "whatsapp_business_account",
        "entry": [{"id": "300000000000001", "changes": [{"field": "messages", "value": {
            "messaging_product": "whatsapp",
            "metadata": {"display_phone_number": "15550001000", "phone_number_id": app.phone_number_id},
            "contacts": [{"profile": {"name": "Customer"}, "wa_id": wa_id}],
            "messages": [{"from": wa_id, "id": wamid, "timestamp": str(int(time.time())), "type": "text",
                          "text": {"body": text}}],
        }}]}],
    }  # fmt: skip
    body = _dump(payload)
    return Webhook("/webhooks/whatsapp", sign(body, app.wa_secret), body)


def messenger_text(app: MetaApp, psid: str, mid: str, text: str) -> Webhook:
    """A single-message Messenger webhook from ``psid`` to the Page."""
    now_ms = int(time.time() * 1000)
    payload = {
        "object": "page",
        "entry": [{"id": app.page_id, "time": now_ms, "messaging": [
            {"sender": {"id": psid}, "recipient": {"id": app.page_id}, "timestamp": now_ms,
             "message": {"mid": mid, "text": text}},
        ]}],
    }  # fmt: skip
    body = _dump(payload)
    return Webhook("/webhooks/messenger", sign(body, app.page_secret), body)


def wa_number(pool: int, index: int) -> str:
    """A WhatsApp customer's number (digits): ``pool`` keeps the phases' customers apart."""
    return f"1{pool:03d}{index:07d}"


def psid(pool: int, index: int) -> str:
    """A Messenger PSID: ``pool`` 1 for agents, 2 for customers, and so on."""
    return f"7{pool:02d}{index:013d}"


def marked(seq: int) -> str:
    """A customer text carrying the marker the fake Graph API records (``bench-<seq>.``)."""
    return f"bench-{seq}. {TEXT}"


def write_for_wrk(path: Path, hooks: Iterable[Webhook]) -> int:
    """Write ``path<TAB>signature<TAB>body`` lines for webhooks.lua; return how many."""
    count = 0
    with path.open("wb") as out:
        for hook in hooks:
            out.write(hook.path.encode() + b"\t" + hook.signature.encode() + b"\t" + hook.body + b"\n")
            count += 1
    return count
