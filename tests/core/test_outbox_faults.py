"""The outbox under faults: lost answers, a stop with sends in flight, a store that cannot write, a backlog.

The promise under test: every delivery reaches its recipient once, or a
second time only where the README's delivery guarantee says so, and then it
is counted (``carebridge_deliveries_possible_duplicates_total``). The lost
answers and the cut-off sends run on both store backends (on PostgreSQL the
worker leases each row before sending it); a PostgreSQL database that turns
read-only stands in for SQLite's full disk.
"""

from __future__ import annotations

import asyncio
import resource
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psycopg
import pytest

from bridge.app.bridge import Bridge
from bridge.errors import StoreWriteError
from bridge.models import StatusUpdate
from tests.core.test_store_kit import Backend
from tests.e2e.harness import CHANNELS, add_agent, login, make_bridge, outbox_rows, retryable, wait_for
from tests.pg import PostgresServer

FAST = '[delivery]\nretry_base = "10ms"\nretry_max = "40ms"\nmax_attempts = 5\n'


def metric(bridge: Bridge, name: str, **labels: str) -> float:
    """A sample's value from the bridge's own Prometheus registry (0 when absent)."""
    value = bridge.metrics.registry.get_sample_value(name, labels)
    return float(value) if value is not None else 0.0


def _on(backend: Backend) -> str:
    """The test channels, after the ``[store]`` keys of ``backend`` (PostgreSQL: the worker leases its rows)."""
    if not backend.postgresql:
        return CHANNELS
    return f'backend = "postgresql"\ndsn = "{backend.dsn}"\n' + CHANNELS


async def _assigned(tmp_path: Path, extra: str, backend: Backend | None = None, **kwargs: Any) -> Bridge:
    """A bridge with agent alice (on ``second``) logged in and customer ``cust`` (on ``memory``) assigned to her."""
    bridge = await make_bridge(tmp_path, extra, channels=_on(backend or Backend("sqlite")), **kwargs)
    _agent, secret = await add_agent(bridge, "alice", "second:alice")
    await login(bridge, "second", "alice", secret)
    mem, second = bridge.channels["memory"], bridge.channels["second"]
    await mem.inbound("cust", "hello")
    await wait_for(lambda: any("hello" in t for t in second.texts_to("alice")), what="relay")
    return bridge


async def _statuses(bridge: Bridge) -> list[str]:
    return [r[3] for r in await outbox_rows(bridge) if r[2] == "contact"]


async def test_a_lost_answer_waits_for_the_platforms_report_and_is_never_sent_again(
    tmp_path: Path, backend: Backend
) -> None:
    bridge = await _assigned(tmp_path, backend=backend, extra=FAST + 'confirm_wait = "1h"\n')
    try:
        mem, second = bridge.channels["memory"], bridge.channels["second"]
        mem.lose_answers = 1  # accepted, then the connection drops
        mem.reports_after = 0.2  # the platform's status names our delivery
        await second.inbound("alice", "one")
        await second.inbound("alice", "two")
        await wait_for(lambda: mem.texts_to("cust") == ["one", "two"], what="both delivered, in order")

        async def settled() -> bool:
            return await _statuses(bridge) == ["sent", "sent"]

        await wait_for(settled, what="both recorded as sent")
        assert [m.text for m in mem.attempts] == ["one", "two"]
        assert metric(bridge, "carebridge_deliveries_total", channel="memory", outcome="uncertain") == 1
        assert metric(bridge, "carebridge_deliveries_total", channel="memory", outcome="confirmed") == 1
        assert metric(bridge, "carebridge_deliveries_possible_duplicates_total", channel="memory") == 0
    finally:
        await bridge.close()


async def test_a_lost_answer_nobody_reports_is_sent_again_after_confirm_wait_and_counted(
    tmp_path: Path, backend: Backend
) -> None:
    bridge = await _assigned(tmp_path, backend=backend, extra=FAST + 'confirm_wait = "300ms"\n')
    try:
        mem, second = bridge.channels["memory"], bridge.channels["second"]
        mem.lose_answers = 1
        started = time.monotonic()
        await second.inbound("alice", "one")
        await wait_for(lambda: len(mem.texts_to("cust")) == 2, what="the resend")
        assert time.monotonic() - started >= 0.3, "no resend before confirm_wait"

        async def settled() -> bool:
            return await _statuses(bridge) == ["sent"]

        await wait_for(settled, what="recorded as sent")
        assert metric(bridge, "carebridge_deliveries_possible_duplicates_total", channel="memory") == 1
        rows = await bridge.store.read(lambda tx: tx._session.conn.execute(
            "SELECT attempts, uncertain_at FROM outbox WHERE recipient_kind = 'contact'").fetchall())  # fmt: skip
        assert rows == [(2, None)]
    finally:
        await bridge.close()


async def test_each_message_is_delivered_once_or_counted_when_answers_get_lost(
    tmp_path: Path, backend: Backend
) -> None:
    bridge = await _assigned(tmp_path, backend=backend, extra=FAST + 'confirm_wait = "200ms"\n')
    try:
        mem, second = bridge.channels["memory"], bridge.channels["second"]
        texts = [f"reply {n}" for n in range(12)]
        for n, text in enumerate(texts):
            mem.lose_answers = 1 if n % 3 else 0  # two of three answers lost
            mem.reports_after = 0.05 if n % 2 else None  # half of them reported
            await second.inbound("alice", text)

            async def settled(count: int = n + 1) -> bool:
                return await _statuses(bridge) == ["sent"] * count

            await wait_for(settled, what=f"{text} settled")
        got = mem.texts_to("cust")
        assert sorted(set(got), key=texts.index) == texts  # nothing lost, order kept
        extra = len(got) - len(texts)
        assert all(got.count(t) in (1, 2) for t in texts)
        assert metric(bridge, "carebridge_deliveries_possible_duplicates_total", channel="memory") == extra > 0
    finally:
        await bridge.close()


async def test_a_stop_lets_sends_in_flight_finish_within_the_grace(tmp_path: Path) -> None:
    bridge = await _assigned(tmp_path, FAST, server='shutdown_timeout = "10s"\n')
    mem, second = bridge.channels["memory"], bridge.channels["second"]
    mem.gate = asyncio.Event()  # a slow platform
    await second.inbound("alice", "slow reply")
    await wait_for(lambda: mem.in_flight == 1, what="the send in flight")
    closing = asyncio.create_task(bridge.close())
    await asyncio.sleep(1.0)
    assert not closing.done(), "the stop waits for the send"
    mem.gate.set()
    await closing
    reopened = await make_bridge(tmp_path, FAST)
    try:
        assert [(r[3], r[4]) for r in await outbox_rows(reopened) if r[2] == "contact"] == [("sent", 1)]
        assert reopened.channels["memory"].attempts == []
    finally:
        await reopened.close()
    assert mem.texts_to("cust") == ["slow reply"]


async def test_sends_cut_off_at_the_end_of_the_grace_are_not_sent_again_blindly(
    tmp_path: Path, backend: Backend
) -> None:
    """Issue: a SIGTERM while sends took 20 s cancelled them, and 4 were sent again after the restart."""
    extra = FAST + 'confirm_wait = "1h"\n'
    bridge = await make_bridge(tmp_path, extra, channels=_on(backend), server='shutdown_timeout = "1s"\n')
    _agent, secret = await add_agent(bridge, "alice", "second:alice")
    await login(bridge, "second", "alice", secret)
    mem, second = bridge.channels["memory"], bridge.channels["second"]
    for customer in ("c1", "c2"):
        await mem.inbound(customer, f"hello from {customer}")
        await wait_for(lambda c=customer: any(c in t for t in second.texts_to("alice")), what="relay")
        await second.inbound("alice", f"/switch {1 if customer == 'c1' else 2}")
        mem.gate = asyncio.Event()  # the platform takes the request and never answers
        await second.inbound("alice", f"answer to {customer}")
    await wait_for(lambda: mem.in_flight == 2, what="two sends in flight")
    started = time.monotonic()
    await bridge.close()
    assert time.monotonic() - started < 3.0, "the stop keeps to the grace"

    restarted = await make_bridge(tmp_path, extra, channels=_on(backend))
    try:
        rows = await restarted.store.read(lambda tx: tx._session.conn.execute(
            "SELECT id, status, uncertain_at IS NOT NULL FROM outbox WHERE recipient_kind = 'contact' ORDER BY id"
        ).fetchall())  # fmt: skip
        assert [r[1:] for r in rows] == [("pending", 1), ("pending", 1)]
        # The platform's report of the first one arrives (Meta retries webhooks we missed): settled, never resent.
        first_id = rows[0][0]
        report = StatusUpdate(channel="memory", status="delivered", timestamp=time.time(),
                              external_id="memory-out-77", delivery_id=first_id)  # fmt: skip
        await restarted.relay.update_status("memory", [report])
        assert [r[3] for r in await outbox_rows(restarted) if r[2] == "contact"] == ["sent", "pending"]
        await asyncio.sleep(0.5)
        assert restarted.channels["memory"].attempts == [], "nothing resent before confirm_wait"
        assert metric(restarted, "carebridge_deliveries_total", channel="memory", outcome="confirmed") == 1
    finally:
        await restarted.close()


@contextmanager
def file_writes_refused() -> Iterator[None]:
    """Every write past a file's first byte fails with EFBIG, as on a full disk.

    ``RLIMIT_FSIZE`` is a real kernel limit (no root needed, no mount): the
    kernel refuses to extend any regular file of this process beyond it, and
    SQLite reports ``SQLITE_IOERR_WRITE`` exactly as for ``ENOSPC`` or a
    read-only remount. CPython ignores ``SIGXFSZ``, so the write fails
    instead of killing the process. Nothing else in the test writes files meanwhile.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (1, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))


async def test_a_store_that_cannot_write_pauses_sending_and_resumes_at_once_when_it_can(tmp_path: Path) -> None:
    # Retries an hour apart: only the store's recovery can bring the deliveries forward.
    bridge = await _assigned(tmp_path, '[delivery]\nretry_base = "1h"\nretry_max = "1h"\n')
    try:
        mem, second = bridge.channels["memory"], bridge.channels["second"]
        await mem.inbound("other", "hi too")
        await wait_for(lambda: any("hi too" in t for t in second.texts_to("alice")), what="second relay")
        mem.gate = asyncio.Event()
        await second.inbound("alice", "/switch 1")
        await second.inbound("alice", "answer while the disk fills")
        await wait_for(lambda: mem.in_flight == 1, what="the send in flight")
        worker = bridge.relay.worker
        assert worker is not None
        with file_writes_refused():
            mem.gate.set()  # the platform accepts; its outcome cannot be committed
            await wait_for(lambda: worker.unrecorded != [], what="the sent outcome kept in memory")
            with pytest.raises(StoreWriteError):
                await second.inbound("alice", "/switch 2")  # a webhook would get 500
            health = bridge.health()
            assert health["status"] == "degraded"
            assert (health["store"]["status"], health["store"]["writable"]) == ("error", False)
            assert "outcome(s) wait for the store" in " ".join(health["outbox"]["degraded"])
            assert metric(bridge, "carebridge_store_failed_commits_total") >= 2
            assert metric(bridge, "carebridge_store_writable") == 0
            await asyncio.sleep(1.5)  # the worker probes the store meanwhile, and sends nothing
            assert len(mem.attempts) == 1  # the answer, once
        recovered = time.monotonic()

        async def recorded() -> bool:
            return await _statuses(bridge) == ["sent"]

        await wait_for(recorded, what="the kept outcome committed once the store can write")
        assert time.monotonic() - recovered < 10, "woken by the recovery, not by the 1 h retry"
        assert bridge.health()["status"] == "ok"
        assert metric(bridge, "carebridge_store_writable") == 1
        assert mem.texts_to("cust") == ["answer while the disk fills"]
        # Sending resumed: a new answer goes straight out.
        await second.inbound("alice", "/switch 2")
        await second.inbound("alice", "and you")
        await wait_for(lambda: mem.texts_to("other") == ["and you"], what="the next answer")
    finally:
        await bridge.close()


async def test_a_backlog_or_a_failing_channel_makes_healthz_degraded(tmp_path: Path) -> None:
    """Issue: /healthz stayed ok through a 60 s Graph outage with 480 rows waiting."""
    extra = '[delivery]\nretry_base = "10ms"\nretry_max = "20ms"\nmax_attempts = 10000\nmax_backlog_age = "2s"\n'
    bridge = await _assigned(tmp_path, extra)
    try:
        mem, second = bridge.channels["memory"], bridge.channels["second"]
        assert bridge.health()["status"] == "ok"
        mem.script = [retryable("HTTP 503")] * 10_000  # the platform is down
        await second.inbound("alice", "are you there?")

        def failing() -> bool:
            return "deliveries on memory keep failing" in bridge.health()["outbox"]["degraded"]

        await wait_for(failing, what="the failing channel reported")
        assert bridge.health()["status"] == "degraded"
        await wait_for(lambda: any("oldest waiting delivery" in r for r in bridge.health()["outbox"]["degraded"]),
                       what="the backlog's age reported")  # fmt: skip
        mem.script = []  # back up
        await wait_for(lambda: bridge.health()["status"] == "ok", what="healthy again once delivered")
        assert mem.texts_to("cust") == ["are you there?"]
    finally:
        await bridge.close()


async def test_a_database_that_refuses_writes_pauses_sending_and_resumes_when_it_takes_them(
    tmp_path: Path, pg_server: PostgresServer, pg_dsn: str
) -> None:
    """PostgreSQL: the database turns read-only under the daemon (as a failed-over standby does) and back."""
    bridge = await _assigned(
        tmp_path, '[delivery]\nretry_base = "1h"\nretry_max = "1h"\n', Backend("postgresql", pg_dsn)
    )
    name = pg_dsn.rsplit("dbname=", 1)[1]

    def read_only(on: bool) -> None:
        """Switch the database's default and cut its sessions: every reconnection gets the new default."""
        with psycopg.connect(pg_server.dsn(), autocommit=True) as admin:
            admin.execute(f'ALTER DATABASE "{name}" SET default_transaction_read_only = {"on" if on else "off"}')
            admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s", (name,))

    try:
        mem, second = bridge.channels["memory"], bridge.channels["second"]
        mem.gate = asyncio.Event()
        await second.inbound("alice", "answer while read-only")
        await wait_for(lambda: mem.in_flight == 1, what="the send in flight")
        worker = bridge.relay.worker
        assert worker is not None
        await asyncio.to_thread(read_only, True)
        mem.gate.set()  # the platform accepts; its outcome cannot be committed
        await wait_for(lambda: worker.unrecorded != [], what="the sent outcome kept in memory")
        with pytest.raises(StoreWriteError):
            await second.inbound("alice", "and another")
        health = bridge.health()
        assert health["status"] == "degraded"
        assert (health["store"]["status"], health["store"]["writable"]) == ("error", False)
        assert "read-only transaction" in health["store"]["write_error"]
        assert metric(bridge, "carebridge_store_failed_commits_total") >= 2
        assert metric(bridge, "carebridge_store_writable") == 0
        assert metric(bridge, "carebridge_store_up", backend="postgresql") == 0
        await asyncio.sleep(1.5)  # the worker probes the store meanwhile, and sends nothing
        assert len(mem.attempts) == 1
        await asyncio.to_thread(read_only, False)
        recovered = time.monotonic()

        async def recorded() -> bool:
            return await _statuses(bridge) == ["sent"]

        await wait_for(recorded, what="the kept outcome committed once the database takes writes")
        assert time.monotonic() - recovered < 10, "resumed by the probe, not by the 1 h retry"
        await wait_for(lambda: bridge.health()["status"] == "ok", what="healthy again")
        assert metric(bridge, "carebridge_store_writable") == 1
        assert mem.texts_to("cust") == ["answer while read-only"]
        await second.inbound("alice", "and you")
        await wait_for(lambda: mem.texts_to("cust") == ["answer while read-only", "and you"], what="the next answer")
    finally:
        await bridge.close()
        await asyncio.to_thread(read_only, False)
