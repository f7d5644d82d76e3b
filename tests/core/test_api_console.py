"""What the console asks of the API beyond §12: one conversation, its unread count and reply window, the audit check."""

from __future__ import annotations

from typing import Any

from tests.core.apikit import ApiDesk, DeskFactory, make_desk  # noqa: F401 (fixture)
from tests.e2e.harness import wait_for


async def _get(desk: ApiDesk, url: str) -> tuple[int, Any]:
    async with desk.client.get(url) as response:
        return response.status, await response.json()


async def _post(desk: ApiDesk, url: str, csrf: str, body: dict[str, Any]) -> tuple[int, Any]:
    async with desk.client.post(url, json=body, headers={"X-CSRF-Token": csrf}) as response:
        return response.status, await response.json()


async def test_one_conversation_with_its_unread_count_and_the_customers_last_message(make_desk: DeskFactory) -> None:
    desk = await make_desk()
    await desk.add_agent("alice")
    csrf = await desk.session("alice")
    await desk.memory.inbound("cust-1", "Hello?", sender_name="Jan", timestamp=1_700_000_000.0)
    await desk.memory.inbound("cust-1", "Anyone?", timestamp=1_700_000_060.0)

    async def two_unread() -> bool:
        status, body = await _get(desk, "/api/conversations/1")
        return status == 200 and body["conversation"]["unread"] == 2

    await wait_for(two_unread, what="two unread messages")
    status, body = await _get(desk, "/api/conversations/1")
    conversation = body["conversation"]
    assert (conversation["id"], conversation["contact_name"], conversation["agent"]) == (1, "Jan", "alice")
    assert conversation["last_inbound_at"] == "2023-11-14T22:14:20Z"
    listed = (await _get(desk, "/api/conversations"))[1]["conversations"][0]
    assert listed == conversation

    # A reply answers them; a later customer message is unread again; a note counts as an answer.
    assert (await _post(desk, "/api/conversations/1/messages", csrf, {"text": "Here."}))[0] == 201
    assert (await _get(desk, "/api/conversations/1"))[1]["conversation"]["unread"] == 0
    await desk.memory.inbound("cust-1", "Thanks")

    async def one_unread() -> bool:
        return (await _get(desk, "/api/conversations/1"))[1]["conversation"]["unread"] == 1

    await wait_for(one_unread, what="one unread message")
    assert (await _post(desk, "/api/conversations/1/notes", csrf, {"text": "done"}))[0] == 201
    assert (await _get(desk, "/api/conversations/1"))[1]["conversation"]["unread"] == 0


async def test_one_conversation_is_refused_like_its_transcript(make_desk: DeskFactory) -> None:
    desk = await make_desk()
    await desk.add_agent("alice")
    await desk.add_agent("bob", queues=["billing"])
    await desk.session("alice")
    await desk.memory.inbound("cust-1", "Hello?")

    async def assigned() -> bool:
        return (await _get(desk, "/api/conversations/1"))[0] == 200

    await wait_for(assigned, what="the conversation")
    await desk.session("bob")  # the client's cookie is bob's now
    status, body = await _get(desk, "/api/conversations/1")
    assert (status, body["error"]["code"]) == (403, "forbidden")
    assert (await _get(desk, "/api/conversations/99"))[0] == 404


async def test_the_audit_chain_is_verified_for_admins_only(make_desk: DeskFactory) -> None:
    desk = await make_desk()
    await desk.add_agent("root", role="admin")
    await desk.add_agent("ann")
    await desk.session("root")
    status, body = await _get(desk, "/api/audit/verify")
    assert status == 200 and body["ok"] is True and body["bad_id"] is None and body["count"] >= 1
    await desk.session("ann")
    assert (await _get(desk, "/api/audit/verify"))[0] == 403
