"""The numbered migrations of ``bridge.store.schema`` run on PostgreSQL.

The list is the one SQLite runs; :class:`PgMigrationDb` is the ``db`` each
migration function receives here: its ``execute`` translates SQLite DDL
(``bridge.store.postgres.dialect``), collects the foreign keys that
``CREATE TABLE`` statements name, and adds them once the migration's tables
exist (SQLite allows forward references). After each migration every id
sequence is moved past the highest id, so a table rebuilt by copying rows
with their ids goes on without collisions. Daemons starting together take
turns with an advisory lock.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import psycopg

from bridge.errors import StoreError
from bridge.store import schema
from bridge.store.postgres import dialect
from bridge.store.postgres.connection import PgConnection

MIGRATION_LOCK = "carebridge:migrations"


class _Table:
    """Enough of ``sqlite_utils``' table object for migrations that ask whether a table exists."""

    def __init__(self, db: PgMigrationDb, name: str) -> None:
        self._db, self.name = db, name

    def exists(self) -> bool:
        return self._db.table_exists(self.name)


class PgMigrationDb:
    """What a migration function gets on PostgreSQL (``schema.dialect(db) == "postgresql"``)."""

    dialect = "postgresql"

    def __init__(self, conn: PgConnection) -> None:
        self.conn = conn
        self._foreign_keys: list[dialect.ForeignKey] = []

    def execute(self, sql: str, parameters: Sequence[Any] | None = None) -> psycopg.Cursor[Any] | None:
        """Run one statement of SQLite DDL or DML, translated."""
        translated = dialect.ddl(sql)
        if translated.drop_trigger is not None:
            self._drop_trigger(*translated.drop_trigger)
            return None
        cursor = None
        for statement in translated.statements:
            if parameters:
                cursor = self.conn.execute(statement, parameters)
            else:
                cursor = self.conn.native(statement)
        self._foreign_keys.extend(translated.foreign_keys)
        return cursor

    def execute_native(self, sql: str) -> None:
        """Run a PostgreSQL statement as it is (``schema.postgresql_only``)."""
        self.conn.native(sql)

    def __getitem__(self, name: str) -> _Table:
        return _Table(self, name)

    def table_exists(self, name: str) -> bool:
        """Whether ``name`` is a table in the current schema."""
        row = self.conn.native("SELECT to_regclass(%s) IS NOT NULL", (name,)).fetchone()
        return bool(row and row[0])

    def _drop_trigger(self, name: str, if_exists: bool) -> None:
        row = self.conn.native(
            "SELECT tgrelid::regclass::text FROM pg_trigger WHERE tgname = %s AND NOT tgisinternal", (name,)
        ).fetchone()
        if row is None:
            if if_exists:
                return
            raise StoreError(f"no trigger {name}")
        self.conn.native(f"DROP TRIGGER {name} ON {row[0]}")
        self.conn.native(f"DROP FUNCTION IF EXISTS {name}_fn()")

    def finish(self) -> None:
        """Add the collected foreign keys; move every id sequence past its table's highest id."""
        for key in self._foreign_keys:
            self.conn.native(key.statement())
        self._foreign_keys.clear()
        sync_sequences(self.conn)


def sync_sequences(conn: PgConnection) -> None:
    """Set each ``<table>.id`` sequence to at least the table's highest id."""
    rows = conn.native(
        "SELECT c.relname, pg_get_serial_sequence(c.relname, 'id') FROM pg_class c"
        " JOIN pg_namespace n ON n.oid = c.relnamespace AND n.nspname = current_schema()"
        " JOIN pg_attribute a ON a.attrelid = c.oid AND a.attname = 'id' AND NOT a.attisdropped"
        " WHERE c.relkind = 'r'"
    ).fetchall()
    for table, sequence in rows:
        if sequence is None:
            continue
        conn.native(
            f"SELECT setval(%s, GREATEST((SELECT max(id) FROM {table}), (SELECT last_value FROM {sequence}), 1),"
            f" (SELECT max(id) FROM {table}) IS NOT NULL OR (SELECT is_called FROM {sequence}))",
            (sequence,),
        )


def current_version(conn: PgConnection) -> int:
    """The highest migration applied (0 for an empty database)."""
    exists = conn.native("SELECT to_regclass('schema_migrations') IS NOT NULL").fetchone()
    if not exists or not exists[0]:
        return 0
    row = conn.native("SELECT max(number) FROM schema_migrations").fetchone()
    return int(row[0] or 0) if row else 0


def check_not_newer(conn: PgConnection) -> int:
    """Refuse a database migrated by a newer Carebridge; return its version."""
    version = current_version(conn)
    latest = schema.latest_version()
    if version > latest:
        raise StoreError(f"database schema version {version} is newer than this Carebridge ({latest})")
    return version


def migrate(conn: PgConnection, *, until: int | None = None) -> int:
    """Apply every pending migration (up to ``until``), each in its own transaction; return the version."""
    conn.native("SELECT pg_advisory_lock(hashtextextended(%s, 0))", (MIGRATION_LOCK,))
    try:
        check_not_newer(conn)
        for number, label, fn in schema.migrations():
            if until is not None and number > until:
                break
            conn.native("BEGIN")
            try:
                if number == 1:
                    conn.native(
                        "CREATE TABLE IF NOT EXISTS schema_migrations("
                        "number BIGINT PRIMARY KEY, name TEXT NOT NULL, applied_at DOUBLE PRECISION NOT NULL)"
                    )
                applied = (
                    current_version(conn)
                    and conn.native("SELECT 1 FROM schema_migrations WHERE number = %s", (number,)).fetchone()
                )
                if not applied:
                    db = PgMigrationDb(conn)
                    fn(db)
                    db.finish()
                    conn.native(
                        "INSERT INTO schema_migrations(number, name, applied_at) VALUES (%s, %s, %s)",
                        (number, label, time.time()),
                    )
                conn.native("COMMIT")
            except psycopg.Error as err:
                conn.native("ROLLBACK")
                raise StoreError(f"migration {number} ({label}) failed on PostgreSQL: {err}") from err
            except BaseException:
                conn.native("ROLLBACK")
                raise
        return current_version(conn)
    finally:
        conn.native("SELECT pg_advisory_unlock(hashtextextended(%s, 0))", (MIGRATION_LOCK,))
