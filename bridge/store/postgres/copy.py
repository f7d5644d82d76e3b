"""``carebridge store migrate --to DSN``: copy a SQLite store into an empty PostgreSQL database.

Why a plain copy is enough: every ciphertext is bound to its table, column
and row id (the AES-GCM associated data) and to its owner's data key, and
the wrapped data keys, the key check and the HMAC root travel with the rows,
so the copy opens with the same master key and nothing is decrypted or
re-encrypted on the way. Rows go with COPY inside one transaction (foreign
keys deferred, the tables' own triggers paused so derived columns arrive as
they were), each id sequence continues after the SQLite counter, and then
the copy is checked: equal row counts in every table, a sample of messages
and contacts decrypted on both sides and compared, and the audit chain
verified on the copy. Media files stay where they are: both backends keep
them in the directory beside ``[store] path``.
"""

from __future__ import annotations

import asyncio
import functools
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg

from bridge.errors import StoreError
from bridge.store.engine import Progress, Store, StoreSettings
from bridge.store.postgres import migrate as pg_migrate
from bridge.store.postgres.connection import PgConnection, connect
from bridge.store.postgres.engine import PostgresStore, describe_dsn

_CHUNK = 1000
_SKIPPED = ("schema_migrations",)


@dataclass
class CopyReport:
    """What ``copy_sqlite_store`` did: rows per table, what it sampled, where media are."""

    target: str
    rows: dict[str, int] = field(default_factory=dict)
    sampled: int = 0
    audit_entries: int = 0
    media_dir: Path = Path()

    @property
    def total(self) -> int:
        """Rows copied in all."""
        return sum(self.rows.values())


@dataclass(frozen=True)
class _Target:
    """Settings of the PostgreSQL store the copy opens for its checks (same key, same media)."""

    path: Path
    key: str
    dsn: str
    synchronous: str = "full"
    backend: str = "postgresql"
    pool_size: int = 2


async def copy_sqlite_store(
    settings: StoreSettings, dsn: str, *, progress: Progress | None = None, sample: int = 50
) -> CopyReport:
    """Copy the SQLite store of ``settings`` into the empty database ``dsn``; check it; return a report.

    :raises StoreError: the target is not empty or unreachable, the source is
        not a current store, or a check fails (the message says which).
    """
    source = await Store.open(settings, create_missing_key=False, must_exist=True)  # SQLite; key and schema checked
    try:
        version = source.schema_version
        report = await asyncio.to_thread(_copy, Path(settings.path), dsn, version, progress)
        report.media_dir = source.media_dir
        target = await PostgresStore.open(
            _Target(Path(settings.path), settings.key, dsn), create_missing_key=False, must_exist=True
        )
        try:
            await _check(source, target, report, sample)
        finally:
            await target.close()
    finally:
        await source.close()
    return report


def _copy(path: Path, dsn: str, version: int, progress: Progress | None) -> CopyReport:
    report = CopyReport(describe_dsn(dsn))
    try:
        raw = connect(dsn)
    except psycopg.Error as err:
        raise StoreError(f"cannot connect to the {report.target}: {str(err).strip().splitlines()[0]}") from err
    lite = sqlite3.connect(f"file:{path}?mode=ro", uri=True, isolation_level=None)
    try:
        conn = PgConnection(raw)
        tables = conn.native(
            "SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
            " WHERE n.nspname = current_schema() AND c.relkind IN ('r', 'p', 'v', 'm', 'S')"
        ).fetchall()[0][0]
        if tables:
            raise StoreError(f"the {report.target} is not empty ({tables} relations); store migrate needs an empty one")
        pg_migrate.migrate(conn, until=version)
        lite.execute("BEGIN")  # one snapshot of the source
        names = [
            str(r[0])
            for r in lite.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name"
            )
            if r[0] not in _SKIPPED
        ]
        counts = {name: int(lite.execute(f'SELECT count(*) FROM "{name}"').fetchone()[0]) for name in names}
        if progress is not None:
            progress.start(sum(counts.values()))
        for name in names:
            if not conn.native("SELECT to_regclass(%s) IS NOT NULL", (name,)).fetchall()[0][0]:
                raise StoreError(f"table {name} of the SQLite store has no counterpart in the PostgreSQL schema")
        conn.native("BEGIN")
        try:
            # Triggers paused before the first row (none may have events pending when paused);
            # foreign keys are checked once, at COMMIT.
            for name in names:
                conn.native(f"ALTER TABLE {name} DISABLE TRIGGER USER")
            conn.native("SET CONSTRAINTS ALL DEFERRED")
            for name in names:
                _copy_table(lite, conn, name, progress)
                report.rows[name] = counts[name]
            _continue_sequences(lite, conn, names)
            conn.native("COMMIT")
        except BaseException:
            conn.native("ROLLBACK")
            raise
        conn.native("BEGIN")
        for name in names:
            conn.native(f"ALTER TABLE {name} ENABLE TRIGGER USER")
        conn.native("COMMIT")
        lite.execute("ROLLBACK")
    except psycopg.Error as err:
        raise StoreError(f"copying into the {report.target} failed: {str(err).strip().splitlines()[0]}") from err
    finally:
        lite.close()
        raw.close()
    return report


def _copy_table(lite: sqlite3.Connection, conn: PgConnection, name: str, progress: Progress | None) -> None:
    columns = [str(r[1]) for r in lite.execute(f'SELECT * FROM pragma_table_info("{name}")')]
    listed = ", ".join(columns)
    cursor = lite.execute(f'SELECT {listed} FROM "{name}"')
    with conn.raw.cursor() as pg, pg.copy(f"COPY {name} ({listed}) FROM STDIN".encode()) as copy:
        while True:
            rows = cursor.fetchmany(_CHUNK)
            if not rows:
                break
            for row in rows:
                copy.write_row(row)
            if progress is not None:
                progress.advance(len(rows))


def _continue_sequences(lite: sqlite3.Connection, conn: PgConnection, names: list[str]) -> None:
    """Each id sequence continues after SQLite's AUTOINCREMENT counter: an id is never used twice."""
    counters = dict(lite.execute("SELECT name, seq FROM sqlite_sequence").fetchall())
    for name in names:
        if "id" not in {str(r[1]) for r in lite.execute(f'SELECT * FROM pragma_table_info("{name}")')}:
            continue
        sequence = conn.native("SELECT pg_get_serial_sequence(%s, 'id')", (name,)).fetchall()
        if not sequence or sequence[0][0] is None:
            continue
        top = lite.execute(f'SELECT max(id) FROM "{name}"').fetchone()[0] or 0
        last = max(int(counters.get(name) or 0), int(top))
        if last:
            conn.native("SELECT setval(%s, %s)", (sequence[0][0], last))


async def _check(source: Store, target: Store, report: CopyReport, sample: int) -> None:
    """Row counts, a sample of decrypted texts on both sides, and the audit chain of the copy."""
    for name, expected in report.rows.items():
        found = await target.read(functools.partial(_count, name))
        if found != expected:
            raise StoreError(f"table {name}: {expected} rows in the SQLite store, {found} in the copy")
    loaders: tuple[tuple[str, Callable[[int, Any], str | None]], ...] = (
        ("messages", _message_text),
        ("contacts", _contact_name),
    )
    for table, load in loaders:
        for row_id in await source.read(functools.partial(_sample_ids, table, sample)):
            before = await source.read(functools.partial(load, row_id))
            after = await target.read(functools.partial(load, row_id))
            if before != after:
                raise StoreError(f"{table} row {row_id} does not decrypt to the same text in the copy")
            report.sampled += 1
    check = await target.read(_verify_audit)
    if not check.ok:
        raise StoreError(f"the copy's audit log does not verify at entry {check.bad_id}: {check.reason}")
    report.audit_entries = check.count


def _count(table: str, tx: Any) -> int:
    return int(tx._session.execute(f"SELECT count(*) FROM {table}").fetchone()[0])


def _sample_ids(table: str, sample: int, tx: Any) -> list[int]:
    """Up to ``sample`` ids spread over the whole table."""
    ids = [int(r[0]) for r in tx._session.execute(f"SELECT id FROM {table} ORDER BY id").fetchall()]
    step = max(1, len(ids) // max(1, sample))
    return ids[::step][:sample]


def _verify_audit(tx: Any) -> Any:
    return tx.audit.verify()


def _message_text(message_id: int, tx: Any) -> str | None:
    message = tx.messages.get(message_id, strict=False)
    return None if message is None else message.text


def _contact_name(contact_id: int, tx: Any) -> str | None:
    contact = tx.contacts.get(contact_id)
    return None if contact is None else contact.name
