"""The :class:`bridge.store.session.Session` on a PostgreSQL connection.

Everything but ids, turns and notifications is the backend-neutral
:class:`KeyedSession`: the same data keys, sealing, blind indexes and
crypto-shredding, on the same rows.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from bridge.store.postgres.connection import PgConnection
from bridge.store.session import KeyedSession

if TYPE_CHECKING:
    from bridge.store.keyring import Keyring

_IDENTIFIER = re.compile(r"^[a-z_][a-z0-9_]*$")
LOCK_PREFIX = "carebridge:"
NOTIFY_PREFIX = "carebridge_"


class PgSession(KeyedSession):
    """A session on one psycopg connection (the writer's, or a reader's from the pool)."""

    conn: PgConnection
    row_locks = " FOR UPDATE SKIP LOCKED"

    def __init__(
        self,
        conn: PgConnection,
        keyring: Keyring,
        clock: Callable[[], float],
        media_dir: Path,
        *,
        writable: bool,
    ) -> None:
        super().__init__(conn, keyring, clock, media_dir, writable=writable)

    def next_id(self, table: str) -> int:
        """The next value of ``table``'s id sequence: unique across every daemon on the database."""
        if not _IDENTIFIER.match(table):
            raise ValueError(f"not a table name: {table!r}")
        row = self.conn.native("SELECT nextval(pg_get_serial_sequence(%s, 'id'))", (table,)).fetchone()
        if row is None or row[0] is None:
            raise ValueError(f"table {table!r} has no id sequence")
        return int(row[0])

    def serialize(self, name: str) -> None:
        """Take a transaction-scoped advisory lock named ``name`` (reads never wait)."""
        if self.writable:
            self.conn.native("SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))", (LOCK_PREFIX + name,))

    def blob_columns(self) -> list[tuple[str, str]]:
        """``(table, column)`` of every ``bytea`` column (SQLite's BLOB) of the store's schema."""
        rows = self.conn.native(
            "SELECT table_name, column_name FROM information_schema.columns"
            " WHERE table_schema = current_schema() AND data_type = 'bytea' ORDER BY table_name, ordinal_position"
        ).fetchall()
        return [(str(table), str(column)) for table, column in rows]

    def notify(self, topic: str) -> None:
        """``NOTIFY carebridge_<topic>`` at commit (PostgreSQL folds repeats within a transaction)."""
        if self.writable:
            self.conn.native("SELECT pg_notify(%s, '')", (NOTIFY_PREFIX + topic,))

    def checkpoint(self) -> None:
        """After an erasure's commit: vacuum ``keys`` so the shredded key's old row version goes too."""
        self.conn.native("VACUUM keys")
