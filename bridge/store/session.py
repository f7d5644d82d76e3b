"""The primitives every repository is built on: SQL, clock, ids, sealing, blind indexes, keys.

Why a seam here: the repositories (``bridge.store.repos``) hold the
statements and the encryption rules of each table; what they need from a
database backend is this small :class:`Session` protocol. ``SqliteSession``
is the SQLite implementation, used by the engine's writer and reader
threads; a session is valid only while one ``store.write``/``store.read``
function runs. Nothing outside ``bridge.store`` sees a session or a
connection: write functions get a :class:`bridge.store.tx.Tx`.

:class:`KeyedSession` holds what every backend shares (data keys created and
forgotten with savepoints, sealing, callbacks after commit or rollback) on
any DB-API style connection; ``SqliteSession`` adds SQLite's ids and WAL
checkpoint, ``bridge.store.postgres.session.PgSession`` PostgreSQL's.
"""

from __future__ import annotations

import abc
import logging
import re
import sqlite3
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from bridge.errors import IntegrityError, StoreError
from bridge.store import crypto
from bridge.store.dbapi import Connection
from bridge.store.keyring import KeyOwner

if TYPE_CHECKING:
    from bridge.store.keyring import Keyring

log = logging.getLogger("carebridge.store")

_IDENTIFIER = re.compile(r"^[a-z_][a-z0-9_]*$")


class Cursor(Protocol):
    """What a statement returns: rows and the count of changed rows."""

    @property
    def rowcount(self) -> int: ...

    def fetchone(self) -> Any: ...

    def fetchall(self) -> list[Any]: ...

    def __iter__(self) -> Iterator[Any]: ...


class Session(Protocol):
    """The backend seam: what repositories may use, and nothing else.

    SQL is written once, in the dialect both SQLite and PostgreSQL accept
    (``?`` placeholders, ``ON CONFLICT``); a backend translates what it must.
    ``row_locks`` ends a ``SELECT`` whose rows a write is about to claim:
    ``""`` with one writer, ``" FOR UPDATE SKIP LOCKED"`` where daemons share the database.
    """

    media_dir: Path
    writable: bool
    row_locks: str

    def execute(self, sql: str, params: Sequence[Any] = ..., /) -> Cursor: ...

    def executemany(self, sql: str, rows: Iterable[Sequence[Any]], /) -> Cursor: ...

    def now(self) -> float: ...

    def next_id(self, table: str) -> int: ...

    def after_commit(self, callback: Callable[[], None]) -> None: ...

    def on_rollback(self, callback: Callable[[], None]) -> None: ...

    def savepoint(self) -> AbstractContextManager[None]: ...

    def new_key(self, owner: KeyOwner) -> int: ...

    def key_for(self, owner: KeyOwner, *, create: bool) -> AESGCM: ...

    def has_key(self, owner: KeyOwner) -> bool: ...

    def shred_key(self, owner: KeyOwner) -> None: ...

    def seal(self, owner: KeyOwner, table: str, column: str, row_id: object, value: str | bytes) -> bytes: ...

    def open_bytes(self, owner: KeyOwner, table: str, column: str, row_id: object, blob: bytes) -> bytes: ...

    def open_text(self, owner: KeyOwner, table: str, column: str, row_id: object, blob: bytes) -> str: ...

    def open_optional(
        self, owner: KeyOwner, table: str, column: str, row_id: object, blob: bytes | None
    ) -> str | None: ...

    def blind(self, kind: str, value: str) -> bytes: ...

    def checkpoint(self) -> None: ...

    def serialize(self, name: str) -> None: ...

    def blob_columns(self) -> list[tuple[str, str]]: ...

    def notify(self, topic: str) -> None: ...

    @property
    def audit_key(self) -> bytes: ...


class KeyedSession(abc.ABC):
    """The backend-neutral part of a :class:`Session` on one connection (the writer's or a reader's).

    Each backend subclasses it and says how ids are allocated and where its
    catalogue lists the BLOB columns (the abstract methods).
    """

    row_locks = ""

    def __init__(
        self,
        conn: Connection,
        keyring: Keyring,
        clock: Callable[[], float],
        media_dir: Path,
        *,
        writable: bool,
    ) -> None:
        self.conn = conn
        # Bound once: the hot path pays no wrapper call per statement.
        self.execute = conn.execute
        self.executemany = conn.executemany
        self.keyring = keyring
        self.media_dir = media_dir
        self.writable = writable
        self._clock = clock
        self._ids: dict[str, int] = {}
        self._new_keys: dict[KeyOwner, tuple[int, AESGCM]] = {}
        self._fn_keys: list[KeyOwner] = []
        self._after: list[Callable[[], None]] = []
        self._fn_after: list[Callable[[], None]] = []
        self._fn_undo: list[Callable[[], None]] = []
        self._batch_undo: list[Callable[[], None]] = []
        self._savepoints = 0

    # -- engine bookkeeping (called by the engine only) --------------------
    def _begin_batch(self) -> None:
        self._ids.clear()
        self._new_keys.clear()
        self._after.clear()
        self._batch_undo.clear()

    def _begin_fn(self) -> None:
        # cheap on the hot path: most functions register no keys or callbacks
        if self._fn_keys:
            self._fn_keys.clear()
        if self._fn_after:
            self._fn_after.clear()
        if self._fn_undo:
            self._fn_undo.clear()

    def _end_fn(self, ok: bool) -> None:
        if ok:
            if self._fn_after:
                self._after.extend(self._fn_after)
            if self._fn_undo:
                self._batch_undo.extend(self._fn_undo)
        else:
            for owner in self._fn_keys:
                self._new_keys.pop(owner, None)
            _run_all(self._fn_undo)
        self._begin_fn()

    def _end_batch(self, committed: bool) -> None:
        if committed:
            for owner, entry in self._new_keys.items():
                self.keyring.publish(owner, entry)
            _run_all(self._after)
        else:
            _run_all(self._batch_undo)
        self._begin_batch()

    # -- primitives -------------------------------------------------------
    def now(self) -> float:
        """The store's clock (epoch seconds); tests may inject their own."""
        return self._clock()

    @abc.abstractmethod
    def next_id(self, table: str) -> int:
        """The id the next row of ``table`` must be INSERTed with (each backend says how)."""

    def serialize(self, name: str) -> None:
        """Make writers that serialize on the same ``name`` take turns until this transaction ends.

        One SQLite writer takes turns by itself; several daemons on one
        PostgreSQL database need it where a row depends on the one before
        (the audit chain, a person's first conversation). The default does nothing.
        """

    @abc.abstractmethod
    def blob_columns(self) -> list[tuple[str, str]]:
        """``(table, column)`` of every BLOB (sealed or index) column, from the backend's catalogue."""

    def notify(self, topic: str) -> None:
        """Tell other daemons on the same database, once this transaction commits, that ``topic`` changed.

        The default does nothing: one SQLite store has no other daemons to tell.
        """

    def after_commit(self, callback: Callable[[], None]) -> None:
        """Run ``callback`` on the writer thread once this function's work is committed."""
        self._require_writable()
        self._fn_after.append(callback)

    def on_rollback(self, callback: Callable[[], None]) -> None:
        """Run ``callback`` if this function's work is rolled back (e.g. delete a written file)."""
        self._require_writable()
        self._fn_undo.append(callback)

    @contextmanager
    def savepoint(self) -> Iterator[None]:
        """Run a block in a nested SAVEPOINT that an exception rolls back whole.

        Use it, never a raw ``SAVEPOINT`` statement, to undo part of a write
        function: besides the rows, it forgets the data keys the block created
        (their rows are rolled back, so nothing may stay sealed under them),
        drops its ``after_commit`` callbacks and runs its ``on_rollback`` ones.
        The exception propagates; catch it outside the ``with`` block.
        """
        self._require_writable()
        self._savepoints += 1
        name = f"tx_block_{self._savepoints}"
        keys, after, undo = len(self._fn_keys), len(self._fn_after), len(self._fn_undo)
        self.conn.execute(f"SAVEPOINT {name}")
        try:
            yield
        except BaseException:
            self.conn.execute(f"ROLLBACK TO {name}")
            self.conn.execute(f"RELEASE {name}")
            for owner in self._fn_keys[keys:]:
                self._new_keys.pop(owner, None)
            del self._fn_keys[keys:]
            del self._fn_after[after:]
            undone = self._fn_undo[undo:]
            del self._fn_undo[undo:]
            _run_all(undone)
            raise
        else:
            self.conn.execute(f"RELEASE {name}")
        finally:
            self._savepoints -= 1

    def _require_writable(self) -> None:
        if not self.writable:
            raise StoreError("this operation needs store.write(), not store.read()")

    def _key(self, owner: KeyOwner, *, create: bool) -> tuple[int, AESGCM]:
        pending = self._new_keys.get(owner)
        if pending is not None:
            return pending
        cached = self.keyring.cached(owner)
        if cached is not None:
            return cached
        try:
            return self.keyring.lookup(self.conn, owner)
        except IntegrityError:
            if not create or not self.writable:
                raise
        self.new_key(owner)
        return self._new_keys[owner]

    def key_for(self, owner: KeyOwner, *, create: bool) -> AESGCM:
        """The data key of ``owner`` as a cipher (created when missing and ``create``).

        :raises IntegrityError: no key and not ``create`` (erased, or never had one).
        """
        return self._key(owner, create=create)[1]

    @property
    def audit_key(self) -> bytes:
        """The key of the audit hash chain (derived from the store's HMAC root)."""
        return self.keyring.audit_key

    def new_key(self, owner: KeyOwner) -> int:
        """Create and wrap a data key for ``owner``; return its key id."""
        self._require_writable()
        # Wrapped under the master key in force: a rotation by another process waits, or is seen.
        self.serialize("keys")
        entry = self.keyring.create(self.conn, owner, self.next_id("keys"), self.now())
        self._new_keys[owner] = entry
        self._fn_keys.append(owner)
        return entry[0]

    def has_key(self, owner: KeyOwner) -> bool:
        """Whether ``owner`` has a data key (False once erased)."""
        if owner in self._new_keys or self.keyring.cached(owner) is not None:
            return True
        row = self.conn.execute(
            "SELECT 1 FROM keys WHERE owner_kind = ? AND owner_id = ?", (owner.kind, owner.id)
        ).fetchone()
        return row is not None

    def shred_key(self, owner: KeyOwner) -> None:
        """Delete ``owner``'s data key row and forget it: their ciphertexts become noise."""
        self._require_writable()
        self.conn.execute("DELETE FROM keys WHERE owner_kind = ? AND owner_id = ?", (owner.kind, owner.id))
        self._new_keys.pop(owner, None)
        self.keyring.drop(owner)
        self._fn_after.append(lambda: self.keyring.drop(owner))

    def seal(self, owner: KeyOwner, table: str, column: str, row_id: object, value: str | bytes) -> bytes:
        """Encrypt ``value`` for one cell under ``owner``'s data key (created if missing)."""
        data = value.encode() if isinstance(value, str) else bytes(value)
        return crypto.seal(self._key(owner, create=True)[1], crypto.aad(table, column, row_id), data)

    def open_bytes(self, owner: KeyOwner, table: str, column: str, row_id: object, blob: bytes) -> bytes:
        """Decrypt one cell.

        :raises IntegrityError: naming table, column and row when the blob was
            tampered with, moved, or its owner's key is gone.
        """
        try:
            aead = self._key(owner, create=False)[1]
        except IntegrityError as err:
            raise IntegrityError(
                f"{table}.{column} of row {row_id} cannot be decrypted: {err}",
                table=table, column=column, row_id=row_id,
            ) from err  # fmt: skip
        try:
            return crypto.open_blob(aead, crypto.aad(table, column, row_id), blob)
        except crypto.DecryptError as err:
            raise IntegrityError(
                f"{table}.{column} of row {row_id} failed authentication (tampered with or moved)",
                table=table, column=column, row_id=row_id,
            ) from err  # fmt: skip

    def open_text(self, owner: KeyOwner, table: str, column: str, row_id: object, blob: bytes) -> str:
        """Decrypt one cell holding text."""
        return self.open_bytes(owner, table, column, row_id, blob).decode()

    def open_optional(self, owner: KeyOwner, table: str, column: str, row_id: object, blob: bytes | None) -> str | None:
        """Like :meth:`open_text`, passing None through."""
        return None if blob is None else self.open_text(owner, table, column, row_id, blob)

    def checkpoint(self) -> None:
        """Make erased rows unreadable in the backend's own files (each backend says how)."""

    def blind(self, kind: str, value: str) -> bytes:
        """The blind index of ``value`` (HMAC under the store's index key), 16 bytes."""
        assert self.keyring.blind is not None
        return self.keyring.blind(kind, value)


class SqliteSession(KeyedSession):
    """:class:`Session` on one ``sqlite3`` connection (the writer's or the reader's)."""

    conn: sqlite3.Connection

    def __init__(
        self,
        conn: sqlite3.Connection,
        keyring: Keyring,
        clock: Callable[[], float],
        media_dir: Path,
        *,
        writable: bool,
    ) -> None:
        super().__init__(conn, keyring, clock, media_dir, writable=writable)

    def next_id(self, table: str) -> int:
        """The id the next row of ``table`` must be INSERTed with.

        Ids are taken before sealing so the associated data can name the row.
        On AUTOINCREMENT tables (all of the store's) they never repeat, even
        after deletes; other tables continue from their highest id.
        """
        current = self._ids.get(table)
        if current is None:
            if not _IDENTIFIER.match(table):
                raise ValueError(f"not a table name: {table!r}")
            # sqlite_sequence is where SQLite keeps AUTOINCREMENT counters (dialect-specific).
            row = self.conn.execute("SELECT seq FROM sqlite_sequence WHERE name = ?", (table,)).fetchone()
            top = self.conn.execute(f"SELECT max(id) FROM {table}").fetchone()[0]  # noqa: S608 (fixed names)
            current = max(row[0] if row else 0, top or 0)
        current += 1
        self._ids[table] = current
        return current

    def blob_columns(self) -> list[tuple[str, str]]:
        """``(table, column)`` of every BLOB column, from ``sqlite_master`` and ``pragma_table_info``."""
        tables = [r[0] for r in self.conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
        return [
            (table, column)
            for table in tables
            for _cid, column, kind, *_rest in self.conn.execute("SELECT * FROM pragma_table_info(?)", (table,))
            if str(kind).upper() == "BLOB"
        ]

    def checkpoint(self) -> None:
        """Copy the WAL into the database and truncate it (after erasures: no old page stays in it)."""
        self.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()


def _run_all(callbacks: list[Callable[[], None]]) -> None:
    """Run clean-up callbacks; one failing must not stop the others."""
    errors: list[BaseException] = []
    for callback in callbacks:
        try:
            callback()
        except Exception as err:  # boundary: clean-up of files after commit/rollback
            errors.append(err)
    callbacks.clear()
    if errors:
        log.warning("store clean-up step failed: %s", errors[0])
