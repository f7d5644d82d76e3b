"""The outbox's line: the pick of due deliveries, its cost whatever the history, and its upkeep.

The line (``outbox.in_line``, kept by triggers) must always say exactly what
the documented rule says: a row is first in line when no earlier pending row
goes to the same recipient on the same channel (a template waits only for
earlier templates); free text behind a held row is marked ``behind_hold``.
A reference implementation of that rule over all rows checks the store's
answer after every step of random operations (on both backends), and a
store with a long history shows the pick reading the same rows as an empty
one. On PostgreSQL two daemons change one stream at once and its line holds.
"""

from __future__ import annotations

import asyncio
import random
import sqlite3
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import sqlite_utils

from bridge.store import SYSTEM_KEY, WINDOW_CLOSED, Store, Tx, open_store, schema
from bridge.store.keyfile import generate_key, write_key_file
from bridge.store.repos import outbox as outbox_repo
from tests.core.test_store_kit import Backend, raw, settings

NOW = 1_000_000.0
CHANNELS = ("alpha", "beta")


@pytest.fixture
async def store(tmp_path: Path, backend: Backend):  # type: ignore[no-untyped-def]
    """A store on each backend (the line is the same triggers on both: PostgreSQL's through the translator)."""
    store = await open_store(backend.settings(tmp_path, synchronous="normal"), clock=lambda: NOW)
    yield store
    await store.close()


@dataclass
class Row:
    id: int
    kind: str
    rid: int
    channel: str
    status: str
    template: bool
    next_at: float


def _rows(tx: Tx) -> list[Row]:
    found = tx._session.conn.execute(  # type: ignore[attr-defined]
        "SELECT id, recipient_kind, recipient_id, channel, status, template, next_attempt_at FROM outbox ORDER BY id"
    ).fetchall()
    return [Row(r[0], r[1], r[2], r[3], r[4], bool(r[5]), r[6]) for r in found]


def _reference(rows: list[Row], now: float, skip: tuple[str, ...] = ()) -> tuple[list[tuple[int, str, bool]], Any]:
    """The documented rule, computed from every row (what the pick must answer)."""
    pending = [r for r in rows if r.status == "pending"]

    def same(a: Row, b: Row) -> bool:
        return (a.kind, a.rid, a.channel) == (b.kind, b.rid, b.channel)

    line = [
        r for r in pending if not any(same(p, r) and p.id < r.id and (not r.template or p.template) for p in pending)
    ]
    held = [r for r in rows if r.status == "held"]
    due = sorted((r for r in line if r.next_at <= now and r.channel not in skip), key=lambda r: (r.next_at, r.id))
    plan = [(r.id, r.channel, not r.template and any(same(h, r) and h.id < r.id for h in held)) for r in due]
    later = [r.next_at for r in line if r.next_at > now and r.channel not in skip]
    return plan, (min(later) if later else None)


def _enqueue(tx: Tx, kind: str, rid: int, channel: str, *, template: bool = False, status: str = "pending") -> int:
    return tx.outbox.enqueue(
        channel=channel, recipient=f"{kind}-{rid}", recipient_kind=kind, recipient_id=rid, text="hello",
        key_owner=SYSTEM_KEY, template=template, status=status, hold_reason=WINDOW_CLOSED if status == "held" else None,
    )  # fmt: skip


def _random_step(tx: Tx, rng: random.Random) -> None:
    rows = _rows(tx)
    pending = [r for r in rows if r.status == "pending"]
    held = [r for r in rows if r.status == "held"]
    choice = rng.random()
    if choice < 0.35 or not rows:
        status = "held" if rng.random() < 0.15 else "pending"
        _enqueue(tx, rng.choice(("agent", "contact")), rng.randint(1, 3), rng.choice(CHANNELS),
                 template=rng.random() < 0.2, status=status)  # fmt: skip
    elif choice < 0.5 and pending:
        row = tx.outbox.load(rng.choice(pending).id)
        assert row is not None
        tx.outbox.mark_sent(row, [])
    elif choice < 0.58 and pending:
        row = tx.outbox.load(rng.choice(pending).id)
        assert row is not None
        tx.outbox.mark_failed(row, "refused")
    elif choice < 0.66 and pending:
        row = tx.outbox.load(rng.choice(pending).id)
        assert row is not None
        tx.outbox.hold(row, WINDOW_CLOSED, "window closed")
    elif choice < 0.74 and held:
        pick = rng.choice(held)
        tx.outbox.release_held(pick.kind, pick.rid, pick.channel)
    elif choice < 0.86 and pending:
        tx.outbox.mark_retry(rng.choice(pending).id, NOW + rng.choice((-5.0, 0.0, 5.0, 50.0)), "HTTP 500")
    elif choice < 0.93 and pending:
        tx.outbox.mark_uncertain(rng.choice(pending).id, NOW + rng.choice((-1.0, 30.0)), "answer lost")
    else:
        tx._session.conn.execute("DELETE FROM outbox WHERE id = ?", (rng.choice(rows).id,))  # type: ignore[attr-defined]


async def test_the_pick_follows_the_documented_order_through_random_changes(store: Store) -> None:
    rng = random.Random(18)
    for step in range(400):
        await store.write(lambda tx: _random_step(tx, rng))
        rows = await store.read(_rows)
        for skip in ((), ("beta",)):
            expected, expected_next = _reference(rows, NOW, skip)
            plan = await store.read(lambda tx, s=skip: tx.outbox.due(NOW, per_channel=1000, skip_channels=s))
            assert (plan.rows, plan.next_at) == (expected, expected_next), f"step {step}"
        # A small per-channel budget takes the soonest rows of each channel, in the same order.
        plan = await store.read(lambda tx: tx.outbox.due(NOW, per_channel=1))
        expected, _ = _reference(rows, NOW)
        firsts = [next(r for r in expected if r[1] == c) for c in CHANNELS if any(r[1] == c for r in expected)]
        assert plan.rows == sorted(firsts, key=expected.index)


async def test_in_flight_rows_are_excluded_and_still_hold_back_their_stream(store: Store) -> None:
    ids = await store.write(lambda tx: [_enqueue(tx, "agent", 1, "alpha") for _ in range(3)])
    other = await store.write(lambda tx: _enqueue(tx, "agent", 2, "alpha"))
    plan = await store.read(lambda tx: tx.outbox.due(NOW, exclude=[ids[0]], per_channel=4))
    assert plan.rows == [(other, "alpha", False)]


async def test_a_cascade_delete_moves_the_line_on(store: Store) -> None:
    def setup(tx: Tx) -> tuple[int, int]:
        ident, _ = tx.contacts.get_or_create_identity("alpha", "cust-1")
        conv = tx.conversations.create(ident.contact_id, ident.id, "alpha")
        tx.outbox.enqueue(channel="alpha", recipient="a", recipient_kind="agent", recipient_id=1, text="x",
                                  key_owner=SYSTEM_KEY, conversation_id=conv.id)  # fmt: skip
        later = _enqueue(tx, "agent", 1, "alpha")
        return conv.id, later

    conv_id, later = await store.write(setup)
    assert [r[0] for r in (await store.read(lambda tx: tx.outbox.due(NOW))).rows] != [later]
    await store.write(lambda tx: tx._session.conn.execute("DELETE FROM conversations WHERE id = ?", (conv_id,)))
    assert (await store.read(lambda tx: tx.outbox.due(NOW))).rows == [(later, "alpha", False)]


def _fill(tx: Tx, start: int, count: int, status: str, agents: int) -> None:
    for n in range(start, start + count):
        tx.outbox.enqueue(channel="alpha", recipient="agent", recipient_kind="agent", recipient_id=n % agents,
                          text="x" * 200, key_owner=SYSTEM_KEY, status=status)  # fmt: skip


async def _store_with(tmp_path: Path, sent: int, backlog: int, agents: int) -> Store:
    store = await open_store(settings(tmp_path, synchronous="off"), clock=lambda: NOW)
    for status, total in (("sent", sent), ("pending", backlog)):
        for start in range(0, total, 2000):
            count = min(2000, total - start)
            await store.write(lambda tx, s=start, c=count, st=status: _fill(tx, s, c, st, agents))
    return store


def _counting(tx: Tx, work: Callable[[Tx], Any]) -> tuple[Any, int]:
    """Run ``work`` and count the SQLite virtual-machine steps it took (rows read and written show up there)."""
    conn: sqlite3.Connection = tx._session.conn  # type: ignore[attr-defined]
    steps = [0]

    def tick() -> int:
        steps[0] += 1
        return 0

    conn.set_progress_handler(tick, 1)
    try:
        return work(tx), steps[0]
    finally:
        conn.set_progress_handler(None, 1)


def _pick_plans(tx: Tx) -> list[str]:
    conn: sqlite3.Connection = tx._session.conn  # type: ignore[attr-defined]
    statements = (
        (outbox_repo._CHANNELS_IN_LINE, ()),
        (outbox_repo._DUE_ON_CHANNEL, ("alpha", NOW, 8)),
        (outbox_repo._NEXT_ON_CHANNEL, ("alpha", NOW)),
    )
    return [row[3] for sql, args in statements for row in conn.execute(f"EXPLAIN QUERY PLAN {sql}", args)]


@pytest.mark.parametrize("agents", [1, 8])
async def test_picking_costs_the_same_with_20000_sent_rows_and_a_backlog(tmp_path: Path, agents: int) -> None:
    """Issue: the pick scanned every earlier row to the same recipient (1.5 s per pick at 3,000 sent)."""
    costs = []
    for sent in (0, 20_000):
        store = await _store_with(tmp_path / f"s{sent}", sent, 3000, agents)
        try:
            plans = await store.read(_pick_plans)
            # Every step is an index seek on the line or on held rows: no scan of the table or its history.
            assert all(
                p.startswith(("SEARCH", "SCAN line", "CO-ROUTINE", "SETUP", "RECURSIVE", "CORRELATED")) for p in plans
            ), plans
            assert any("USING INDEX outbox_line (channel=? AND next_attempt_at<?)" in p for p in plans), plans
            assert any("USING INDEX outbox_held_stream" in p for p in plans), plans
            plan, pick_steps = await store.read(lambda tx: _counting(tx, lambda t: t.outbox.due(NOW, per_channel=4)))
            assert len(plan.rows) == min(agents, 4)

            def deliver_one(tx: Tx, row_id: int = plan.rows[0][0]) -> None:
                delivery = tx.outbox.load(row_id)
                assert delivery is not None
                tx.outbox.mark_sent(delivery, ["platform-id"])
                _enqueue(tx, "agent", 0, "alpha")

            _, write_steps = await store.write(lambda tx: _counting(tx, deliver_one))
            costs.append((pick_steps, write_steps))
        finally:
            await store.close()
    # The same number of steps, exactly: the history is never read, and the
    # backlog behind each recipient's first row is never read either.
    assert costs[0] == costs[1], costs
    assert costs[0][0] < 1000


async def test_migration_puts_an_existing_backlog_in_line(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    conn = sqlite3.connect(path, isolation_level=None)
    from bridge.store import scrub

    scrub.register(conn)
    db = sqlite_utils.Database(conn)
    for number, label, fn in schema.migrations():
        if number > 102:
            break
        conn.execute("BEGIN")
        if number == 1:
            schema._create_version_table(db)
        fn(db)
        conn.execute("INSERT INTO schema_migrations VALUES (?, ?, 0)", (number, label))
        conn.execute("COMMIT")
    rows = [  # (status, recipient_id, template)
        ("sent", 1, 0), ("pending", 1, 0), ("pending", 1, 0), ("pending", 1, 1),
        ("held", 2, 0), ("pending", 2, 0), ("pending", 2, 1), ("pending", 2, 1),
    ]  # fmt: skip
    for status, rid, template in rows:
        conn.execute(
            "INSERT INTO outbox (key_kind, key_owner, channel, recipient_kind, recipient_id, recipient, body, template,"
            " status, next_attempt_at, created_at) VALUES ('system', 2, 'alpha', 'agent', ?, x'00', x'00', ?, ?, 0, 0)",
            (rid, template, status),
        )
    assert schema.migrate(db) >= 103
    in_line = [r[0] for r in conn.execute("SELECT id FROM outbox WHERE in_line = 1 ORDER BY id")]
    assert in_line == [2, 4, 6, 7]
    conn.close()
    assert raw(path).execute("SELECT count(*) FROM sqlite_master WHERE name = 'outbox_due'").fetchone()[0] == 0


async def test_two_daemons_changing_one_stream_at_once_keep_its_line(tmp_path: Path, pg_dsn: str) -> None:
    """PostgreSQL, two daemons: one sends a stream's head while the other enqueues behind it, in overlapping
    transactions. Each trigger must see the other's change (the stream's turn), or the new row is never in line."""
    backend = Backend("postgresql", pg_dsn)
    write_key_file(tmp_path / "var" / "master.key", generate_key())
    first, second = await asyncio.gather(*(open_store(backend.settings(tmp_path), clock=lambda: NOW) for _ in range(2)))
    try:
        head = await first.write(lambda tx: _enqueue(tx, "contact", 1, "alpha"))
        for round_ in range(12):
            both_begun = threading.Barrier(2, timeout=10)

            def send_head(tx: Tx, row_id: int = head, begun: threading.Barrier = both_begun) -> None:
                begun.wait()
                delivery = tx.outbox.load(row_id)
                assert delivery is not None
                tx.outbox.mark_sent(delivery, [])
                time.sleep(0.02)  # still uncommitted while the other daemon's trigger runs

            def enqueue(tx: Tx, begun: threading.Barrier = both_begun) -> int:
                begun.wait()
                row_id = _enqueue(tx, "contact", 1, "alpha")
                time.sleep(0.02)
                return row_id

            _, head = await asyncio.gather(first.write(send_head), second.write(enqueue))
            rows = await first.read(_rows)
            expected, _ = _reference(rows, NOW)
            assert expected == [(head, "alpha", False)], f"round {round_}"
            assert (await second.read(lambda tx: tx.outbox.due(NOW))).rows == expected, f"round {round_}"
    finally:
        await first.close()
        await second.close()


async def test_migration_puts_an_existing_backlog_in_line_on_postgresql(pg_dsn: str) -> None:
    from bridge.store.postgres import migrate as pg_migrate
    from bridge.store.postgres.connection import PgConnection, connect

    conn = PgConnection(connect(pg_dsn))
    try:
        pg_migrate.migrate(conn, until=102)
        rows = [  # (status, recipient_id, template), as in the SQLite test above
            ("sent", 1, 0), ("pending", 1, 0), ("pending", 1, 0), ("pending", 1, 1),
            ("held", 2, 0), ("pending", 2, 0), ("pending", 2, 1), ("pending", 2, 1),
        ]  # fmt: skip
        for status, rid, template in rows:
            conn.execute(
                "INSERT INTO outbox (key_kind, key_owner, channel, recipient_kind, recipient_id, recipient, body,"
                " template, status, next_attempt_at, created_at) VALUES ('system', 2, 'alpha', 'agent', ?, ?, ?, ?, ?,"
                " 0, 0)",
                (rid, b"\x00", b"\x00", template, status),
            )
        assert pg_migrate.migrate(conn) >= 103
        in_line = [r[0] for r in conn.execute("SELECT id FROM outbox WHERE in_line = 1 ORDER BY id").fetchall()]
        assert in_line == [2, 4, 6, 7]
        # The triggers came through the translator, each taking its stream's turn first.
        sources = conn.native(
            "SELECT proname, prosrc FROM pg_proc WHERE proname LIKE 'outbox_line_%%_fn' ORDER BY proname"
        ).fetchall()
        assert [name for name, _ in sources] == [
            "outbox_line_delete_fn",
            "outbox_line_insert_fn",
            "outbox_line_status_fn",
        ]
        assert all(
            "pg_advisory_xact_lock(hashtextextended('carebridge:outbox-line:'" in source for _, source in sources
        )
        indexes = {r[0] for r in conn.native("SELECT indexname FROM pg_indexes WHERE tablename = 'outbox'").fetchall()}
        assert {"outbox_line", "outbox_line_stream", "outbox_pending_stream", "outbox_held_stream"} <= indexes
        assert "outbox_due" not in indexes
    finally:
        conn.raw.close()
