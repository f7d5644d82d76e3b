"""Memory: the daemon's RSS at start, after many messages, with many open conversations; the soak.

RSS is read from ``/proc/PID/statm`` of the ``carebridge run`` process
once its outbox is empty (nothing in flight), so the figures compare
states, not moments of a burst. "After M messages" counts every inbound
message the daemon committed (its ``messages_stored`` counter), topped up
with WhatsApp webhooks from the ingest pool; "with C open conversations"
adds new WhatsApp customers until the scene's conversations (assigned and
queued) number C. ``--soak`` then offers a steady relay load and reads RSS
at fixed intervals: the slope after the first minute says whether it is flat.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

from .openloop import closed_loop, open_loop
from .relay import slope
from .scene import CONVERSATION_POOL, Scene, open_waiting, wait_arrivals

CHUNK = 10_000
#: RSS growing slower than this after the first minute of the soak counts as flat.
FLAT_MIB_PER_MIN = 1.0


@dataclass(frozen=True, slots=True)
class SoakSettings:
    seconds: float
    every: float
    rate: int


async def settled_rss(scene: Scene) -> float:
    await scene.main.wait_outbox_empty(timeout=600)
    await asyncio.sleep(0.5)
    return scene.main.proc.rss_mib()


async def run_memory(scene: Scene, messages: int, conversations: int, say: Any) -> dict[str, Any]:
    daemon = scene.main
    stored = await daemon.stored_in()
    while stored < messages:
        count = min(CHUNK, messages - stored)
        if await closed_loop(daemon.url, list(scene.ingest_hooks(count)), concurrency=64):
            raise RuntimeError("the daemon refused an ingest webhook while topping up")
        stored = await daemon.stored_in()
    after_messages = await settled_rss(scene)
    say(f"memory: RSS {after_messages:.1f} MiB after {stored:,} inbound messages")
    existing = len(scene.customers) + len(scene.senders)
    new = max(0, conversations - existing)
    await open_waiting(scene, daemon, CONVERSATION_POOL, new)
    with_conversations = await settled_rss(scene)
    say(f"memory: RSS {with_conversations:.1f} MiB with {existing + new:,} open conversations")
    return {
        "messages": stored,
        "rss_after_messages_mib": after_messages,
        "open_conversations": existing + new,
        "rss_with_conversations_mib": with_conversations,
    }


async def run_soak(scene: Scene, settings: SoakSettings, say: Any) -> dict[str, Any]:
    """Steady open-loop relays for ``seconds``; RSS and outbox depth every ``every`` seconds.

    Arrivals are collected between the steps without waiting for them, so
    the steps stay ``every`` seconds apart even when the daemon falls
    behind; relays still missing 30 s after the last step count as late.
    """
    daemon = scene.main
    say(f"soak: {settings.rate}/s relays for {settings.seconds:.0f} s, RSS every {settings.every:.0f} s")
    samples = [{"t": 0.0, "rss_mib": daemon.proc.rss_mib(), "outbox": await daemon.outbox_depth()}]
    sent: set[int] = set()
    arrived: set[int] = set()
    errors = 0
    elapsed = 0.0
    while elapsed < settings.seconds - 1e-9:
        step = min(settings.every, settings.seconds - elapsed)
        result = await open_loop(daemon.url, scene.relay_hooks(max(1, round(settings.rate * step))), settings.rate)
        sent |= set(result.sent_at)
        errors += result.errors
        arrived |= set(await scene.graph.take_arrivals()) & sent
        elapsed += step
        samples.append({"t": elapsed, "rss_mib": daemon.proc.rss_mib(), "outbox": await daemon.outbox_depth()})
        say(f"  {elapsed:5.0f} s  RSS {samples[-1]['rss_mib']:7.1f} MiB  outbox {samples[-1]['outbox']:,.0f}")
    arrived |= set(await wait_arrivals(scene, sent - arrived, timeout=30))
    later = [(s["t"] / 60, s["rss_mib"]) for s in samples if s["t"] >= min(60.0, settings.seconds / 5)]
    per_min = slope(later)
    return {
        "rate": settings.rate,
        "seconds": settings.seconds,
        "samples": samples,
        "slope_mib_per_min": per_min,
        "flat": per_min <= FLAT_MIB_PER_MIN,
        "sent": len(sent),
        "late": len(sent) - len(arrived),
        "errors": errors,
    }
