"""Both Meta fakes, the real plugins and a real Bridge on loopback, for end-to-end tests.

Customers and agents write through the real webhook paths: WhatsApp
messages are posted by the fake Cloud API itself (signed as Meta signs
them); Messenger messages are built here and signed with the Page app's
secret. Sends go through the real plugins to the fakes, which refuse what
Meta would refuse.
"""

from __future__ import annotations

import itertools
import time
from pathlib import Path
from typing import Any

import aiohttp

from carebridge_meta import signed_body
from tests.fakes.messenger_graph import FakeMessengerGraph
from tests.fakes.whatsapp_cloud import FakeWhatsAppCloud

WA_NUMBER_ID = "400000000000001"
WA_TOKEN = "test-token"
WA_SECRET = "test-app-secret"
WA_TEMPLATE = "hello_world"
PAGE_ID = "100000000000001"
PAGE_TOKEN = "test-page-token"
PAGE_SECRET = "messenger-app-secret"
VERIFY = "verify-me"


def channel_sections(wa_url: str, graph_url: str) -> str:
    """The [channels.*] sections pointing both plugins at the fakes."""
    return (
        "[channels.whatsapp]\n"
        f'phone_number_id = "{WA_NUMBER_ID}"\naccess_token = "{WA_TOKEN}"\napp_secret = "{WA_SECRET}"\n'
        f'verify_token = "{VERIFY}"\ngraph_url = "{wa_url}"\nreengage_template = "{WA_TEMPLATE}"\n'
        "[channels.messenger]\n"
        f'page_id = "{PAGE_ID}"\npage_access_token = "{PAGE_TOKEN}"\napp_secret = "{PAGE_SECRET}"\n'
        f'verify_token = "{VERIFY}"\ngraph_url = "{graph_url}"\n'
    )


class World:
    """The fakes plus helpers to act as customers and agents."""

    def __init__(
        self, wa: FakeWhatsAppCloud, graph: FakeMessengerGraph, wa_server: Any = None, graph_server: Any = None
    ) -> None:
        self.wa = wa
        self.graph = graph
        self.wa_server = wa_server
        self.graph_server = graph_server
        self.base_url = ""
        self._mids = itertools.count(1)

    def graph_urls(self) -> tuple[str, str]:
        """``graph_url`` for the WhatsApp and the Messenger channel, pointing at the fakes' servers."""
        if self.wa_server is None or self.graph_server is None:
            raise RuntimeError("World was built without its fake servers")
        return self.wa.graph_url(self.wa_server), str(self.graph_server.make_url("/v25.0"))

    def point_at(self, base_url: str) -> None:
        """Send webhooks to the bridge at ``base_url``."""
        self.base_url = base_url.rstrip("/")
        self.wa.webhook_url = f"{self.base_url}/webhooks/whatsapp"

    async def whatsapp(self, number: str, text: str, *, name: str | None = None, ts: float | None = None) -> str:
        """A WhatsApp user writes; returns the wamid."""
        return await self.wa.send_inbound(number, text, name=name, ts=ts)

    async def messenger(
        self, psid: str, text: str, *, reply_to: str | None = None, ts: float | None = None, mid: str | None = None
    ) -> str:
        """A Messenger user writes (optionally quoting ``reply_to``) at ``ts`` (default now); returns the mid.

        An old ``ts`` is a message that reaches us late (Meta retries for days):
        both the Page's window in the fake and the bridge's record start from it.
        Passing an earlier ``mid`` again is Meta redelivering that message.
        """
        now_ms = int((time.time() if ts is None else ts) * 1000)
        mid = mid or f"m_e2e_{next(self._mids)}_{now_ms}"
        message: dict[str, Any] = {"mid": mid, "text": text}
        if reply_to:
            message["reply_to"] = {"mid": reply_to}
        payload = {
            "object": "page",
            "entry": [{"id": PAGE_ID, "time": now_ms, "messaging": [
                {"sender": {"id": psid}, "recipient": {"id": PAGE_ID}, "timestamp": now_ms, "message": message}
            ]}],
        }  # fmt: skip
        self.graph.customer_wrote(psid, ts)
        body, headers = signed_body(payload, PAGE_SECRET)
        url = f"{self.base_url}/webhooks/messenger"
        async with aiohttp.ClientSession() as session, session.post(url, data=body, headers=headers) as resp:
            if resp.status != 200:
                raise AssertionError(f"bridge answered {resp.status} to a Messenger webhook: {await resp.text()}")
        return mid

    def wa_texts(self, number: str) -> list[str]:
        """Free texts the WhatsApp fake accepted for ``number``, in order."""
        return [s.text for s in self.wa.sent if s.to.lstrip("+") == number.lstrip("+") and s.text is not None]

    def wa_templates(self, number: str) -> list[str]:
        return [s.template for s in self.wa.sent if s.to.lstrip("+") == number.lstrip("+") and s.template]

    def fb_texts(self, psid: str) -> list[str]:
        """Texts the Messenger fake accepted for ``psid``, in order."""
        return self.graph.texts_to(psid)

    def fb_mid_of(self, psid: str, contains: str) -> str:
        """The platform id the Messenger fake gave the first text to ``psid`` containing ``contains``."""
        for body in self.graph.sent:
            if body["recipient"]["id"] == psid and contains in body["message"].get("text", ""):
                return str(body["_message_id"])
        raise AssertionError(f"nothing containing {contains!r} was sent to {psid}")


def store_rows(db: Path, sql: str) -> list[tuple[Any, ...]]:
    """Read plain (unencrypted) columns of a running daemon's store from another process."""
    import sqlite3

    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)
    try:
        return conn.execute(sql).fetchall()
    finally:
        conn.close()
