"""The store on PostgreSQL: the same interface, for several daemons on one database.

Why it looks like the SQLite engine: the relay, CLI and plugins hold a
``Store`` and call ``write``/``read`` with plain functions of a ``Tx``; this
class is that ``Store`` (a subclass, so every annotation holds) on
PostgreSQL. Writes keep the group commit: one writer thread and connection
per daemon runs each queued function in its own SAVEPOINT of one
transaction and resolves the callers after COMMIT. Reads run on a pool of
connections (``[store] pool_size``), each in a read-only REPEATABLE READ
snapshot. A listener connection receives ``NOTIFY`` from the other daemons
(``subscribe``) and checks that the server is a writable primary
(``pg_is_in_recovery()``) for /healthz.

What several daemons share, and how: ids come from each table's sequence;
writers that depend on a previous row take turns with transaction-scoped
advisory locks (``Session.serialize``); scheduled jobs run on one daemon at a
time (``exclusive``, a session advisory lock); a data key shredded by one
daemon leaves the others' caches at their next write (the ``keys`` table's
count and highest id are compared per batch).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import inspect
import logging
import queue
import threading
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any, TypeVar

import psycopg
import psycopg.errors
from psycopg_pool import ConnectionPool

from bridge.errors import KeyMismatchError, StoreError
from bridge.store.engine import MAX_BATCH, Store, StoreSettings
from bridge.store.keyfile import fsync_dir, generate_key, key_file_path, load_master_key, write_key_file
from bridge.store.keyring import (
    HMAC_ROOT,
    KEY_CHECK_NAME,
    MISMATCH,
    SYSTEM_KEY,
    Keyring,
    key_matches,
    pending_key_path,
    seal_key_check,
)
from bridge.store.postgres import migrate as pg_migrate
from bridge.store.postgres.connection import PgConnection, configure, connect, connect_kwargs
from bridge.store.postgres.session import LOCK_PREFIX, NOTIFY_PREFIX, PgSession
from bridge.store.tx import Tx

log = logging.getLogger("carebridge.store")
T = TypeVar("T")

#: Topics other daemons are told about (``Session.notify``); the listener follows all of them.
TOPICS = ("outbox",)
LISTEN_TICK = 2.0
BOOTSTRAP_LOCK = "carebridge:bootstrap"
WAKE_CHANNEL = "carebridge__wake"
DEADLOCK_RETRIES = 2
_STOP = object()
_PLAIN_RESULTS = frozenset({type(None), int, str, bytes, bool, float, tuple, list, dict})


def describe_dsn(dsn: str) -> str:
    """Host, port and database of a DSN, for messages (never its password)."""
    try:
        info = psycopg.conninfo.conninfo_to_dict(dsn)
    except psycopg.ProgrammingError:
        return "the database named by store.dsn"
    host = info.get("host") or "localhost"
    port = info.get("port") or 5432
    return f"postgresql database {info.get('dbname') or '?'} on {host}:{port}"


class PostgresStore(Store):
    """The encrypted store on PostgreSQL; open it with ``await Store.open(settings)`` (``backend = "postgresql"``)."""

    backend = "postgresql"
    shared = True

    def __init__(self) -> None:
        super().__init__()
        self._dsn = ""
        self.target = ""
        self._writer: PgConnection
        self._pool: ConnectionPool[psycopg.Connection[Any]] | None = None
        self._pool_size = 4
        self._readers: concurrent.futures.ThreadPoolExecutor | None = None
        self._listener: threading.Thread | None = None
        self._subscribers: dict[str, list[tuple[asyncio.AbstractEventLoop, Callable[[], None]]]] = {}
        self._keys_seen: tuple[int, int] | None = None
        self.in_recovery: bool | None = None
        self.reachable = True

    # -- opening ----------------------------------------------------------
    @classmethod
    async def open(
        cls,
        settings: StoreSettings,
        *,
        create_missing_key: bool = True,
        must_exist: bool = False,
        clock: Callable[[], float] | None = None,
    ) -> PostgresStore:
        """Connect, migrate (one daemon at a time), check the key; see :meth:`Store.open`."""
        store = cls()
        store._clock = clock or time.time
        await asyncio.to_thread(store._open_pg, settings, create_missing_key, must_exist)
        store._start_pg_threads()
        return store

    def _open_pg(self, settings: StoreSettings, create_missing_key: bool, must_exist: bool) -> None:
        self._dsn = str(getattr(settings, "dsn", ""))
        self.target = describe_dsn(self._dsn)
        self._pool_size = int(getattr(settings, "pool_size", 4))
        path = Path(settings.path)
        self.path = path
        self.media_dir = path.with_name(path.stem + "-media")
        try:
            raw = connect(self._dsn)
        except psycopg.Error as err:
            raise StoreError(f"cannot connect to the {self.target}: {_first_line(err)}") from err
        conn = PgConnection(raw)
        try:
            self._open_with(conn, settings.key, create_missing_key, must_exist)
        except psycopg.Error as err:
            raw.close()
            raise StoreError(f"cannot open the store in the {self.target}: {_first_line(err)}") from err
        except BaseException:
            raw.close()
            raise
        self._writer = conn

    def _open_with(self, conn: PgConnection, ref: str, create_missing_key: bool, must_exist: bool) -> None:
        has_store = pg_migrate.current_version(conn) > 0
        if must_exist and not has_store:
            raise StoreError(f"no Carebridge store in the {self.target}")
        key_path = key_file_path(ref)
        if key_path is not None and not key_path.exists():
            if has_store:
                raise StoreError(f"master key {key_path} not found; refusing to open an existing database without it")
            if not create_missing_key:
                raise StoreError(f"master key {key_path} not found")
            write_key_file(key_path, generate_key(), exclusive=True)
            log.warning("generated a new master key in %s: back it up, the store cannot be read without it", key_path)
        master = load_master_key(ref)
        pg_migrate.check_not_newer(conn)
        if has_store:
            master = self._check_key(conn, master, key_path)
        self.schema_version = pg_migrate.migrate(conn)
        self._bootstrap(conn, master)
        self._keyring = Keyring(master, ref)
        self._keyring.load_secrets(conn)
        self._keys_seen = self._keys_state(conn)
        self._keyring.sync(conn)
        try:
            self.media_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        except OSError as err:
            raise StoreError(f"cannot create the media directory {self.media_dir}: {err}") from err

    def _check_key(self, conn: PgConnection, master: bytes, key_path: Path | None) -> bytes:
        """Refuse a wrong key before writing; finish a rotation interrupted between the commit and the rename."""
        if key_matches(conn, master) is not False:
            return master
        if key_path is not None:
            pending = pending_key_path(key_path)
            try:
                new = load_master_key(f"file:{pending}")
            except StoreError:
                new = None
            if new is not None and key_matches(conn, new):
                with contextlib.suppress(FileNotFoundError):
                    pending.replace(key_path)
                    fsync_dir(key_path.parent)
                log.warning("finished an interrupted key rotation: %s now holds the new master key", key_path)
                return new
        raise KeyMismatchError(MISMATCH)

    def _bootstrap(self, conn: PgConnection, master: bytes) -> None:
        """On a new database: the key check, the HMAC root key and the system key (one daemon does it)."""
        if key_matches(conn, master) is not None:
            return
        conn.native("BEGIN")
        try:
            conn.native("SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))", (BOOTSTRAP_LOCK,))
            found = key_matches(conn, master)
            if found is False:
                raise KeyMismatchError(MISMATCH)
            if found is None:
                if _scalar(conn.execute("SELECT count(*) FROM keys")):
                    raise StoreError("the store has data keys but no key check; refusing to guess its master key")
                conn.execute("INSERT INTO meta(name, value) VALUES (?, ?)", (KEY_CHECK_NAME, seal_key_check(master)))
                keyring = Keyring(master, None)
                for owner in (HMAC_ROOT, SYSTEM_KEY):
                    key_id = _scalar(conn.native("SELECT nextval(pg_get_serial_sequence('keys', 'id'))"))
                    keyring.create(conn, owner, int(key_id), self._clock())
            conn.native("COMMIT")
        except BaseException:
            conn.native("ROLLBACK")
            raise

    def _start_pg_threads(self) -> None:
        self._pool = ConnectionPool(
            self._dsn,
            min_size=1,
            max_size=self._pool_size,
            kwargs=connect_kwargs(self._dsn),
            configure=configure,
            check=ConnectionPool.check_connection,
            name="carebridge-readers",
            open=True,
        )
        self._readers = concurrent.futures.ThreadPoolExecutor(
            self._pool_size, thread_name_prefix="carebridge-store-reader"
        )
        self._thread = threading.Thread(target=self._writer_loop, name="carebridge-store-writer", daemon=True)
        self._thread.start()
        self._listener = threading.Thread(target=self._listen_loop, name="carebridge-store-listener", daemon=True)
        self._listener.start()

    # -- public API -------------------------------------------------------
    async def read(self, fn: Callable[[Tx], T]) -> T:
        """Run ``fn(tx)`` on a pooled connection, in one read-only snapshot."""
        if self._closed or self._readers is None:
            raise StoreError("the store is closed")
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._readers, self._run_read, fn)

    def health(self) -> dict[str, Any]:
        """Store status for /healthz: ``error`` when the writer is gone, the database unreachable or
        not a primary, or writes fail (``write_error`` says why)."""
        alive = not self._closed and self._thread is not None and self._thread.is_alive()
        writable = self.write_error is None
        ok = alive and self.reachable and self.in_recovery is not True and writable
        return {
            "status": "ok" if ok else "error",
            "backend": self.backend,
            "schema_version": self.schema_version,
            "database": self.target,
            "primary": None if self.in_recovery is None else not self.in_recovery,
            "writable": writable,
            "write_error": self.write_error,
            "failed_commits": self.failed_commits,
            "pool": self.pool_stats(),
        }

    def stats(self) -> dict[str, float]:
        """Figures for /metrics: up (as /healthz's ``status``), failed commits, writable, the read pool."""
        pool = self.pool_stats()
        return {
            "up": 1.0 if self.health()["status"] == "ok" else 0.0,
            "failed_commits": float(self.failed_commits),
            "writable": 1.0 if self.write_error is None else 0.0,
            **{f"pool_{state}": float(value) for state, value in pool.items()},
        }

    @staticmethod
    def _cannot_write(err: BaseException) -> bool:
        """The server refusing writes: gone or unreachable, shutting down, disk full, a standby, a lock timeout.

        A deadlock or serialization failure is one write meeting another, not the store's state.
        """
        if isinstance(err, (psycopg.errors.DeadlockDetected, psycopg.errors.SerializationFailure)):
            return False
        return isinstance(err, (psycopg.OperationalError, psycopg.errors.ReadOnlySqlTransaction))

    def pool_stats(self) -> dict[str, int]:
        """Read connections: ``size`` open, ``in_use``, ``max``, ``waiting`` requests."""
        if self._pool is None:
            return {"size": 0, "in_use": 0, "max": self._pool_size, "waiting": 0}
        stats = self._pool.get_stats()
        size = int(stats.get("pool_size", 0))
        return {
            "size": size,
            "in_use": size - int(stats.get("pool_available", 0)),
            "max": int(stats.get("pool_max", self._pool_size)),
            "waiting": int(stats.get("requests_waiting", 0)),
        }

    def subscribe(self, topic: str, callback: Callable[[], None]) -> None:
        """Call ``callback`` on the current event loop whenever any daemon commits a change to ``topic``."""
        if topic not in TOPICS:
            raise ValueError(f"unknown store topic {topic!r} (known: {', '.join(TOPICS)})")
        self._subscribers.setdefault(topic, []).append((asyncio.get_running_loop(), callback))

    @contextlib.asynccontextmanager
    async def exclusive(self, name: str) -> AsyncIterator[bool]:
        """Yield True on the one daemon holding the advisory lock ``name``, False on the others."""
        if self._pool is None:
            raise StoreError("the store is closed")
        pool = self._pool
        raw = await asyncio.to_thread(pool.getconn)
        key = LOCK_PREFIX + "job:" + name
        try:
            row = await asyncio.to_thread(
                lambda: raw.execute("SELECT pg_try_advisory_lock(hashtextextended(%s, 0))", (key,)).fetchone()
            )
            mine = bool(row and row[0])
            try:
                yield mine
            finally:
                if mine:
                    await asyncio.to_thread(
                        lambda: raw.execute("SELECT pg_advisory_unlock(hashtextextended(%s, 0))", (key,))
                    )
        finally:
            await asyncio.to_thread(pool.putconn, raw)

    async def rotate_master_key(self, new_master: bytes) -> int:
        """Re-wrap every data key under ``new_master`` in one transaction (see :meth:`Store.rotate_master_key`)."""

        def rotate(tx: Tx) -> int:
            tx._session.serialize("keys")  # no daemon wraps a new key under the old master meanwhile
            count = self._keyring.rewrap_all(self._writer, new_master)
            tx.after_commit(lambda: self._keyring.replace_master(new_master))
            return count

        return await self.write(rotate)

    async def checkpoint(self, *, timeout: float = 30.0) -> bool:
        """After a purge, rekey or rotation: vacuum ``keys`` so old versions of its rows go from the tables.

        PostgreSQL's own WAL and the operator's backups keep them until they are
        recycled or expire (README: the database's own copies are the operator's).
        """

        def vacuum() -> None:
            self._writer.native("VACUUM keys")

        await self.write(lambda tx: tx.after_commit(vacuum))
        return True

    async def close(self) -> None:
        """Finish queued writes, stop the threads, close the pool and the connections."""
        if self._closed:
            return
        self._closed = True
        self._queue.put(_STOP)
        if self._thread is not None:
            await asyncio.to_thread(self._thread.join)
        if self._readers is not None:
            await asyncio.to_thread(self._readers.shutdown, True)
        if self._listener is not None:
            # Wake our listener from its wait (others on the channel just look and go on).
            with contextlib.suppress(psycopg.Error):
                await asyncio.to_thread(self._writer.native, f"NOTIFY {WAKE_CHANNEL}")
            await asyncio.to_thread(self._listener.join)
        if self._pool is not None:
            await asyncio.to_thread(self._pool.close)
        await asyncio.to_thread(self._writer.raw.close)

    # -- threads ----------------------------------------------------------
    def _run_read(self, fn: Callable[[Tx], T]) -> T:
        assert self._pool is not None
        with self._pool.connection() as raw:
            conn = PgConnection(raw)
            conn.native("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
            try:
                self._keyring.sync(conn)  # fixes the snapshot; data keys replaced meanwhile are not used
                return fn(Tx(PgSession(conn, self._keyring, self._clock, self.media_dir, writable=False)))
            finally:
                conn.native("ROLLBACK")

    def _writer_loop(self) -> None:
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
                self._commit_pg_batch(batch)
            except BaseException as err:  # noqa: BLE001 (the writer must outlive a bug in one batch)
                log.exception("store writer failed a batch")
                with contextlib.suppress(psycopg.Error):
                    self._writer.native("ROLLBACK")
                failure = StoreError(f"store writer failed: {err}")
                self._settle(batch, [(False, failure)] * len(batch))

    def _begin(self) -> None:
        """BEGIN on the writer connection, reconnecting once if the server dropped it (restart, failover)."""
        try:
            self._writer.native("BEGIN")
            return
        except psycopg.OperationalError as err:
            log.warning("store: the database connection was lost (%s); reconnecting", _first_line(err))
        with contextlib.suppress(psycopg.Error):
            self._writer.raw.close()
        self._writer = PgConnection(connect(self._dsn))
        self._writer.native("BEGIN")

    def _commit_pg_batch(self, batch: list[tuple[Callable[[Tx], Any], asyncio.Future[Any], Any]]) -> None:
        """One transaction for the batch; a server that refuses writes is reported as on SQLite.

        ``write_error``, ``failed_commits``, ``StoreWriteError`` to the callers,
        and ``on_writable`` listeners told once a transaction that wrote commits again.
        """
        try:
            self._begin()
        except psycopg.Error as err:
            self.reachable = False
            self._fail_batch(None, batch, err, "the store's database is unreachable")
            return
        self.reachable = True
        conn = self._writer
        session = PgSession(conn, self._keyring, self._clock, self.media_dir, writable=True)
        tx = Tx(session)
        session._begin_batch()
        outcomes: list[tuple[bool, Any]] = []
        refused = False
        native = conn.native
        try:
            self._keyring.sync(conn)
            self._prune_keys(conn)
        except psycopg.OperationalError as err:
            with contextlib.suppress(psycopg.Error):
                native("ROLLBACK")
            self._fail_batch(session, batch, err, "the store's database is unreachable")
            return
        for fn, _future, _loop in batch:
            ok, result = self._run_fn(native, session, tx, fn)
            if not ok and self._cannot_write(result):
                refused = True
                result = self._failed(result, 1, "the store cannot write")
            outcomes.append((ok, result))
        try:
            # Only a transaction that wrote proves the store writable again (a standby commits empty ones).
            wrote = self.write_error is None or _scalar(native("SELECT pg_current_xact_id_if_assigned()")) is not None
            native("COMMIT")
        except psycopg.Error as err:
            with contextlib.suppress(psycopg.Error):
                native("ROLLBACK")
            self._fail_batch(session, batch, err, "commit failed")
            return
        self._batch_committed(session, batch, outcomes, proves_writable=not refused and wrote)

    @staticmethod
    def _run_fn(native: Callable[..., Any], session: PgSession, tx: Tx, fn: Callable[[Tx], Any]) -> tuple[bool, Any]:
        """One write function in its own SAVEPOINT; ``(ok, result or exception)``.

        A deadlock with another daemon's transaction (PostgreSQL aborts one of
        the two) is retried: rolling back to the savepoint released this
        function's locks, so the other goes on and the retry waits for it.
        """
        for attempt in range(1 + DEADLOCK_RETRIES):
            try:
                native("SAVEPOINT w")
            except psycopg.Error as err:  # the connection went: the server or the network
                session._end_fn(False)
                return False, err
            try:
                result = fn(tx)
                if type(result) not in _PLAIN_RESULTS and inspect.isawaitable(result):
                    close = getattr(result, "close", None)
                    if close is not None:
                        close()
                    raise TypeError("store.write() takes a plain function, not a coroutine function")
            except BaseException as err:  # noqa: BLE001 (handed to the caller)
                try:
                    native("ROLLBACK TO w")
                    native("RELEASE w")
                except psycopg.Error:
                    pass
                session._end_fn(False)
                if isinstance(err, psycopg.errors.DeadlockDetected) and attempt < DEADLOCK_RETRIES:
                    log.info("store: a write met another daemon's in a deadlock; running it again")
                    continue
                return False, err
            native("RELEASE w")
            session._end_fn(True)
            return True, result
        raise AssertionError("unreachable")

    def _prune_keys(self, conn: PgConnection) -> None:
        """Forget cached data keys another daemon or an admin command shredded (cheap when nothing changed)."""
        seen = self._keys_state(conn)
        if seen != self._keys_seen:
            self._keyring.prune(conn)
            self._keys_seen = seen

    @staticmethod
    def _keys_state(conn: PgConnection) -> tuple[int, int]:
        """``(count, highest id)`` of ``keys``: changes whenever a key is added or deleted (ids never repeat)."""
        count, top = conn.native("SELECT count(*), coalesce(max(id), 0) FROM keys").fetchall()[0]
        return int(count), int(top)

    def _listen_loop(self) -> None:
        """Deliver NOTIFYs to subscribers and keep the primary check fresh; reconnect when the server goes."""
        conn: psycopg.Connection[Any] | None = None
        while not self._closed:
            try:
                if conn is None or conn.closed:
                    conn = connect(self._dsn)
                    for channel in (*(NOTIFY_PREFIX + topic for topic in TOPICS), WAKE_CHANNEL):
                        conn.execute(f"LISTEN {channel}".encode())
                row = conn.execute("SELECT pg_is_in_recovery()").fetchone()
                self.in_recovery = bool(row and row[0])
                self.reachable = True
                for note in conn.notifies(timeout=LISTEN_TICK):
                    self._dispatch(note.channel)
                    if self._closed:
                        break
            except psycopg.Error as err:
                self.reachable = False
                log.warning("store listener: %s; reconnecting", _first_line(err))
                if conn is not None:
                    with contextlib.suppress(psycopg.Error):
                        conn.close()
                conn = None
                time.sleep(LISTEN_TICK)
        if conn is not None:
            conn.close()

    def _dispatch(self, channel: str) -> None:
        topic = channel.removeprefix(NOTIFY_PREFIX)
        for loop, callback in self._subscribers.get(topic, ()):
            with contextlib.suppress(RuntimeError):  # the loop is closed
                loop.call_soon_threadsafe(callback)


def _scalar(cursor: psycopg.Cursor[Any]) -> Any:
    """The first column of a statement's one row."""
    return cursor.fetchall()[0][0]


def _first_line(err: BaseException) -> str:
    return (str(err).strip().splitlines() or [type(err).__name__])[0]
