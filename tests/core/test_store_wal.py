"""The write-ahead log stays bounded while the store is read all the time (issue 18: 3.3 GB during a backlog)."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from bridge.store import SYSTEM_KEY, Store, Tx, open_store
from bridge.store import wal as store_wal
from tests.core.test_store_kit import settings

MIB = 1024 * 1024


def _write_mib(tx: Tx) -> None:
    for _ in range(4):
        tx.outbox.enqueue(channel="alpha", recipient="agent", recipient_kind="agent", recipient_id=1,
                          text="x" * 256 * 1024, key_owner=SYSTEM_KEY, status="sent")  # fmt: skip


async def _largest_wal_under_constant_reads(store: Store, megabytes: int) -> int:
    """Write ``megabytes`` MiB while a reader holds a 10 ms snapshot after another, back to back."""
    stop = asyncio.Event()

    async def reader() -> None:
        while not stop.is_set():
            await store.read(lambda tx: (tx.outbox.due(time.time()), time.sleep(0.01)))

    readers = asyncio.create_task(reader())
    largest = 0
    try:
        for _ in range(megabytes):
            await store.write(_write_mib)
            largest = max(largest, store.wal_bytes())
    finally:
        stop.set()
        await readers
    return largest


async def test_the_wal_stays_bounded_while_a_reader_is_always_busy(tmp_path: Path) -> None:
    store = await open_store(settings(tmp_path, synchronous="off"))
    try:
        largest = await _largest_wal_under_constant_reads(store, 60)
        stats = store.stats()
    finally:
        await store.close()
    # The store's own reads give way to the checkpoint: one write past the threshold at most.
    assert largest < store_wal.RESTART_BYTES + 2 * MIB, f"WAL reached {largest / MIB:.1f} MiB"
    assert stats["checkpoint_restarts"] >= 1
    # The file itself is cut back once the load is over (journal_size_limit applies at each reset).
    assert store_wal.wal_bytes(tmp_path / "var" / "carebridge.db") <= store_wal.JOURNAL_SIZE_LIMIT


async def test_without_deliberate_checkpoints_the_same_load_grows_the_wal(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The control: SQLite's automatic checkpoint alone cannot reset a WAL that is always being read."""
    threshold = store_wal.RESTART_BYTES
    monkeypatch.setattr(store_wal, "RESTART_BYTES", 1 << 40)
    store = await open_store(settings(tmp_path, synchronous="off"))
    try:
        largest = await _largest_wal_under_constant_reads(store, 60)
    finally:
        await store.close()
    # It resets only when a write happens to fall between two reads: several times the bound above.
    assert largest > 3 * threshold, f"WAL reached only {largest / MIB:.1f} MiB"
