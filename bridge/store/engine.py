"""The store engine: one writer thread with group commit, one reader thread.

Why one writer: SQLite allows one writer at a time, and at
``synchronous=FULL`` every COMMIT costs an fsync. Concurrent webhooks queue
their write functions; the writer drains everything queued, runs each
function inside its own SAVEPOINT of ONE transaction, commits once, and only
then resolves every waiting future. A failing function rolls back only its
savepoint and its caller gets the exception; the others still commit.
Reads run on a second connection (WAL lets them proceed during writes).

A write the disk refuses (full, read-only, I/O error) or a lock held too long
by another process raises ``StoreWriteError`` to its caller; the store then
counts it (``failed_commits``), says so in ``health()`` until a later commit
succeeds, and tells its ``on_writable`` listeners when that happens (the
outbox worker resumes at once). After commits the writer keeps the WAL small
(``bridge.store.wal``).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import inspect
import logging
import os
import queue
import sqlite3
import threading
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any, Protocol, TypeVar

import sqlite_utils

from bridge.errors import KeyMismatchError, StoreError, StoreWriteError
from bridge.store import schema
from bridge.store.connection import (
    BUSY_TIMEOUT_MS,
    READER_MMAP_BYTES,
    SYNC_MODES,
    bootstrap,
    configure,
    connect,
)
from bridge.store.keyfile import (
    fsync_dir,
    generate_key,
    key_file_path,
    load_master_key,
    write_key_file,
)
from bridge.store.keyring import MISMATCH, Keyring, key_matches, pending_key_path
from bridge.store.repos.retention import PURGE_COUNTS
from bridge.store.session import KeyedSession, SqliteSession
from bridge.store.tx import Tx
from bridge.store.wal import Checkpointer, cannot_write, wal_bytes

log = logging.getLogger("carebridge.store")
T = TypeVar("T")

MAX_BATCH = 512
_STOP = object()
# Results that cannot be awaitables: skips an ABC check per write on the hot path.
_PLAIN_RESULTS = frozenset({type(None), int, str, bytes, bool, float, tuple, list, dict})


class Progress(Protocol):
    """Where long store jobs (purge, rekey) report how far they are (the CLI draws a bar)."""

    def start(self, total: int) -> None:
        """The job has ``total`` units of work."""

    def advance(self, done: int) -> None:
        """``done`` more units are finished."""


class StoreSettings(Protocol):
    """What the store needs from ``config.store`` (``bridge.config.StoreConfig``, frozen)."""

    @property
    def path(self) -> Path: ...

    @property
    def key(self) -> str: ...

    @property
    def synchronous(self) -> str: ...


class Store:
    """The encrypted store on SQLite; open the configured backend with ``await open_store(config.store)``.

    ``bridge.store.postgres.engine.PostgresStore`` is a subclass with the same
    interface; :func:`bridge.store.backends.open_store` picks between them.
    """

    backend = "sqlite"
    #: Whether other daemons write the same database (they then claim outbox rows before sending).
    shared = False

    def __init__(self) -> None:  # use Store.open()
        self.path: Path = Path()
        self.media_dir: Path = Path()
        self.schema_version = 0
        self._keyring: Keyring
        self._writer_conn: sqlite3.Connection
        self._reader_conn: sqlite3.Connection
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._reader: concurrent.futures.ThreadPoolExecutor | None = None
        self._closed = False
        self._clock: Callable[[], float] = time.time
        self._data_version = 0
        self.batches = 0
        self.writes = 0
        #: writes whose work was not committed because the store could not write
        self.failed_commits = 0
        #: why the last write failed, while no write has succeeded since (None: writable)
        self.write_error: str | None = None
        self._on_writable: list[Callable[[], None]] = []
        self._checkpointer: Checkpointer | None = None

    # -- opening ----------------------------------------------------------
    @classmethod
    async def open(
        cls,
        settings: StoreSettings,
        *,
        create_missing_key: bool = True,
        must_exist: bool = False,
        clock: Callable[[], float] | None = None,
    ) -> Store:
        """Open (creating and migrating when needed) the store named by ``settings``.

        :raises KeyMismatchError: the master key does not match this database.
        :param must_exist: refuse to create a new database (admin commands).
        :raises StoreError: missing key with an existing database, a database
            newer than this code, or an unusable file.
        """
        if must_exist and not await asyncio.to_thread(Path(settings.path).exists):
            raise StoreError(f"no store at {settings.path}")
        store = cls()
        store._clock = clock or time.time
        await asyncio.to_thread(store._open_sync, settings, create_missing_key)
        store._start_threads()
        return store

    def _open_sync(self, settings: StoreSettings, create_missing_key: bool) -> None:
        path = Path(settings.path)
        self.path = path
        self.media_dir = path.with_name(path.stem + "-media")
        ref = settings.key
        synchronous = str(getattr(settings, "synchronous", "full")).lower()
        if synchronous not in SYNC_MODES:
            raise StoreError(f"store.synchronous: expected one of off, normal, full, extra; got {synchronous!r}")
        db_exists = path.exists() and path.stat().st_size > 0
        key_path = key_file_path(ref)
        if key_path is not None and not key_path.exists():
            if db_exists:
                raise StoreError(f"master key {key_path} not found; refusing to open an existing database without it")
            if not create_missing_key:
                raise StoreError(f"master key {key_path} not found")
            write_key_file(key_path, generate_key(), exclusive=True)
            log.warning("generated a new master key in %s: back it up, the store cannot be read without it", key_path)
        master = load_master_key(ref)
        if key_path is not None and key_path.stat().st_mode & 0o077:
            log.warning("master key %s is readable by other users; run: chmod 600 %s", key_path, key_path)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            if not path.exists():  # readable by the service user only (-wal/-shm inherit the mode)
                os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
            conn = connect(path)
        except (OSError, sqlite3.Error) as err:
            raise StoreError(f"cannot open the store {path}: {err}") from err
        try:
            master = self._check_before_writing(conn, master, key_path)
            configure(conn, synchronous)
            db = sqlite_utils.Database(conn)
            self.schema_version = schema.migrate(db)
            self._keyring = Keyring(master, ref)
            bootstrap(conn, master, self._clock())
            self._keyring.load_secrets(conn)
            try:
                self.media_dir.mkdir(mode=0o700, exist_ok=True)
            except OSError as err:
                raise StoreError(f"cannot create the media directory {self.media_dir}: {err}") from err
            reader = connect(path)
            configure(reader, synchronous)
            reader.execute("PRAGMA query_only = ON")
            reader.execute(f"PRAGMA mmap_size = {READER_MMAP_BYTES}")
        except sqlite3.Error as err:
            conn.close()
            raise StoreError(f"cannot open the store {path}: {err}") from err
        except BaseException:
            conn.close()
            raise
        self._writer_conn = conn
        self._reader_conn = reader
        self._data_version = conn.execute("PRAGMA data_version").fetchone()[0]
        self._keyring.sync(conn)
        self._checkpointer = Checkpointer(path, BUSY_TIMEOUT_MS)

    def _check_before_writing(self, conn: sqlite3.Connection, master: bytes, key_path: Path | None) -> bytes:
        """Refuse a newer schema or a wrong key without writing; finish an interrupted rotation."""
        try:
            schema.check_not_newer(sqlite_utils.Database(conn))
        except sqlite3.DatabaseError as err:
            raise StoreError(f"{self.path} is not a Carebridge database: {err}") from err
        if key_matches(conn, master) is not False:
            return master
        if key_path is not None:
            pending = pending_key_path(key_path)
            try:
                new = load_master_key(f"file:{pending}")
            except StoreError:
                new = None
            if new is not None and key_matches(conn, new):
                try:
                    pending.replace(key_path)
                    fsync_dir(key_path.parent)
                except FileNotFoundError:  # another process finished the same rotation
                    pass
                log.warning("finished an interrupted key rotation: %s now holds the new master key", key_path)
                return new
        raise KeyMismatchError(MISMATCH)

    def _start_threads(self) -> None:
        self._thread = threading.Thread(target=self._writer_loop, name="carebridge-store-writer", daemon=True)
        self._thread.start()
        self._reader = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="carebridge-store-reader")

    # -- public API -------------------------------------------------------
    async def write(self, fn: Callable[[Tx], T]) -> T:
        """Run ``fn(tx)`` on the writer thread; return its result once committed.

        Concurrent calls share one transaction (group commit), each in its own
        SAVEPOINT: an exception rolls back only that function's work and is
        raised here. The function must be synchronous and must not commit.
        Cancelling the caller does not cancel a queued function: it still runs
        and commits (a webhook whose client went away is still stored).
        """
        if self._closed:
            raise StoreError("the store is closed")
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        self._queue.put((fn, future, loop))
        return await future

    async def read(self, fn: Callable[[Tx], T]) -> T:
        """Run ``fn(tx)`` on the read-only connection, in one consistent snapshot."""
        if self._closed or self._reader is None:
            raise StoreError("the store is closed")
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._reader, self._run_read, fn)

    def health(self) -> dict[str, Any]:
        """Store status for /healthz: ``error`` when closed or when it cannot write (``write_error`` says why)."""
        running = not self._closed and self._thread is not None and self._thread.is_alive()
        writable = self.write_error is None
        return {
            "status": "ok" if running and writable else "error",
            "backend": self.backend,
            "schema_version": self.schema_version,
            "path": str(self.path),
            "writable": writable,
            "write_error": self.write_error,
            "failed_commits": self.failed_commits,
            "wal_bytes": self.wal_bytes(),
        }

    def stats(self) -> dict[str, float]:
        """Figures for /metrics: up (as /healthz's ``status``), failed commits, writable, WAL size, checkpoints."""
        checkpointer = self._checkpointer
        return {
            "up": 1.0 if self.health()["status"] == "ok" else 0.0,
            "failed_commits": float(self.failed_commits),
            "writable": 1.0 if self.write_error is None else 0.0,
            "wal_bytes": float(self.wal_bytes()),
            "checkpoint_restarts": float(checkpointer.restarts if checkpointer else 0),
            "checkpoint_deferred": float(checkpointer.deferred if checkpointer else 0),
        }

    def wal_bytes(self) -> int:
        """Size of the write-ahead log now (bounded by the writer's checkpoints)."""
        return wal_bytes(self.path)

    def on_writable(self, callback: Callable[[], None]) -> Callable[[], None]:
        """Call ``callback`` (on the writer thread) each time a commit succeeds after failed ones.

        Returns a function that removes the listener again.
        """
        self._on_writable.append(callback)
        return lambda: self._on_writable.remove(callback) if callback in self._on_writable else None

    async def probe(self) -> bool:
        """Try one small real write (a row of ``meta``); return whether the store can write again."""

        def touch(tx: Tx) -> None:
            tx._session.execute(
                "INSERT INTO meta (name, value) VALUES ('write_probe', ?)"
                " ON CONFLICT (name) DO UPDATE SET value = excluded.value",
                (repr(self._clock()).encode(),),
            )

        try:
            await self.write(touch)
        except StoreError:
            return False
        return self.write_error is None

    def subscribe(self, topic: str, callback: Callable[[], None]) -> None:
        """Be told when another daemon commits a change to ``topic`` (e.g. ``"outbox"``).

        One daemon owns a SQLite file and wakes itself after its own commits,
        so nothing is ever told here; the PostgreSQL store relays NOTIFYs.
        """

    @contextlib.asynccontextmanager
    async def exclusive(self, name: str) -> AsyncIterator[bool]:
        """Whether this daemon is the one to run job ``name`` now (always, with one daemon per file)."""
        yield True

    async def purge_closed(
        self, days: float, *, chunk: int = 100, actor: str = "system:retention", progress: Progress | None = None
    ) -> dict[str, int]:
        """Retention: delete the conversations closed more than ``days`` ago and all that carries their text.

        Works in transactions of at most ``chunk`` conversations, so live
        writes interleave; a contact left with no conversation goes with their
        data key. Then one audit entry (counts only) and a WAL checkpoint, so no
        old page of what went stays in the WAL. Returns counts
        (``bridge.store.repos.retention.PURGE_COUNTS``).
        """
        chunk = max(1, min(chunk, 500))
        if progress is not None:
            progress.start(await self.read(lambda tx: tx.retention.plan(days)["conversations"]))
        totals = dict.fromkeys(PURGE_COUNTS, 0)
        while True:
            done = await self.write(lambda tx: tx.retention.purge_chunk(days, chunk))
            for key, value in done.items():
                totals[key] += value
            if progress is not None:
                progress.advance(done["conversations"])
            if done["conversations"] < chunk:
                break
        if totals["conversations"]:
            detail = {**totals, "closed_after_days": days}
            await self.write(lambda tx: tx.audit.append(actor, "retention.purge", None, detail))
            await self.checkpoint()
        return totals

    async def rotate_master_key(self, new_master: bytes) -> int:
        """Re-wrap every data key under ``new_master`` in one transaction; return the count.

        The caller must have stored ``new_master`` durably BEFORE calling this
        (see ``carebridge keys rotate``); from the commit on, only it opens the
        store. Call :meth:`checkpoint` afterwards: until then the old wrappings
        stay in the WAL.
        """

        def rotate(tx: Tx) -> int:
            count = self._keyring.rewrap_all(self._writer_conn, new_master)
            tx.after_commit(lambda: self._keyring.replace_master(new_master))
            return count

        return await self.write(rotate)

    async def rekey(self, *, owners: int = 32, progress: Progress | None = None) -> dict[str, int]:
        """Replace every contact's and agent's data key and re-seal what it sealed (resumable).

        See :mod:`bridge.store.repos.rekey`. A running daemon keeps working:
        each transaction bumps the key epoch it checks. Returns counts
        (``keys``, ``cells``, ``files``, ``unreadable``, ``resumed``).

        :raises StoreError: the schema has a BLOB column the rekey does not
            know, so it would strand what that column seals.
        """
        unknown = await self.read(lambda tx: tx.rekey.unknown_columns())
        if unknown:
            raise StoreError(f"cannot re-encrypt: unknown sealed column(s) {', '.join(unknown)}")
        resumed = await self.read(lambda tx: tx.rekey.resuming())
        upto = await self.write(lambda tx: tx.rekey.begin())
        if progress is not None:
            progress.start(await self.read(lambda tx: tx.rekey.remaining(upto)))
        totals = {"keys": 0, "cells": 0, "files": 0, "unreadable": 0}
        while True:
            done = await self.write(lambda tx: tx.rekey.step(upto, owners))
            if not done["keys"]:
                break
            for key, value in done.items():
                totals[key] += value
            if progress is not None:
                progress.advance(done["keys"])
        await self.write(lambda tx: tx.rekey.finish())
        await self.checkpoint()
        return {**totals, "resumed": int(resumed)}

    async def checkpoint(self, *, timeout: float = 30.0) -> bool:
        """Copy the WAL into the database and truncate it; return whether it was truncated.

        Until then old page images (a key's previous wrapping, a purged or
        erased row) stay in the WAL; ``secure_delete`` has already zeroed them
        in the pages that replace them. A reader in another process (the
        daemon) can hold the truncation up for a moment: it is retried until
        ``timeout``.
        """
        deadline = time.monotonic() + timeout
        outcome: list[bool] = []
        while True:
            outcome.clear()
            await self.write(lambda tx: tx.after_commit(lambda: outcome.append(self._truncate_wal())))
            if outcome and outcome[0]:
                return True
            if time.monotonic() >= deadline:
                log.warning("the WAL of %s could not be truncated: a reader kept it busy", self.path)
                return False
            await asyncio.sleep(0.05)

    def _truncate_wal(self) -> bool:
        busy, _frames, _copied = self._writer_conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
        return int(busy) == 0

    async def close(self) -> None:
        """Finish queued writes, stop the threads and close the connections."""
        if self._closed:
            return
        self._closed = True
        self._queue.put(_STOP)
        if self._thread is not None:
            await asyncio.to_thread(self._thread.join)
        if self._reader is not None:
            await asyncio.to_thread(self._reader.shutdown, True)
        await asyncio.to_thread(self._close_connections)

    def _close_connections(self) -> None:
        # The last connection to close checkpoints and removes the WAL by itself;
        # an explicit TRUNCATE here could wait on a busy daemon for busy_timeout.
        self._reader_conn.close()
        self._writer_conn.close()

    # -- threads ----------------------------------------------------------
    def _run_read(self, fn: Callable[[Tx], T]) -> T:
        conn = self._reader_conn
        tx = Tx(SqliteSession(conn, self._keyring, self._clock, self.media_dir, writable=False))
        assert self._checkpointer is not None  # set by open, before any read
        with self._checkpointer.gate.reading():  # a checkpoint in progress goes first
            conn.execute("BEGIN")
            try:
                self._keyring.sync(conn)  # fixes the snapshot; data keys replaced meanwhile are not used
                return fn(tx)
            finally:
                conn.execute("ROLLBACK")

    def _writer_loop(self) -> None:
        session = SqliteSession(self._writer_conn, self._keyring, self._clock, self.media_dir, writable=True)
        tx = Tx(session)
        stopping = False
        while not stopping:
            item = self._queue.get()
            if item is _STOP:
                break
            batch = [item]
            while len(batch) < MAX_BATCH:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                if item is _STOP:
                    stopping = True
                    break
                batch.append(item)
            try:
                self._commit_batch(session, tx, batch)
            except BaseException as err:  # noqa: BLE001 (the writer must outlive a bug in one batch)
                log.exception("store writer failed a batch")
                try:
                    self._writer_conn.execute("ROLLBACK")
                except sqlite3.Error:
                    pass
                failure = StoreError(f"store writer failed: {err}")
                self._settle(batch, [(False, failure)] * len(batch))

    def _commit_batch(
        self, session: SqliteSession, tx: Tx, batch: list[tuple[Callable[[Tx], Any], asyncio.Future[Any], Any]]
    ) -> None:
        conn = self._writer_conn
        outcomes: list[tuple[bool, Any]] = []
        session._begin_batch()
        execute = conn.execute
        try:
            execute("BEGIN IMMEDIATE")
        except sqlite3.Error as err:
            self._fail_batch(None, batch, err, "the store is busy or unusable")
            return
        changes = conn.total_changes
        refused = False
        # Another process committed since our last batch (an admin command)?
        # Then drop cached keys it shredded; cheap when nothing changed.
        version = execute("PRAGMA data_version").fetchone()[0]
        if version != self._data_version:
            self._keyring.sync(conn)
            self._keyring.prune(conn)
            self._data_version = version
        for fn, _future, _loop in batch:
            execute("SAVEPOINT w")
            try:
                result = fn(tx)
                if type(result) not in _PLAIN_RESULTS and inspect.isawaitable(result):
                    _discard(result)
                    raise TypeError("store.write() takes a plain function, not a coroutine function")
            except BaseException as err:  # noqa: BLE001 (handed to the caller)
                try:
                    execute("ROLLBACK TO w")
                    execute("RELEASE w")
                except sqlite3.Error:
                    pass
                session._end_fn(False)
                if self._cannot_write(err):
                    refused = True
                    err = self._failed(err, 1, "the store cannot write")
                outcomes.append((False, err))
            else:
                execute("RELEASE w")
                session._end_fn(True)
                outcomes.append((True, result))
        try:
            conn.execute("COMMIT")
        except sqlite3.Error as err:
            try:
                conn.execute("ROLLBACK")
            except sqlite3.Error:
                pass
            self._fail_batch(session, batch, err, "commit failed")
            return
        self._batch_committed(session, batch, outcomes, proves_writable=not refused and conn.total_changes != changes)
        if self._checkpointer is not None:
            self._checkpointer.after_commit(conn)

    def _fail_batch(
        self,
        session: KeyedSession | None,
        batch: list[tuple[Callable[[Tx], Any], asyncio.Future[Any], Any]],
        err: BaseException,
        what: str,
    ) -> None:
        """Every write of ``batch`` fails with ``what``: its transaction did not commit (either backend)."""
        if session is not None:
            session._end_batch(False)
        failure = self._failed(err, len(batch), what)
        self._settle(batch, [(False, failure)] * len(batch))

    def _batch_committed(
        self,
        session: KeyedSession,
        batch: list[tuple[Callable[[Tx], Any], asyncio.Future[Any], Any]],
        outcomes: list[tuple[bool, Any]],
        *,
        proves_writable: bool,
    ) -> None:
        """Count ``batch`` and hand each caller its outcome; a transaction that wrote ends a write failure."""
        session._end_batch(True)
        self.batches += 1
        self.writes += len(batch)
        if proves_writable:
            self._writable()
        self._settle(batch, outcomes)

    @staticmethod
    def _cannot_write(err: BaseException) -> bool:
        """Whether ``err`` is the store refusing writes (disk, lock, server), not a bug in one write."""
        return cannot_write(err)

    def _failed(self, err: BaseException, writes: int, what: str) -> StoreError:
        """Count and report a write the store could not make; return what its caller gets."""
        if not self._cannot_write(err):
            return StoreError(f"{what}: {err}")
        self.failed_commits += writes
        reason = (str(err).strip().splitlines() or [type(err).__name__])[0]
        if self.write_error is None:
            log.error("the store cannot write (%s): %s; writes fail until it can", what, reason)
        self.write_error = f"{what}: {reason}"
        failure = StoreWriteError(f"{what}: {reason}")
        failure.__cause__ = err
        return failure

    def _writable(self) -> None:
        """A commit with changes went through: clear a write failure and tell the listeners."""
        if self.write_error is None:
            return
        log.warning("the store can write again (after: %s)", self.write_error)
        self.write_error = None
        for callback in list(self._on_writable):
            try:
                callback()
            except Exception:  # boundary: a listener must not break the writer thread
                log.exception("a store listener failed")

    @staticmethod
    def _settle(batch: list[tuple[Any, asyncio.Future[Any], Any]], outcomes: list[tuple[bool, Any]]) -> None:
        by_loop: dict[Any, list[tuple[asyncio.Future[Any], bool, Any]]] = {}
        for (_fn, future, loop), (ok, value) in zip(batch, outcomes, strict=True):
            by_loop.setdefault(loop, []).append((future, ok, value))
        for loop, items in by_loop.items():
            try:
                loop.call_soon_threadsafe(_resolve, items)
            except RuntimeError:  # the loop is closed: nobody is waiting any more
                pass


def _discard(awaitable: Any) -> None:
    close = getattr(awaitable, "close", None)
    if close is not None:
        close()


def _resolve(items: list[tuple[asyncio.Future[Any], bool, Any]]) -> None:
    for future, ok, value in items:
        if future.done():  # cancelled by its caller (the work is committed anyway)
            continue
        if ok:
            future.set_result(value)
        else:
            future.set_exception(value)
