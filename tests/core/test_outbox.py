"""The durable outbox: backoff, order, retries, failures, holds, restarts."""

from __future__ import annotations

import asyncio
import random
from pathlib import Path

import pytest

from bridge.errors import ChannelAuthFailed, DeliveryError
from bridge.models import ChannelState, DeliveryReceipt
from bridge.relay import retry
from bridge.store import SYSTEM_KEY, KeyOwner
from tests.e2e.harness import (
    add_agent,
    login,
    make_bridge,
    outbox_rows,
    retryable,
    wait_for,
)

FAST = '[delivery]\nretry_base = "10ms"\nretry_max = "40ms"\nmax_attempts = 3\n'


def test_retry_delay_grows_exponentially_with_jitter_and_cap() -> None:
    rng = random.Random(7)
    delays = [retry.retry_delay(n, 2.0, 600.0, rng=rng) for n in range(1, 12)]
    for n, delay in enumerate(delays, start=1):
        full = min(600.0, 2.0 * 2 ** (n - 1))
        assert full / 2 <= delay <= full
    assert delays[-1] <= 600.0 and delays[-1] >= 300.0
    assert len({round(retry.retry_delay(3, 2.0, 600.0), 6) for _ in range(20)}) > 1  # jittered


def test_retry_after_is_a_floor() -> None:
    assert retry.retry_delay(1, 2.0, 600.0, retry_after=30.0) == 30.0
    assert 1.0 <= retry.retry_delay(1, 2.0, 600.0, retry_after=0.5) <= 2.0


async def _assigned(tmp_path: Path, extra: str = FAST, capacity: int = 5):  # type: ignore[no-untyped-def]
    bridge = await make_bridge(tmp_path, extra)
    _agent, secret = await add_agent(bridge, "alice", "second:alice", capacity=capacity)
    await login(bridge, "second", "alice", secret)
    return bridge


async def test_two_failures_then_success_delivers_once_in_order(tmp_path: Path) -> None:
    bridge = await _assigned(tmp_path)
    try:
        mem, second = bridge.channels["memory"], bridge.channels["second"]
        await mem.inbound("cust", "first question")
        await wait_for(lambda: any("first question" in t for t in second.texts_to("alice")))
        mem.script = [retryable(), retryable()]  # the platform answers 500 twice, then 200
        await second.inbound("alice", "one")
        await second.inbound("alice", "two")
        await second.inbound("alice", "three")
        await wait_for(lambda: len(mem.sent) == 3, what="three deliveries")
        assert mem.texts_to("cust") == ["one", "two", "three"]
        assert [m.text for m in mem.attempts] == ["one", "one", "one", "two", "three"]

        async def recorded() -> bool:
            rows = [r for r in await outbox_rows(bridge) if r[2] == "contact"]
            return [(r[3], r[4]) for r in rows] == [("sent", 3), ("sent", 1), ("sent", 1)]

        await wait_for(recorded, what="the outcomes committed (the channel returns before the worker records)")
        sent = bridge.metrics.deliveries.labels(channel="memory", outcome="retry")._value.get()
        assert sent == 2
    finally:
        await bridge.close()


async def test_last_attempt_fails_and_the_agent_is_told(tmp_path: Path) -> None:
    bridge = await _assigned(tmp_path)
    try:
        mem, second = bridge.channels["memory"], bridge.channels["second"]
        await mem.inbound("cust", "hello", sender_name="Jan")
        await wait_for(lambda: any("hello" in t for t in second.texts_to("alice")))
        mem.script = [retryable("HTTP 503")] * 3
        await second.inbound("alice", "doomed reply")
        await wait_for(lambda: any("could not be delivered" in t for t in second.texts_to("alice")), what="notice")
        notice = next(t for t in second.texts_to("alice") if "could not be delivered" in t)
        assert notice.startswith("[#1 Jan · Memory]") and "HTTP 503" in notice
        assert mem.texts_to("cust") == []
        status = await bridge.store.read(lambda tx: tx._session.conn.execute(
            "SELECT status FROM messages WHERE direction = 'out'").fetchone()[0])  # fmt: skip
        assert status == "failed"
    finally:
        await bridge.close()


async def test_permanent_error_fails_at_once(tmp_path: Path) -> None:
    bridge = await _assigned(tmp_path)
    try:
        mem, second = bridge.channels["memory"], bridge.channels["second"]
        await mem.inbound("cust", "hello")
        await wait_for(lambda: any("hello" in t for t in second.texts_to("alice")))
        mem.script = [DeliveryError("(#551) This person isn't available right now.", retryable=False, code="551")]
        await second.inbound("alice", "reply")
        await wait_for(lambda: any("551" in t for t in second.texts_to("alice")), what="notice")
        assert len(mem.attempts) == 1
    finally:
        await bridge.close()


async def test_an_unexpected_error_counts_as_an_attempt_and_never_spins(tmp_path: Path) -> None:
    bridge = await _assigned(tmp_path)
    try:
        mem, second = bridge.channels["memory"], bridge.channels["second"]
        await mem.inbound("cust", "hello")
        await wait_for(lambda: any("hello" in t for t in second.texts_to("alice")))
        mem.bad_receipt = DeliveryReceipt(external_ids=(None,))  # type: ignore[arg-type]  # a buggy plugin

        async def given_up() -> bool:
            rows = [r for r in await outbox_rows(bridge) if r[2] == "contact"]
            return [(r[3], r[4]) for r in rows] == [("failed", 3)]

        await second.inbound("alice", "reply")
        await wait_for(given_up, what="failed after max_attempts, with backoff between them")
        rows = [r for r in await outbox_rows(bridge) if r[2] == "contact"]
        assert rows[0][7].startswith("internal error: ")
        assert len(mem.attempts) == 3
        await wait_for(lambda: any("could not be delivered: internal error" in t for t in second.texts_to("alice")))
    finally:
        await bridge.close()


async def test_later_rows_wait_for_an_earlier_retrying_row_to_the_same_recipient(tmp_path: Path) -> None:
    bridge = await _assigned(tmp_path, '[delivery]\nretry_base = "300ms"\nretry_max = "300ms"\n')
    try:
        mem, second = bridge.channels["memory"], bridge.channels["second"]
        await mem.inbound("cust", "hi")
        await wait_for(lambda: any("hi" in t for t in second.texts_to("alice")))
        mem.script = [retryable()]
        await second.inbound("alice", "A")
        await wait_for(lambda: len(mem.attempts) == 1)
        await second.inbound("alice", "B")
        await wait_for(lambda: len(mem.sent) == 2, what="both sent")
        assert mem.texts_to("cust") == ["A", "B"]
    finally:
        await bridge.close()


async def test_pending_rows_survive_a_restart_and_go_out_once(tmp_path: Path) -> None:
    bridge = await _assigned(tmp_path, '[delivery]\nretry_base = "1h"\nretry_max = "1h"\n')
    try:
        mem, second = bridge.channels["memory"], bridge.channels["second"]
        await mem.inbound("cust", "hi")
        await wait_for(lambda: any("hi" in t for t in second.texts_to("alice")))
        mem.script = [retryable()]
        await second.inbound("alice", "survives")
        await wait_for(lambda: len(mem.attempts) == 1)
    finally:
        await bridge.close()
    bridge = await make_bridge(tmp_path, FAST)
    try:
        mem = bridge.channels["memory"]
        rows = await outbox_rows(bridge)
        assert [(r[3], r[4]) for r in rows if r[2] == "contact"] == [("pending", 1)]
        # the row is due in an hour; the restarted worker honours that, so pull it forward
        await bridge.store.write(
            lambda tx: tx._session.conn.execute("UPDATE outbox SET next_attempt_at = 0 WHERE status = 'pending'")
        )
        bridge.relay.worker.wake()
        await wait_for(lambda: mem.texts_to("cust") == ["survives"], what="resumed")
    finally:
        await bridge.close()


async def test_missing_channel_holds_with_a_reason_and_tells_the_agent(tmp_path: Path) -> None:
    bridge = await _assigned(tmp_path)
    try:
        mem, second = bridge.channels["memory"], bridge.channels["second"]
        await mem.inbound("cust", "hi", sender_name="Jan")
        await wait_for(lambda: any("hi" in t for t in second.texts_to("alice")))

        def enqueue_ghost(tx):  # type: ignore[no-untyped-def]
            return tx.outbox.enqueue(channel="ghost", recipient="x", recipient_kind="contact", recipient_id=1,
                                  text="t", key_owner=KeyOwner.contact(1), conversation_id=1)  # fmt: skip

        await bridge.relay.write(lambda tx: (enqueue_ghost(tx), bridge.relay.rctx.wake()))
        await wait_for(lambda: any("not available" in t for t in second.texts_to("alice")), what="notice")
        rows = [r for r in await outbox_rows(bridge) if r[1] == "ghost"]
        assert rows[0][3] == "held" and rows[0][6] == "channel" and "not installed or not enabled" in rows[0][7]
    finally:
        await bridge.close()


async def test_refused_credentials_pause_the_channel_until_reload(tmp_path: Path) -> None:
    bridge = await _assigned(tmp_path)
    try:
        mem, second = bridge.channels["memory"], bridge.channels["second"]
        await mem.inbound("cust", "hi")
        await wait_for(lambda: any("hi" in t for t in second.texts_to("alice")))
        mem.script = [ChannelAuthFailed("Invalid OAuth access token.", code="190")]
        await second.inbound("alice", "kept")
        await wait_for(lambda: bridge.channel_state("memory")[0] is ChannelState.DEGRADED, what="degraded")
        assert "memory" in bridge.relay.health()["paused_channels"]
        await second.inbound("alice", "kept too")
        rows = [r for r in await outbox_rows(bridge) if r[2] == "contact"]
        assert [r[3] for r in rows] == ["pending", "pending"] and mem.sent == []
        await bridge.relay.reload(bridge.config)
        await wait_for(lambda: mem.texts_to("cust") == ["kept", "kept too"], what="resumed")
    finally:
        await bridge.close()


async def test_console_agents_need_no_send(tmp_path: Path) -> None:
    bridge = await make_bridge(tmp_path, FAST)
    try:
        agent, _secret = await add_agent(bridge, "carol", "console")
        from bridge import agents as agents_repo

        await bridge.relay.write(lambda tx: agents_repo.start_shift(tx, agent.id, tx.now(), 3600))
        await bridge.channels["memory"].inbound("cust", "hello console")
        await wait_for(lambda: _all_sent(bridge), what="console row sent")
        rows = await outbox_rows(bridge)
        assert [(r[1], r[3]) for r in rows] == [("console", "sent")]
    finally:
        await bridge.close()


def _all_sent(bridge):  # type: ignore[no-untyped-def]
    async def check() -> bool:
        rows = await outbox_rows(bridge)
        return bool(rows) and all(r[3] == "sent" for r in rows)

    return check()


def test_enqueue_refuses_unknown_recipient_kinds() -> None:
    from bridge.store.repos.outbox import OutboxRepo

    repo = OutboxRepo(None, None)  # type: ignore[arg-type]  # refused before any statement runs
    with pytest.raises(ValueError, match="recipient_kind"):
        repo.enqueue(
            channel="x", recipient="r", recipient_kind="customer", recipient_id=1, text="t",
            key_owner=KeyOwner.contact(1),
        )  # fmt: skip
    assert KeyOwner("system", 0) == SYSTEM_KEY


async def test_per_channel_concurrency_is_bounded(tmp_path: Path) -> None:
    bridge = await _assigned(tmp_path, FAST + "concurrency = 2\n")
    try:
        mem, second = bridge.channels["memory"], bridge.channels["second"]
        for n in range(4):
            await mem.inbound(f"c{n}", f"question {n}")
        await wait_for(lambda: sum(t.startswith("[#") for t in second.texts_to("alice")) == 4)
        mem.gate = asyncio.Event()  # the platform is slow from now on
        for n in range(1, 5):
            await second.inbound("alice", f"/switch {n}")
            await second.inbound("alice", f"answer {n}")
        await wait_for(lambda: mem.in_flight == 2, what="two sends in flight")
        assert len(mem.attempts) == 2  # the other two wait for a free slot
        mem.gate.set()
        await wait_for(lambda: len(mem.sent) == 4, what="all sent")
        assert mem.max_in_flight == 2
        assert sorted(m.text for m in mem.sent) == [f"answer {n}" for n in range(1, 5)]
    finally:
        await bridge.close()


async def test_a_backlog_on_one_channel_does_not_starve_another(tmp_path: Path) -> None:
    bridge = await _assigned(tmp_path, FAST + "concurrency = 1\n", capacity=20)
    try:
        mem, second = bridge.channels["memory"], bridge.channels["second"]
        for n in range(12):
            await mem.inbound(f"c{n}", f"question {n}")
        await wait_for(lambda: sum(t.startswith("[#") for t in second.texts_to("alice")) == 12)
        mem.gate = asyncio.Event()  # memory stalls with a backlog of twelve replies
        for n in range(1, 13):
            await second.inbound("alice", f"/switch {n}")
            await second.inbound("alice", f"answer {n}")
        await wait_for(lambda: mem.in_flight == 1)
        await mem.inbound("c0", "one more thing")  # relayed to alice on the other channel meanwhile
        await wait_for(lambda: any("one more thing" in t for t in second.texts_to("alice")), what="no starvation")
        mem.gate.set()
        await wait_for(lambda: len(mem.sent) == 12, what="backlog drained")
    finally:
        await bridge.close()


async def test_rows_held_for_a_disabled_channel_go_out_when_it_is_enabled_again(tmp_path: Path) -> None:
    from bridge import agents as agents_repo

    without = "[channels.memory]\n[channels.second]\n[channels.windowed]\nenabled = false\n" + FAST
    bridge = await make_bridge(tmp_path, channels=without)
    try:
        agent, _secret = await add_agent(bridge, "wanda", "windowed:+15559999")
        await bridge.relay.write(lambda tx: agents_repo.start_shift(tx, agent.id, tx.now(), 3600))
        # she wrote recently on that platform, so her window is open once the channel is back
        await bridge.relay.write(lambda tx: tx.agents.touch_identity(agent.id, "windowed", "+15559999", tx.now()))
        await bridge.channels["memory"].inbound("cust", "for wanda")

        async def held() -> bool:
            return [(r[1], r[3], r[6]) for r in await outbox_rows(bridge)] == [("windowed", "held", "channel")]

        await wait_for(held, what="held while the channel is off")
    finally:
        await bridge.close()
    with_channel = "[channels.memory]\n[channels.second]\n[channels.windowed]\n" + FAST
    bridge = await make_bridge(tmp_path, channels=with_channel)
    try:
        win = bridge.channels["windowed"]
        await wait_for(lambda: win.texts_to("+15559999") == ["[#1 Customer 1 · Memory] for wanda"], what="released")
    finally:
        await bridge.close()
