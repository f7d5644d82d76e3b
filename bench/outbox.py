"""Outbox benchmark: how fast a backlog drains with and without a long history, and how big the WAL gets.

Run: ``python bench/outbox.py [--backlog N] [--history H] [--agents A] [--latency S] [--dir DIR]``

For each history size (0, then H sent rows already in the outbox) a fresh
store gets N pending relays to A agents, then a real Bridge starts (the
production worker, store and relay) with one in-process channel that answers
every send after ``--latency`` seconds, like a platform API on loopback. It
prints, side by side: the drain rate (deliveries committed per second), the
median cost of one pick (``outbox.due``) before the drain, the largest WAL
seen while draining (sampled every 50 ms) and the WAL after it.

It uses only the store's long-standing API (``enqueue``, ``due``) and reads
progress and the WAL from the files, so the same script runs against an older
checkout for comparison. Issue 18 measured, before the outbox had its line:
3.5 ms per pick with no history, 490 ms with 5,000 sent rows, and a WAL of
3.3 GB during 50,000 messages.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import shutil
import sqlite3
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any, ClassVar

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bridge import Channel, DeliveryReceipt, OutboundMessage, hookimpl  # noqa: E402
from bridge.app.bridge import Bridge  # noqa: E402
from bridge.config import load_config  # noqa: E402
from bridge.plugins import make_plugin_manager  # noqa: E402
from bridge.relay import strategies  # noqa: E402
from bridge.store import SYSTEM_KEY, Tx  # noqa: E402

TEXT = "[#42 Jan · WhatsApp] Hello, I ordered a blue jacket last week and it still has not arrived." * 2


class BenchChannel(Channel):
    """A platform that takes every message and answers after ``latency`` seconds."""

    name: ClassVar[str] = "bench"
    latency = 0.002

    def __init__(self, config: Any, ctx: Any) -> None:
        super().__init__(config, ctx)
        self.sent = 0

    async def send(self, message: OutboundMessage) -> DeliveryReceipt:
        await asyncio.sleep(self.latency)
        self.sent += 1
        return DeliveryReceipt((f"bench-{message.delivery_id}",))


class _Plugin:
    @hookimpl
    def register_channels(self, register: Callable[[type[Channel]], None]) -> None:
        register(BenchChannel)


def _fill(tx: Tx, *, start: int, count: int, status: str, agents: int) -> None:
    for n in range(start, start + count):
        tx.outbox.enqueue(
            channel="bench", recipient=f"agent-{n % agents}", recipient_kind="agent", recipient_id=1 + n % agents,
            text=TEXT, key_owner=SYSTEM_KEY, status=status,
        )  # fmt: skip


def _pending(db: Path) -> int:
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10)
    try:
        return int(conn.execute("SELECT COUNT(*) FROM outbox WHERE status = 'pending'").fetchone()[0])
    finally:
        conn.close()


def _wal(db: Path) -> int:
    wal = db.with_name(db.name + "-wal")
    return wal.stat().st_size if wal.exists() else 0


def _config(directory: Path) -> Path:
    directory.mkdir(parents=True)
    config_file = directory / "bridge.toml"
    config_file.write_text(
        '[store]\npath = "carebridge.db"\nkey = "file:master.key"\n'
        "[channels.bench]\nenabled = true\n"
        '[delivery]\nconcurrency = 4\nretry_base = "1s"\n',
        encoding="utf-8",
    )
    return config_file


async def run(directory: Path, history: int, backlog: int, agents: int, latency: float) -> dict[str, float]:
    config_file = _config(directory)
    registry = make_plugin_manager(
        load_entry_points=False, plugins=[("core-routing", strategies), ("bench", _Plugin())]
    )
    bridge = await Bridge.create(load_config(config_file), registry)
    try:
        for status, total in (("sent", history), ("pending", backlog)):
            for start in range(0, total, 2000):
                await bridge.store.write(partial(_fill, start=start, count=min(2000, total - start), status=status,
                                                 agents=agents))  # fmt: skip
        db = directory / "carebridge.db"
        picks = []
        for _ in range(21):
            started = time.perf_counter()
            await bridge.store.read(lambda tx: tx.outbox.due(time.time(), per_channel=4))
            picks.append((time.perf_counter() - started) * 1000)
        pick_ms = statistics.median(picks)
        channel = bridge.channels["bench"]
        assert isinstance(channel, BenchChannel)
        channel.latency = latency
        largest_wal = 0
        started = time.perf_counter()
        await bridge.start()
        # Sample the WAL until every answer is in and its outcome committed (the last commit follows the answer).
        while channel.sent < backlog or _pending(db):  # noqa: ASYNC110 - sampling the files is the point
            largest_wal = max(largest_wal, _wal(db))
            await asyncio.sleep(0.02)
        elapsed = time.perf_counter() - started
        return {
            "rate": backlog / elapsed,
            "pick_ms": pick_ms,
            "largest_wal": max(largest_wal, _wal(db)),
            "wal_after": _wal(db),
        }
    finally:
        await bridge.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backlog", type=int, default=20_000, help="pending relays to drain (default 20000)")
    parser.add_argument("--history", type=int, default=20_000, help="sent rows already there (default 20000)")
    parser.add_argument("--agents", type=int, default=8, help="recipients of the backlog (default 8)")
    parser.add_argument("--latency", type=float, default=0.002, help="seconds the platform takes to answer")
    parser.add_argument("--dir", type=Path, default=None, help="where to build the stores (default: a temp dir)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.ERROR)
    base = args.dir or Path(tempfile.mkdtemp(prefix="carebridge-bench-outbox-"))
    try:
        results = {
            history: asyncio.run(run(base / f"history-{history}", history, args.backlog, args.agents, args.latency))
            for history in (0, args.history)
        }
    finally:
        if args.dir is None:
            shutil.rmtree(base, ignore_errors=True)
    mib = 1024 * 1024
    print(f"backlog {args.backlog} relays to {args.agents} agents, platform latency {args.latency * 1000:.1f} ms")
    print(f"{'sent rows before':>18} {'drain /s':>10} {'pick ms':>9} {'max WAL MiB':>12} {'WAL after MiB':>14}")
    for history, r in results.items():
        print(f"{history:>18} {r['rate']:>10.0f} {r['pick_ms']:>9.2f}"
              f" {r['largest_wal'] / mib:>12.1f} {r['wal_after'] / mib:>14.1f}")  # fmt: skip
    first, last = results[0]["rate"], results[args.history]["rate"]
    print(f"drain rate with {args.history} sent rows: {last / first * 100:.0f} % of the rate with none")


if __name__ == "__main__":
    main()
