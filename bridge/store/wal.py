"""Keeping the write-ahead log small, and telling a full or read-only disk from a bug.

Why deliberate checkpoints: SQLite's automatic checkpoint (PASSIVE, after a
commit that leaves more than 1,000 pages in the WAL) copies pages back but
can only start the WAL over when no reader still uses it. A store that is
read all the time (the outbox worker under a backlog) then never resets its
WAL, which grew to gigabytes. After a commit the writer checks the WAL's size;
past ``RESTART_BYTES`` it runs ``wal_checkpoint(TRUNCATE)`` (a RESTART that
also cuts the file to zero, so the file's size keeps telling how much of the
WAL is in use and the next check does not fire on every commit) with a short busy
timeout: it waits a moment for the readers of the moment to finish (reads
are short: the outbox's pick is a few index seeks) instead of stalling
writes, and when one is slower it tries again ``CHECKPOINT_EVERY`` later or
as soon as the WAL has grown by another quarter of ``RESTART_BYTES``, whichever
comes first (a fast disk writes tens of megabytes in ``CHECKPOINT_EVERY``).
The store's own reads pass a ``ReadGate``: the checkpoint closes it, waits
(at most ``CHECKPOINT_WAIT_MS``) for the read under way, and opens it again
when done, so reads that follow each other without a pause cannot keep the
WAL in use for ever; only another process's reader can still defer it.
``journal_size_limit`` also bounds the file SQLite's own checkpoints reset.

Why classify errors: a commit refused by the disk (full, read-only, I/O
error) or by a lock held too long by another process is a state of the
store, not of one write: the engine reports it in ``/healthz`` and
``/metrics`` and the outbox worker stops sending until a write succeeds again.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

log = logging.getLogger("carebridge.store")

#: Past this WAL size a commit asks for a RESTART checkpoint.
RESTART_BYTES = 8 * 1024 * 1024
#: ``PRAGMA journal_size_limit``: what a reset WAL is truncated to.
JOURNAL_SIZE_LIMIT = 16 * 1024 * 1024
#: After a checkpoint that readers held up, the fewest seconds before the next try.
CHECKPOINT_EVERY = 0.2
#: How long a deliberate checkpoint waits for readers before giving up for now.
CHECKPOINT_WAIT_MS = 50

#: SQLite result codes (primary, by name) that mean "the store cannot write now".
_CANNOT_WRITE = ("SQLITE_FULL", "SQLITE_IOERR", "SQLITE_READONLY", "SQLITE_CANTOPEN", "SQLITE_BUSY", "SQLITE_LOCKED")


def cannot_write(err: BaseException) -> bool:
    """Whether ``err`` is the disk or a lock refusing a write (not a bug in the statement)."""
    name = getattr(err, "sqlite_errorname", None)
    if isinstance(err, sqlite3.Error) and isinstance(name, str):
        return name.startswith(_CANNOT_WRITE)
    return False


def wal_path(db: Path) -> Path:
    """The write-ahead log file of the database ``db``."""
    return db.with_name(db.name + "-wal")


def wal_bytes(db: Path) -> int:
    """Current size of the WAL in bytes (0 when there is none)."""
    try:
        return os.stat(wal_path(db)).st_size
    except OSError:
        return 0


class ReadGate:
    """Lets the checkpoint find a moment when none of the store's own reads holds a snapshot.

    Reads enter with ``reading()``; ``hold()`` stops new ones from entering
    and waits for those under way, ``release()`` lets them in again.
    """

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._readers = 0
        self._held = False

    @contextmanager
    def reading(self) -> Iterator[None]:
        """Hold a read open; waits while a checkpoint holds the gate."""
        with self._cond:
            self._cond.wait_for(lambda: not self._held)
            self._readers += 1
        try:
            yield
        finally:
            with self._cond:
                self._readers -= 1
                self._cond.notify_all()

    def hold(self, timeout: float) -> bool:
        """Close the gate and wait up to ``timeout`` seconds for the reads under way; False (and open) if they last."""
        with self._cond:
            self._held = True
            if self._cond.wait_for(lambda: self._readers == 0, timeout):
                return True
            self._held = False
            self._cond.notify_all()
            return False

    def release(self) -> None:
        """Open the gate again."""
        with self._cond:
            self._held = False
            self._cond.notify_all()


class Checkpointer:
    """The writer thread's checkpoint policy (see the module docstring); called from the writer thread only."""

    def __init__(self, db: Path, busy_timeout_ms: int) -> None:
        self.gate = ReadGate()
        self._db = db
        self._busy_timeout_ms = busy_timeout_ms
        self._next = 0.0
        self._retry_at_bytes = 0
        self.restarts = 0
        self.deferred = 0

    def after_commit(self, conn: sqlite3.Connection) -> None:
        """Run a RESTART checkpoint if the WAL is past ``RESTART_BYTES`` and readers allow."""
        now = time.monotonic()
        size = wal_bytes(self._db)
        if size < RESTART_BYTES:
            return
        if now < self._next and size < self._retry_at_bytes:
            return
        if not self.gate.hold(CHECKPOINT_WAIT_MS / 1000):
            self.deferred += 1
            self._defer(now, size)
            return
        conn.execute(f"PRAGMA busy_timeout = {CHECKPOINT_WAIT_MS}")
        try:
            busy, _frames, _done = conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
        except sqlite3.Error as err:  # a full disk cannot take the copied pages: try again later
            log.warning("WAL checkpoint failed: %s", err)
            self._defer(now, size)
            return
        finally:
            self.gate.release()
            conn.execute(f"PRAGMA busy_timeout = {self._busy_timeout_ms}")
        if busy:
            self.deferred += 1
            self._defer(now, size)
        else:
            self.restarts += 1

    def _defer(self, now: float, size: int) -> None:
        """Try again after ``CHECKPOINT_EVERY`` or a quarter of ``RESTART_BYTES`` more of WAL."""
        self._next = now + CHECKPOINT_EVERY
        self._retry_at_bytes = size + RESTART_BYTES // 4
