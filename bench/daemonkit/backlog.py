"""Backlog: N relays queued behind a slow platform, then drained; with history and without.

Method: the fake Graph API answers every call one second late, so the
outbox (4 parallel sends per channel by default) barely moves, and N
customer messages are posted to the agents' customers. Then the fake
answers at once again and the drain is timed from that moment to the
arrival of the last relay: relays/s. The same is done on a second daemon
with a fresh store (the same agents and customers, no other history),
which tells whether a store with history drains slower. The WAL file
(``<db>-wal``) is sampled every 50 ms throughout and its maximum printed.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from .openloop import closed_loop
from .scene import Scene, open_customers, staff, start_daemon, wait_arrivals
from .world import Daemon

SLOW = 1.0  # seconds the fake takes per call while the backlog builds


async def sample_wal(daemon: Daemon, stop: asyncio.Event, every: float = 0.05) -> int:
    """The largest WAL size seen until ``stop`` is set."""
    largest = daemon.wal_bytes()
    while not stop.is_set():
        largest = max(largest, daemon.wal_bytes())
        try:
            await asyncio.wait_for(stop.wait(), every)
        except TimeoutError:
            pass
    return max(largest, daemon.wal_bytes())


async def drain(scene: Scene, daemon: Daemon, customers: list[str], count: int) -> dict[str, Any]:
    """Queue ``count`` relays behind the slow fake, release it, time the drain."""
    await daemon.wait_outbox_empty(timeout=300)
    hooks = scene.relay_hooks(count, customers)
    stop = asyncio.Event()
    wal = asyncio.create_task(sample_wal(daemon, stop))
    try:
        await scene.graph.set_delay(SLOW)
        started = time.monotonic()
        if await closed_loop(daemon.url, [hook for _, hook in hooks], concurrency=64):
            raise RuntimeError("the daemon refused a webhook while the backlog built")
        queued_in = time.monotonic() - started
        depth = await daemon.outbox_depth()
        early = await scene.graph.take_arrivals()
        await scene.graph.set_delay(0.0)
        released = time.monotonic()
        rest = {seq for seq, _ in hooks} - set(early)
        arrived = await wait_arrivals(scene, rest, timeout=max(600.0, count / 10))
        if len(arrived) != len(rest):
            raise RuntimeError(f"backlog: only {len(arrived)} of {len(rest)} relays arrived after the release")
        last = max(arrived.values(), default=released)
        await daemon.wait_outbox_empty(timeout=120)
    finally:
        await scene.graph.set_delay(0.0)
        stop.set()
        wal_max = await wal
    seconds = max(1e-9, last - released)
    return {
        "relays": count,
        "queued_in_s": queued_in,
        "outbox_at_release": depth,
        "drained": len(arrived),
        "drain_s": seconds,
        "drain_per_s": len(arrived) / seconds,
        "wal_max_bytes": wal_max,
    }


async def run_backlog(scene: Scene, count: int, say: Any) -> dict[str, Any]:
    say(f"backlog: {count:,} relays to {len(scene.agents)} agents queued behind a fake answering in {SLOW:.0f} s, "
        f"then drained; a fresh store for comparison")  # fmt: skip
    history = await drain(scene, scene.main, scene.customers, count)
    say(f"  store with history: {history['drain_per_s']:7,.0f} relays/s  (outbox {history['outbox_at_release']:,.0f} "
        f"at release, WAL max {history['wal_max_bytes'] / 2**20:.1f} MiB)")  # fmt: skip
    fresh_daemon = await start_daemon(scene, "fresh")
    try:
        await staff(scene, fresh_daemon)
        customers = await open_customers(scene, fresh_daemon)
        fresh = await drain(scene, fresh_daemon, customers, count)
    finally:
        fresh_daemon.stop()
    say(f"  fresh store:        {fresh['drain_per_s']:7,.0f} relays/s  (outbox {fresh['outbox_at_release']:,.0f} "
        f"at release, WAL max {fresh['wal_max_bytes'] / 2**20:.1f} MiB)")  # fmt: skip
    return {"history": history, "fresh": fresh, "ratio": history["drain_per_s"] / fresh["drain_per_s"]}
