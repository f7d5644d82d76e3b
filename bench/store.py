"""Store benchmark: insert rate (raw sqlite3 vs the encrypted store), history latency, growth, RSS.

Run: ``python bench/store.py [--writes N] [--concurrency C] [--rounds R] [--messages M] [--dir DIR]``

1. Insert rate. The same 300-byte messages (same text, same platform ids),
   the same schema, WAL, the same ``synchronous`` setting (FULL by default),
   measured R times, interleaved (A B C A B C ...) so a noisy disk or a busy
   neighbour hits every path alike; the median of each is reported:
   A. raw sqlite3: the plaintext rows inserted with ``executemany`` in
      transactions of C rows (exactly as many COMMITs as the store makes), no
      asyncio, no threads. This is "raw sqlite3 inserts of the same rows" and
      the baseline of the issue's target (encrypted >= 50% of it).
   B. raw rows through write(): C concurrent coroutines each awaiting a
      ``store.write()`` of ONE plain INSERT of the plaintext row, i.e. the same
      engine and group commit without encryption: their ratio is the cost of
      encryption alone.
   C. encrypted store: the same, with ``tx.insert_message`` (blind index,
      dedupe, two AES-GCM seals): what a webhook does.
   For scale, a COMMIT per row (what a naive handler does) is measured once.
2. History: the p99 of "newest 50 messages of one conversation", decrypted,
   through ``await store.read()``, in a store of M messages built fast with
   executemany of pre-encrypted rows.
3. Growth: database bytes per 300-byte message.
4. Memory: the process's peak RSS after the insert runs and at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import logging
import os
import random
import resource
import shutil
import sqlite3
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bridge.store import KeyOwner, Store, crypto  # noqa: E402
from bridge.store.repos.messages import external_kind  # noqa: E402
from bridge.store.schema import _M001, _split  # noqa: E402

TEXT = (
    "Hello, I ordered a blue jacket last week and it still has not arrived. Order 4711, "
    "could you check the tracking for me? I need it before Friday. Thanks a lot! "
) * 2
BODY = (TEXT * 2)[:300]


def platform_ids(count: int, seed: int) -> list[str]:
    """Realistic platform message ids (WhatsApp's are base64 of random-looking bytes)."""
    rng = random.Random(seed)
    return ["wamid." + base64.b64encode(rng.randbytes(30)).decode() for _ in range(count)]


@dataclass(frozen=True)
class Settings:
    """StoreConfig-compatible settings."""

    path: Path
    key: str
    synchronous: str


def raw_rate(directory: Path, writes: int, batch: int, synchronous: str, per_row: bool = False) -> float:
    """Plain sqlite3 inserts of the same rows (plaintext), batched like the store batches."""
    path = directory / ("raw-per-row.db" if per_row else "raw.db")
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute(f"PRAGMA synchronous = {synchronous}")
    conn.execute("PRAGMA foreign_keys = ON")
    for statement in _split(_M001):
        conn.execute(statement)
    conn.execute("INSERT INTO contacts(id, created_at) VALUES (1, 0)")
    conn.execute(
        "INSERT INTO conversations(id, contact_id, channel, created_at, updated_at) VALUES (1, 1, 'whatsapp', 0, 0)"
    )
    sql = (
        "INSERT INTO messages(conversation_id, direction, channel, external_index, external_id, status, body, created_at)"
        " VALUES (1, 'in', 'whatsapp', ?, ?, 'received', ?, ?)"
    )
    rows = [(ext.encode(), ext.encode(), BODY.encode(), time.time()) for ext in platform_ids(writes, 1)]
    step = 1 if per_row else batch
    start = time.perf_counter()
    for i in range(0, writes, step):
        conn.execute("BEGIN IMMEDIATE")
        conn.executemany(sql, rows[i : i + step])
        conn.execute("COMMIT")
    elapsed = time.perf_counter() - start
    conn.close()
    return writes / elapsed


_RAW_INSERT = (
    "INSERT INTO messages(conversation_id, direction, channel, external_index, external_id, status, body, created_at)"
    " VALUES (?, 'in', 'whatsapp', ?, ?, 'received', ?, ?)"
)


async def store_rate(
    directory: Path, writes: int, concurrency: int, synchronous: str, *, encrypted: bool = True
) -> tuple[float, Store]:
    """Concurrent writers through store.write(): the webhook path.

    ``encrypted=False`` writes the same rows as plaintext with one plain
    sqlite3 INSERT each, through the same engine: the cost of encryption alone.
    """
    name = "store" if encrypted else "plain"
    settings = Settings(directory / f"{name}.db", f"file:{directory / (name + '.key')}", synchronous)
    store = await Store.open(settings)

    def setup(tx):
        ident, _ = tx.contacts.get_or_create_identity("whatsapp", "+31612345678")
        return tx.conversations.create(ident.contact_id, ident.id, "whatsapp").id

    conv = await store.write(setup)
    owner = await store.read(lambda tx: tx.conversations.owner(conv))
    counter = iter(platform_ids(writes, 1))

    async def writer() -> None:
        for ext in counter:
            if encrypted:
                await store.write(
                    lambda tx, ext=ext: tx.messages.insert(
                        conv, direction="in", channel="whatsapp", text=BODY, external_id=ext, owner=owner
                    )  # fmt: skip
                )
            else:
                await store.write(
                    lambda tx, ext=ext: tx._session.conn.execute(
                        _RAW_INSERT, (conv, ext.encode(), ext.encode(), BODY, time.time())
                    )
                )

    batches = store.batches
    start = time.perf_counter()
    await asyncio.gather(*(writer() for _ in range(concurrency)))
    elapsed = time.perf_counter() - start
    if store.batches - batches > -(-writes // concurrency) * 1.5:
        print(f"  note: {name} made {store.batches - batches} transactions for {writes} writes (small batches)")
    return writes / elapsed, store


def db_bytes(path: Path) -> int:
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    page_count = conn.execute("PRAGMA page_count").fetchone()[0]
    freelist = conn.execute("PRAGMA freelist_count").fetchone()[0]
    page_size = conn.execute("PRAGMA page_size").fetchone()[0]
    conn.close()
    return (page_count - freelist) * page_size


async def build_large(directory: Path, messages: int, conversations: int) -> tuple[Store, list[int], int]:
    """A store of ``messages`` real (encrypted, indexed) messages spread over ``conversations``."""
    settings = Settings(directory / "large.db", f"file:{directory / 'large.key'}", "normal")
    store = await Store.open(settings)

    def make_contacts(tx) -> list[tuple[int, int]]:
        out = []
        for i in range(conversations):
            ident, _ = tx.contacts.get_or_create_identity("whatsapp", f"+3161{i:07d}")
            out.append((tx.conversations.create(ident.contact_id, ident.id, "whatsapp").id, ident.contact_id))
        return out

    convs = await store.write(make_contacts)
    empty = db_bytes(settings.path)

    def bulk(tx) -> None:
        keys = {c: tx._session._key(KeyOwner.contact(contact), create=False)[1] for c, contact in convs}
        blind = tx._session.keyring.blind
        rng = random.Random(7)
        first = tx._session.next_id("messages")
        body = BODY.encode()
        now = time.time() - messages
        chunk: list[tuple] = []
        sql = (
            "INSERT INTO messages(id, conversation_id, direction, channel, external_index, external_id, status,"
            " sensitive, body, created_at) VALUES (?, ?, 'in', 'whatsapp', ?, ?, 'received', 0, ?, ?)"
        )
        kind = external_kind("whatsapp")
        for n in range(messages):
            row_id = first + n
            conv = convs[rng.randrange(conversations)][0]
            aead = keys[conv]
            ext = f"wamid.{base64.b64encode(rng.randbytes(30)).decode()}"
            chunk.append((row_id, conv, blind(kind, ext),
                          crypto.seal(aead, crypto.aad("messages", "external_id", row_id), ext.encode()),
                          crypto.seal(aead, crypto.aad("messages", "body", row_id), body), now + n))  # fmt: skip
            if len(chunk) == 50_000:
                tx._session.conn.executemany(sql, chunk)
                chunk.clear()
        tx._session.conn.executemany(sql, chunk)

    start = time.perf_counter()
    await store.write(bulk)
    print(f"  built {messages:,} messages in {time.perf_counter() - start:.1f} s")
    size = db_bytes(settings.path) - empty
    return store, [c for c, _ in convs], size


async def history_p99(store: Store, convs: list[int], samples: int) -> tuple[float, float]:
    rng = random.Random(11)
    timings = []
    for _ in range(samples):
        conv = rng.choice(convs)
        start = time.perf_counter()
        page = await store.read(lambda tx, conv=conv: tx.messages.recent(conv, 50))
        timings.append(time.perf_counter() - start)
        assert len(page) == 50 and page[-1].text == BODY
    timings.sort()
    return timings[int(len(timings) * 0.99) - 1] * 1000, statistics.median(timings) * 1000


def rss_mib() -> tuple[float, float]:
    """(current, peak) resident set size of this process, MiB."""
    with open("/proc/self/statm") as statm:
        current = int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    return current / 2**20, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


async def insert_rates(
    directory: Path, writes: int, concurrency: int, rounds: int, synchronous: str
) -> dict[str, list[float]]:
    """Rates of A (raw executemany), B (raw rows through write()) and C (encrypted), interleaved."""
    rates: dict[str, list[float]] = {"raw": [], "plain": [], "encrypted": []}
    for n in range(rounds):
        round_dir = directory / f"round{n}"
        round_dir.mkdir()
        rates["raw"].append(raw_rate(round_dir, writes, concurrency, synchronous))
        for name, encrypted in (("plain", False), ("encrypted", True)):
            rate, store = await store_rate(round_dir, writes, concurrency, synchronous, encrypted=encrypted)
            await store.close()
            rates[name].append(rate)
        if n + 1 < rounds:
            shutil.rmtree(round_dir)
    return rates


def spread(values: list[float]) -> str:
    """``median  (min-max)`` of a list of rates."""
    return f"{statistics.median(values):10,.0f} messages/s  ({min(values):,.0f}-{max(values):,.0f})"


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--writes", type=int, default=20_000)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--messages", type=int, default=1_000_000)
    parser.add_argument("--conversations", type=int, default=0, help="default: messages / 200")
    parser.add_argument("--samples", type=int, default=2_000)
    parser.add_argument("--synchronous", default="full")
    parser.add_argument("--dir", type=Path, default=None)
    args = parser.parse_args()
    args.conversations = args.conversations or max(1, args.messages // 200)
    logging.getLogger("carebridge.store").setLevel(logging.ERROR)  # no "generated a new master key" per store
    directory = Path(tempfile.mkdtemp(prefix="carebridge-bench-", dir=args.dir))
    try:
        print(f"insert rate: {args.writes:,} messages of {len(BODY)} bytes, synchronous={args.synchronous.upper()}, "
              f"{args.concurrency} concurrent writers, median of {args.rounds} interleaved rounds (min-max)")  # fmt: skip
        naive = raw_rate(directory, min(args.writes, 2_000), 1, args.synchronous, per_row=True)
        rates = await insert_rates(directory, args.writes, args.concurrency, args.rounds, args.synchronous)
        raw, plain, encrypted = (statistics.median(rates[k]) for k in ("raw", "plain", "encrypted"))
        print(f"  A raw sqlite3, executemany, {args.concurrency} rows per COMMIT: {spread(rates['raw'])}")
        print(f"  B raw rows through store.write():          {spread(rates['plain'])}")
        print(f"  C encrypted store, store.write():          {spread(rates['encrypted'])}")
        print(f"  (raw sqlite3, one COMMIT per row:          {naive:10,.0f} messages/s)")
        verdict = "met" if encrypted / raw >= 0.5 else "NOT met"
        print(f"  C / A  encrypted vs raw sqlite3 inserts:   {encrypted / raw:10.0%}   (target >= 50%: {verdict})")
        print(f"  C / B  cost of encryption alone:           {encrypted / plain:10.0%}")
        print(f"  B / A  cost of the engine (asyncio, savepoints, threads): {plain / raw:.0%}")
        growth = db_bytes(directory / f"round{args.rounds - 1}" / "store.db") / args.writes
        print(f"  store size per message (small db):         {growth:10,.0f} bytes")
        current, peak = rss_mib()
        print(f"  RSS after the insert runs: {current:.0f} MiB (peak {peak:.0f} MiB)")
        print(
            f"history: newest 50 of one conversation, {args.messages:,} messages in {args.conversations:,} conversations"
        )
        large, convs, size = await build_large(directory, args.messages, args.conversations)
        try:
            p99, median = await history_p99(large, convs, args.samples)
            current, _ = rss_mib()
        finally:
            await large.close()
        print(f"  p99 {p99:.2f} ms, median {median:.2f} ms over {args.samples:,} reads   (target p99 < 5 ms)")
        print(f"  growth: {size / args.messages:,.0f} bytes per {len(BODY)}-byte message   (target < 1024)")
        print(f"  RSS with the {args.messages:,}-message store open: {current:.0f} MiB "
              f"(peak {rss_mib()[1]:.0f} MiB, including the bulk build)")  # fmt: skip
    finally:
        shutil.rmtree(directory, ignore_errors=True)


if __name__ == "__main__":
    asyncio.run(main())
