"""Conversations over the real app: who sees what, acting as in chat, masked transcripts, live events."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Callable
from typing import Any

import aiohttp

from bridge import Finding, hookimpl
from bridge.web.api.common import conversation_cursor
from tests.core.apikit import ApiDesk, DeskFactory, make_desk  # noqa: F401 (fixture)
from tests.e2e.harness import wait_for


class _Digits:
    """A detector plugin: any run of 8+ digits is an ``account`` number."""

    @hookimpl
    def detect_sensitive(self, text: str) -> list[Finding]:
        return [Finding("account", m.start(), m.end()) for m in re.finditer(r"\d{8,}", text)]


async def _conversation_of(desk: ApiDesk, customer: str) -> int:
    """The id of the customer's open conversation (waits for the ingest)."""
    found: list[int] = []

    async def ready() -> bool:
        def find(tx: Any) -> int | None:
            for conv in tx.conversations.page(visible_to=None, limit=50):
                identity = tx.contacts.get_identity(conv.identity_id)
                if identity is not None and identity.address == customer and conv.status != "closed":
                    return int(conv.id)
            return None

        value = await desk.bridge.store.read(find)
        if value is not None:
            found.append(value)
        return value is not None

    await wait_for(ready, what=f"{customer}'s conversation")
    return found[-1]


async def _json(desk: ApiDesk, method: str, url: str, csrf: str | None = None, **kwargs: Any) -> tuple[int, Any]:
    headers = {"X-CSRF-Token": csrf} if csrf else {}
    async with desk.client.request(method, url, headers=headers, **kwargs) as response:
        return response.status, await response.json()


async def test_agents_see_their_own_and_their_queue_admins_see_all(make_desk: DeskFactory) -> None:
    desk = await make_desk()
    await desk.add_agent("alice")
    await desk.add_agent("bob", queues=["billing"])
    await desk.add_agent("root", role="admin", queues=["none"])
    await desk.session("alice")  # a console agent: online, takes what waits
    await desk.memory.inbound("cust-1", "Hello, my order?", sender_name="Jan")
    conv_id = await _conversation_of(desk, "cust-1")
    await wait_for(lambda: _assigned(desk, conv_id))

    status, listing = await _json(desk, "GET", "/api/conversations")
    assert status == 200
    assert listing["next"] is None
    (conv,) = listing["conversations"]
    assert {k: conv[k] for k in ("id", "status", "channel", "contact_name", "agent", "queue")} == {
        "id": conv_id, "status": "assigned", "channel": "memory", "contact_name": "Jan", "agent": "alice",
        "queue": "default",
    }  # fmt: skip
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z", conv["updated_at"])
    status, page = await _json(desk, "GET", f"/api/conversations/{conv_id}/messages")
    assert status == 200 and [m["text"] for m in page["messages"]] == ["Hello, my order?"]
    assert page["messages"][0]["direction"] == "in" and page["next"] is None

    desk.client.session.cookie_jar.clear()
    await desk.session("bob")
    status, listing = await _json(desk, "GET", "/api/conversations")
    assert status == 200 and listing["conversations"] == []
    status, answer = await _json(desk, "GET", f"/api/conversations/{conv_id}/messages")
    assert status == 403 and answer["error"]["code"] == "forbidden"
    status, answer = await _json(desk, "GET", "/api/conversations/999999/messages")
    assert status == 404

    desk.client.session.cookie_jar.clear()
    await desk.session("root")
    status, listing = await _json(desk, "GET", "/api/conversations?status=assigned")
    assert [c["id"] for c in listing["conversations"]] == [conv_id]
    status, page = await _json(desk, "GET", f"/api/conversations/{conv_id}/messages")
    assert status == 200 and page["messages"][0]["text"] == "Hello, my order?"
    views = await desk.bridge.store.read(lambda tx: [e for e in tx.audit.entries() if e.action == "conversation.view"])
    assert [(e.actor, e.subject) for e in views] == [("agent:alice", f"conversation:{conv_id}"),
                                                     ("agent:root", f"conversation:{conv_id}")]  # fmt: skip


def _assigned(desk: ApiDesk, conv_id: int) -> Any:
    async def check() -> bool:
        conv = await desk.bridge.store.read(lambda tx: tx.conversations.get(conv_id))
        return conv is not None and conv.status == "assigned"

    return check()


async def test_listing_pages_back_with_the_cursor(make_desk: DeskFactory) -> None:
    desk = await make_desk()
    await desk.add_agent("root", role="admin")
    for n in range(5):
        await desk.memory.inbound(f"cust-{n}", f"message {n}")
    await _conversation_of(desk, "cust-4")
    await desk.session("root")
    seen: list[int] = []
    url = "/api/conversations?limit=2"
    while True:
        status, page = await _json(desk, "GET", url)
        assert status == 200 and len(page["conversations"]) <= 2
        seen += [c["id"] for c in page["conversations"]]
        if page["next"] is None:
            break
        url = f"/api/conversations?limit=2&before={page['next']}"
    assert len(seen) == 5 and len(set(seen)) == 5
    status, answer = await _json(desk, "GET", "/api/conversations?before=nonsense")
    assert status == 400 and answer["error"]["code"] == "bad_request"
    status, _ = await _json(desk, "GET", "/api/conversations?status=open")
    assert status == 400
    assert "_" in conversation_cursor(await desk.bridge.store.read(lambda tx: tx.conversations.get(seen[0])))


async def test_reply_note_transfer_and_close_follow_the_chat_rules(make_desk: DeskFactory) -> None:
    desk = await make_desk()
    await desk.add_agent("alice")
    await desk.add_agent("bob", "memory:bob-phone")
    csrf = await desk.session("alice")
    await desk.memory.inbound("cust-1", "Where is my parcel?")
    conv_id = await _conversation_of(desk, "cust-1")
    await wait_for(lambda: _assigned(desk, conv_id))

    status, answer = await _json(
        desk, "POST", f"/api/conversations/{conv_id}/messages", csrf, json={"text": "On its way!"}
    )
    assert status == 201, answer
    assert answer["message"]["direction"] == "out" and answer["message"]["agent"] == "alice"
    await wait_for(lambda: "On its way!" in desk.memory.texts_to("cust-1"), what="the reply at the customer")

    status, answer = await _json(desk, "POST", f"/api/conversations/{conv_id}/notes", csrf, json={"text": "VIP"})
    assert status == 201 and answer["message"]["direction"] == "note"
    status, answer = await _json(desk, "POST", f"/api/conversations/{conv_id}/messages", csrf, json={"text": "  "})
    assert status == 400 and answer["error"]["code"] == "empty"

    # bob is not on shift: the transfer is refused as in chat
    status, answer = await _json(desk, "POST", f"/api/conversations/{conv_id}/transfer", csrf, json={"to": "bob"})
    assert status == 409 and answer["error"]["code"] == "target_offline"
    assert answer["error"]["message"] == "Cannot transfer to bob: they are not logged in."
    status, answer = await _json(desk, "POST", f"/api/conversations/{conv_id}/transfer", csrf, json={"to": "nowhere"})
    assert status == 400 and answer["error"]["code"] == "unknown_target"

    await desk.memory.inbound("bob-phone", f"/login {desk.code('bob')}")
    await wait_for(lambda: any(t.startswith("You are logged in") for t in desk.memory.texts_to("bob-phone")))
    body = {"to": "bob", "note": "Wants a refund"}
    status, answer = await _json(desk, "POST", f"/api/conversations/{conv_id}/transfer", csrf, json=body)
    assert status == 200, answer
    assert answer["to"] == {"agent": "bob", "queue": None} and answer["conversation"]["agent"] == "bob"
    await wait_for(lambda: any("Wants a refund" in t for t in desk.memory.texts_to("bob-phone")), what="hand-off")
    # No longer alice's: every action says so.
    status, answer = await _json(desk, "POST", f"/api/conversations/{conv_id}/close", csrf, json={})
    assert status == 403 and answer["error"]["code"] == "not_yours"
    status, answer = await _json(desk, "GET", f"/api/conversations/{conv_id}/messages")
    assert status == 403, "it is bob's now: alice no longer reads it"

    # bob closes it from chat; reopening by API is refused.
    await desk.memory.inbound("bob-phone", f"/close {conv_id}")
    await wait_for(lambda: any(t.startswith("Closed") for t in desk.memory.texts_to("bob-phone")))
    audit = await desk.bridge.store.read(lambda tx: [(e.action, e.detail) for e in tx.audit.entries()])
    assert ("conversation.transfer", {"from": "alice", "to": "bob", "via": "api"}) in audit
    assert ("conversation.close", {"by": "bob"}) in audit
    assert ("conversation.reply", {"message": answer_id(audit), "via": "api"}) in audit
    assert await desk.bridge.store.read(lambda tx: tx.audit.verify().ok)


def answer_id(audit: list[tuple[str, Any]]) -> Any:
    return next(detail["message"] for action, detail in audit if action == "conversation.reply")


async def test_close_sends_the_closed_notice_and_take_picks_a_waiting_one(make_desk: DeskFactory) -> None:
    desk = await make_desk()
    await desk.add_agent("bob", "memory:bob-phone")
    await desk.memory.inbound("cust-1", "Anyone there?")
    conv_id = await _conversation_of(desk, "cust-1")
    csrf = await desk.session("bob")
    status, answer = await _json(desk, "POST", f"/api/conversations/{conv_id}/take", csrf, json={})
    assert status == 409 and answer["error"]["code"] == "not_on_shift"
    await desk.memory.inbound("bob-phone", f"/login {desk.code('bob', desk.clock.now + 30)}")
    await wait_for(lambda: _assigned(desk, conv_id), what="bob's login taking the waiting one")
    status, answer = await _json(desk, "POST", f"/api/conversations/{conv_id}/take", csrf, json={})
    assert status == 409 and answer["error"]["code"] == "already_yours"
    status, answer = await _json(desk, "POST", f"/api/conversations/{conv_id}/close", csrf)
    assert status == 200 and answer["conversation"]["status"] == "closed"
    templates = desk.bridge.relay.rctx.templates  # type: ignore[union-attr]
    notice = templates.render("closed", None).strip()
    await wait_for(lambda: notice in desk.memory.texts_to("cust-1"), what="the closed notice")
    status, answer = await _json(desk, "POST", f"/api/conversations/{conv_id}/close", csrf, json={})
    assert status == 409 and answer["error"]["code"] == "closed"

    await desk.memory.inbound("cust-2", "Hi")
    second = await _conversation_of(desk, "cust-2")
    await wait_for(lambda: _assigned(desk, second), what="routing to bob")
    status, answer = await _json(desk, "POST", f"/api/conversations/{second}/take", csrf, json={})
    assert status == 409


async def test_transcripts_mask_sensitive_values_unless_revealed_and_reveals_are_audited(
    make_desk: DeskFactory,
) -> None:
    desk = await make_desk(plugins=[("digits", _Digits())])
    await desk.add_agent("alice")
    await desk.session("alice")
    await desk.memory.inbound("cust-1", "My account is 12345678901, thanks")
    conv_id = await _conversation_of(desk, "cust-1")
    await wait_for(lambda: _assigned(desk, conv_id))
    status, page = await _json(desk, "GET", f"/api/conversations/{conv_id}/messages")
    assert status == 200
    assert page["messages"][0]["text"] == "My account is [hidden account], thanks"
    assert page["messages"][0]["sensitive"] is True
    status, page = await _json(desk, "GET", f"/api/conversations/{conv_id}/messages?reveal=1")
    assert page["messages"][0]["text"] == "My account is 12345678901, thanks"
    reveals = await desk.bridge.store.read(
        lambda tx: [e for e in tx.audit.entries() if e.action == "conversation.reveal"]
    )
    assert len(reveals) == 1 and reveals[0].actor == "agent:alice"
    status, _ = await _json(desk, "GET", f"/api/conversations/{conv_id}/messages?reveal=yes")
    assert status == 400


async def test_messages_page_back_newest_page_first(make_desk: DeskFactory) -> None:
    desk = await make_desk()
    await desk.add_agent("alice")
    await desk.session("alice")
    for n in range(5):
        await desk.memory.inbound("cust-1", f"line {n}")
    conv_id = await _conversation_of(desk, "cust-1")
    status, page = await _json(desk, "GET", f"/api/conversations/{conv_id}/messages?limit=2")
    assert [m["text"] for m in page["messages"]] == ["line 3", "line 4"]
    status, page = await _json(desk, "GET", f"/api/conversations/{conv_id}/messages?limit=2&before={page['next']}")
    assert [m["text"] for m in page["messages"]] == ["line 1", "line 2"]
    status, page = await _json(desk, "GET", f"/api/conversations/{conv_id}/messages?limit=2&before={page['next']}")
    assert [m["text"] for m in page["messages"]] == ["line 0"] and page["next"] is None


async def _read_events(desk: ApiDesk, wanted: Callable[[list[tuple[str, str, Any]]], bool],
                       headers: dict[str, str] | None = None,
                       events: list[tuple[str, str, Any]] | None = None) -> list[tuple[str, str, Any]]:  # fmt: skip
    """Read ``/api/events`` until ``wanted(events)`` holds; events are ``(id, name, data)``, also kept in ``events``."""
    events = [] if events is None else events
    async with desk.client.get("/api/events", headers=headers or {}) as response:
        assert response.status == 200
        assert response.headers["Content-Type"].startswith("text/event-stream")
        block: dict[str, str] = {}
        async with asyncio.timeout(30):
            async for raw in response.content:
                line = raw.decode().rstrip("\r\n")
                if line:
                    field, _, value = line.partition(": ")
                    block[field] = value
                    continue
                if "data" in block:
                    events.append((block.get("id", ""), block.get("event", "message"), json.loads(block["data"])))
                    if wanted(events):
                        return events
                block = {}
    raise AssertionError(f"the stream ended early: {events}")


async def test_sse_delivers_a_new_customer_message_to_a_console_session(make_desk: DeskFactory) -> None:
    desk = await make_desk(plugins=[("digits", _Digits())])
    await desk.add_agent("alice")
    await desk.add_agent("bob", queues=["billing"])
    await desk.session("alice")

    async def customer_writes() -> None:
        await asyncio.sleep(0.2)
        await desk.memory.inbound("cust-1", "Card 4111111111111111 please")

    writer = asyncio.create_task(customer_writes())
    events = await _read_events(desk, lambda evs: {"message", "assigned"} <= {name for _i, name, _d in evs})
    await writer
    names = [name for _id, name, _data in events]
    assert sorted(names) == ["assigned", "message"]
    message = next(data for _id, name, data in events if name == "message")
    assert message["message"]["text"] == "Card [hidden account] please"
    assert message["message"]["direction"] == "in"
    assert set(message) == {"conversation_id", "message"}
    assert {"id", "direction", "text", "created_at"} <= set(message["message"])

    # Resume: with the id of the first event, what followed comes again.
    first_id = events[0][0]
    again = await _read_events(desk, lambda evs: len(evs) == 1, {"Last-Event-ID": first_id})
    assert [(i, n) for i, n, _d in again] == [(i, n) for i, n, _d in events[1:]]

    # bob serves another queue: he does not see alice's conversation at all.
    desk.client.session.cookie_jar.clear()
    await desk.session("bob")
    await desk.memory.inbound("cust-2", "for billing?")

    async def later() -> None:
        await asyncio.sleep(0.2)
        await desk.memory.inbound("cust-1", "still there?")
        await asyncio.sleep(0.3)
        await desk.bridge.store.write(lambda tx: None)

    task = asyncio.create_task(later())
    with_bob: list[tuple[str, str, Any]] = []
    try:
        await asyncio.wait_for(_read_events(desk, lambda evs: False, {"Last-Event-ID": first_id}, with_bob), 2.0)
    except TimeoutError:
        pass
    await task
    assert with_bob == [], "bob neither holds alice's conversation nor serves its queue"
    conversations = await desk.bridge.store.read(lambda tx: tx.conversations.page(visible_to=None))
    assert len(conversations) == 2 and all(c.agent_id is not None for c in conversations)


async def test_admin_manages_agents_and_reads_the_audit_log(make_desk: DeskFactory) -> None:
    import pyotp

    desk = await make_desk()
    await desk.add_agent("root", role="admin")
    await desk.add_agent("alice")
    csrf = await desk.session("root")
    status, answer = await _json(desk, "GET", "/api/agents")
    assert status == 200 and [a["name"] for a in answer["agents"]] == ["alice", "root"]

    body = {"name": "carol", "channel": "memory:carol-phone", "queues": ["billing"], "capacity": 3,
            "password": "another long password"}  # fmt: skip
    status, created = await _json(desk, "POST", "/api/agents", csrf, json=body)
    assert status == 201, created
    assert created["agent"]["queues"] == ["billing"] and created["agent"]["capacity"] == 3
    assert created["otpauth_uri"].startswith("otpauth://totp/") and created["totp_qr_svg"].startswith("<svg")
    status, answer = await _json(desk, "POST", "/api/agents", csrf, json=body)
    assert status == 409
    status, answer = await _json(desk, "POST", "/api/agents", csrf, json={**body, "name": "dave", "password": "short"})
    assert status == 400 and "password" in answer["error"]["message"]

    secret = re.search(r"secret=([A-Z2-7]+)", created["otpauth_uri"]).group(1)  # type: ignore[union-attr]
    status, answer = await _json(desk, "PATCH", "/api/agents/carol", csrf, json={"queues": ["billing", "vip"]})
    assert status == 200 and answer["agent"]["queues"] == ["billing", "vip"]
    status, answer = await _json(desk, "PATCH", "/api/agents/nobody", csrf, json={"capacity": 2})
    assert status == 404
    status, answer = await _json(desk, "PATCH", "/api/agents/root", csrf, json={"disabled": True})
    assert status == 409

    # carol logs in on a second client; disabling her ends that session at once.
    carol = desk.client
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as other:
        url = str(desk.client.make_url("/api/login"))
        code = pyotp.TOTP(secret).at(desk.clock.now)
        login = {"username": "carol", "password": "another long password", "totp": code}
        async with other.post(url, json=login) as response:
            assert response.status == 200
        async with other.get(str(carol.make_url("/api/me"))) as response:
            assert response.status == 200
        status, answer = await _json(desk, "PATCH", "/api/agents/carol", csrf, json={"disabled": True})
        assert status == 200 and answer["agent"]["disabled"] is True
        async with other.get(str(carol.make_url("/api/me"))) as response:
            assert response.status == 401

    status, log = await _json(desk, "GET", "/api/audit?limit=100")
    assert status == 200
    actions = [e["action"] for e in log["entries"]]
    assert actions[0] == "audit.view" and "agent.add" in actions and "agent.disable" in actions
    assert "agent.set_queues" in actions
    assert await desk.bridge.store.read(lambda tx: tx.audit.verify().ok)

    desk.client.session.cookie_jar.clear()
    await desk.session("alice")
    for method, url in (("GET", "/api/agents"), ("GET", "/api/audit"), ("PATCH", "/api/agents/alice")):
        async with desk.client.request(method, url, json={}) as response:
            assert response.status in (403,), (method, url, response.status)


async def test_secure_is_refused_like_any_action_for_an_unknown_conversation(
    make_desk: DeskFactory,
) -> None:
    desk = await make_desk()
    await desk.add_agent("alice")
    csrf = await desk.session("alice")
    status, answer = await _json(desk, "POST", "/api/conversations/1/secure", csrf, json={"text": "IBAN NL00"})
    assert status == 404 and answer["error"]["code"] == "not_found"
