"""Open-loop load in Python (asyncio + aiohttp): webhooks sent on a fixed schedule.

Why open loop for relays: a closed loop slows down with the server and
hides queueing; a platform does not wait for us. Webhook ``i`` is due at
``t0 + i / rate`` whether or not earlier ones were answered. Rates here are
modest (hundreds to a thousand per second), well within what one core of
Python sends, and the generator reports how late it sent (``lag``) so a
generator that fell behind is seen, not mistaken for the daemon.
Connections are capped (``connections``): past that, requests wait for a
connection, and that wait counts in the latency.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import aiohttp

from .payloads import Webhook


@dataclass
class OpenLoopResult:
    """What the generator saw: send moments (``time.monotonic()``), answers, lateness."""

    sent_at: dict[int, float] = field(default_factory=dict)
    answer_ms: list[float] = field(default_factory=list)
    lag_ms: list[float] = field(default_factory=list)
    errors: int = 0
    aborted: bool = False
    started: float = 0.0
    finished: float = 0.0

    @property
    def achieved_rate(self) -> float:
        span = self.finished - self.started
        return len(self.sent_at) / span if span > 0 else 0.0


async def open_loop(
    base_url: str,
    hooks: Sequence[tuple[int, Webhook]],
    rate: float,
    *,
    connections: int = 256,
    abort: asyncio.Event | None = None,
) -> OpenLoopResult:
    """POST ``hooks`` (``(seq, webhook)``) to ``base_url`` at ``rate`` per second; wait for every answer.

    Setting ``abort`` stops the sending early (``aborted`` is then True).
    """
    result = OpenLoopResult()
    connector = aiohttp.TCPConnector(limit=connections)
    timeout = aiohttp.ClientTimeout(total=60)
    pending: set[asyncio.Task[None]] = set()
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:

        async def send(seq: int, hook: Webhook) -> None:
            headers = {"Content-Type": "application/json", "X-Hub-Signature-256": hook.signature}
            sent = time.monotonic()
            result.sent_at[seq] = sent
            try:
                async with session.post(base_url + hook.path, data=hook.body, headers=headers) as response:
                    await response.read()
                    if response.status != 200:
                        result.errors += 1
            except (TimeoutError, aiohttp.ClientError):
                result.errors += 1
            result.answer_ms.append((time.monotonic() - sent) * 1000)

        start = time.monotonic() + 0.05
        result.started = start
        for i, (seq, hook) in enumerate(hooks):
            due = start + i / rate
            delay = due - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            if abort is not None and abort.is_set():
                result.aborted = True
                break
            result.lag_ms.append(max(0.0, time.monotonic() - due) * 1000)
            task = asyncio.create_task(send(seq, hook))
            pending.add(task)
            task.add_done_callback(pending.discard)
        result.finished = time.monotonic()
        if pending:
            await asyncio.gather(*pending)
    return result


async def closed_loop(base_url: str, hooks: Sequence[Webhook], concurrency: int = 32) -> int:
    """POST ``hooks`` with ``concurrency`` workers, each waiting for its answer; return how many failed.

    For setting the scene (customers' first messages), not for measuring.
    """
    failed = 0
    queue = iter(hooks)
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=60)) as session:

        async def worker() -> None:
            nonlocal failed
            for hook in queue:
                headers = {"Content-Type": "application/json", "X-Hub-Signature-256": hook.signature}
                async with session.post(base_url + hook.path, data=hook.body, headers=headers) as response:
                    await response.read()
                    failed += response.status != 200

        await asyncio.gather(*(worker() for _ in range(concurrency)))
    return failed
