"""Closed reply windows on both legs: held, re-engaged, told, released — never dropped."""

from __future__ import annotations

import time
from pathlib import Path

from bridge.models import StatusUpdate
from tests.e2e.harness import add_agent, login, make_bridge, outbox_rows, wait_for

CHANNELS = (
    "[channels.memory]\n[channels.second]\n[channels.windowed]\n[channels.email]\n"
    '[delivery]\nretry_base = "10ms"\nretry_max = "40ms"\nmax_attempts = 3\n'
)
HOURS_AGO = time.time() - 2 * 3600


async def test_customer_window_closed_holds_sends_template_once_and_releases(tmp_path: Path) -> None:
    bridge = await make_bridge(tmp_path, channels=CHANNELS)
    try:
        win, second = bridge.channels["windowed"], bridge.channels["second"]
        _agent, secret = await add_agent(bridge, "alice", "second:alice")
        await login(bridge, "second", "alice", secret)
        await win.inbound("+15550001", "wrote long ago", timestamp=HOURS_AGO, sender_name="Jan")
        await wait_for(lambda: any("wrote long ago" in t for t in second.texts_to("alice")))
        await bridge.store.write(lambda tx: tx.contacts.set_email(1, "jan@example.org", verified=True))
        await second.inbound("alice", "first answer")
        await second.inbound("alice", "second answer")
        await wait_for(lambda: any("will not deliver" in t for t in second.texts_to("alice")), what="agent told")
        notice = [t for t in second.texts_to("alice") if "will not deliver" in t]
        assert len(notice) == 1 and notice[0].startswith("[#1 Jan · Windowed]")
        assert notice[0].endswith(". They have a verified email address, so email can still reach them.")
        await wait_for(lambda: any(m.template for m in win.sent), what="template")
        assert [m.template for m in win.sent] == [True]

        async def both_held() -> bool:
            rows = [r for r in await outbox_rows(bridge) if r[1] == "windowed" and not r[5]]
            return [(r[3], r[6]) for r in rows] == [("held", "window"), ("held", "window")]

        await wait_for(both_held, what="the later reply is held behind the first, in order")
        # the customer answers: the window opens, held replies go out in order
        await win.inbound("+15550001", "ok I am back")
        await wait_for(lambda: win.texts_to("+15550001") == ["first answer", "second answer"], what="released")
        statuses = await bridge.store.read(
            lambda tx: tx._session.conn.execute("SELECT status FROM messages WHERE direction='out'").fetchall()
        )
        assert [s[0] for s in statuses] == ["sent", "sent"]
    finally:
        await bridge.close()


async def test_window_failure_reported_later_by_status_takes_the_same_path(tmp_path: Path) -> None:
    bridge = await make_bridge(tmp_path, channels=CHANNELS)
    try:
        win, second = bridge.channels["windowed"], bridge.channels["second"]
        _agent, secret = await add_agent(bridge, "alice", "second:alice")
        await login(bridge, "second", "alice", secret)
        await win.inbound("+15550002", "hi")
        await second.inbound("alice", "accepted then failed")
        await wait_for(lambda: len(win.sent) == 1)
        external = win.receipts[win.sent[0].delivery_id]
        failed = StatusUpdate("windowed", "failed", time.time(), external_id=external, error_code="131047",
                              error_title="Re-engagement message", window_closed=True)  # fmt: skip
        await bridge.relay.update_status("windowed", [failed])
        await bridge.relay.update_status("windowed", [failed])  # platforms repeat reports
        await wait_for(lambda: any("will not deliver" in t for t in second.texts_to("alice")), what="agent told")
        await wait_for(lambda: any(m.template for m in win.sent), what="template")
        assert sum(m.template for m in win.sent) == 1
        await win.inbound("+15550002", "back")
        await wait_for(lambda: win.texts_to("+15550002") == ["accepted then failed", "accepted then failed"])
    finally:
        await bridge.close()


async def test_agent_window_closed_falls_back_to_template_then_email(tmp_path: Path) -> None:
    bridge = await make_bridge(tmp_path, channels=CHANNELS)
    try:
        win, mem, mail = bridge.channels["windowed"], bridge.channels["memory"], bridge.channels["email"]
        _agent, secret = await add_agent(bridge, "wanda", "windowed:+15559999", email="wanda@example.org")
        await login(bridge, "windowed", "+15559999", secret, timestamp=HOURS_AGO)  # logged in, window since closed
        await mem.inbound("cust", "need help", sender_name="Piet")
        await wait_for(lambda: "[#1 Piet · Memory] need help" in mail.texts_to("wanda@example.org"), what="email copy")
        assert mail.sent[0].meta["subject"].startswith("Carebridge")
        await wait_for(lambda: any(m.template for m in win.sent), what="template to agent")
        rows = [r for r in await outbox_rows(bridge) if r[1] == "windowed" and not r[5]]
        assert any(r[3] == "held" and r[6] == "window" for r in rows)
        # the agent writes on WhatsApp: the window opens and held messages follow there too
        await win.inbound("+15559999", "/list")
        await wait_for(lambda: any("need help" in t for t in win.texts_to("+15559999")), what="released to agent")
    finally:
        await bridge.close()


async def test_agent_is_warned_once_before_the_window_closes(tmp_path: Path) -> None:
    bridge = await make_bridge(tmp_path, channels=CHANNELS + '[routing]\nwindow_warning = "30m"\n')
    try:
        win = bridge.channels["windowed"]
        _agent, secret = await add_agent(bridge, "wanda", "windowed:+15559999")
        await login(bridge, "windowed", "+15559999", secret, timestamp=time.time() - 3600 + 600)  # 10 min left
        assert await bridge.relay.check_windows() == 1
        assert await bridge.relay.check_windows() == 0
        await wait_for(lambda: any("closes in about" in t for t in win.texts_to("+15559999")), what="warning")
        warning = next(t for t in win.texts_to("+15559999") if "closes in about" in t)
        assert "9 minutes" in warning or "10 minutes" in warning
    finally:
        await bridge.close()


async def test_agent_far_from_window_end_is_not_warned(tmp_path: Path) -> None:
    bridge = await make_bridge(tmp_path, channels=CHANNELS + '[routing]\nwindow_warning = "30m"\n')
    try:
        _agent, secret = await add_agent(bridge, "wanda", "windowed:+15559999")
        await login(bridge, "windowed", "+15559999", secret)
        assert await bridge.relay.check_windows() == 0
    finally:
        await bridge.close()


async def test_a_failure_reported_before_the_send_is_recorded_is_not_lost(tmp_path: Path) -> None:
    bridge = await make_bridge(tmp_path, channels=CHANNELS)
    try:
        mem, second = bridge.channels["memory"], bridge.channels["second"]
        _agent, secret = await add_agent(bridge, "alice", "second:alice")
        await login(bridge, "second", "alice", secret)
        await mem.inbound("cust", "hi", sender_name="Jan")
        await wait_for(lambda: any("hi" in t for t in second.texts_to("alice")))
        mem.early_report = StatusUpdate(
            "memory", "failed", time.time(), error_code="131026", error_title="Undeliverable"
        )
        await second.inbound("alice", "raced reply")
        await wait_for(lambda: any("Undeliverable (code 131026)" in t for t in second.texts_to("alice")), what="told")
        rows = [r for r in await outbox_rows(bridge) if r[2] == "contact"]
        assert [r[3] for r in rows] == ["failed"]
        left = await bridge.store.read(
            lambda tx: tx._session.conn.execute("SELECT COUNT(*) FROM early_statuses").fetchone()[0]
        )
        assert left == 0
    finally:
        await bridge.close()
