"""Opening SQLite connections for the store: pragmas, the SQL functions, first-run keys.

Both store connections (writer and reader) are made here so they agree on
WAL, durability, foreign keys, secure_delete and the functions the schema's
triggers call.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

from bridge.errors import StoreError
from bridge.store import scrub
from bridge.store.keyring import (
    HMAC_ROOT,
    KEY_CHECK_NAME,
    SYSTEM_KEY,
    Keyring,
    key_matches,
    seal_key_check,
)
from bridge.store.wal import JOURNAL_SIZE_LIMIT

BUSY_TIMEOUT_MS = 10_000
CACHE_KIB = 16_384  # per connection: a big batch must not spill pages mid-transaction
READER_MMAP_BYTES = 256 * 1024 * 1024  # history pages read without a syscall per page
SYNC_MODES = frozenset({"off", "normal", "full", "extra"})


def connect(path: Path) -> sqlite3.Connection:
    """An autocommit connection usable from the store's threads."""
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
    scrub.register(conn)  # the outbox.last_error triggers call it
    return conn


def configure(conn: sqlite3.Connection, synchronous: str) -> None:
    """WAL (reset files truncated to ``JOURNAL_SIZE_LIMIT``), durability, foreign keys, secure_delete, sub-journal."""
    mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
    if str(mode).lower() != "wal":
        raise StoreError(f"cannot switch the store to WAL mode (got {mode})")
    conn.execute(f"PRAGMA journal_size_limit = {JOURNAL_SIZE_LIMIT}")
    conn.execute(f"PRAGMA synchronous = {synchronous.upper()}")
    conn.execute("PRAGMA foreign_keys = ON")
    conn.execute("PRAGMA secure_delete = ON")
    conn.execute(f"PRAGMA cache_size = -{CACHE_KIB}")
    conn.execute("PRAGMA temp_store = MEMORY")  # savepoint sub-journals stay in memory


def bootstrap(conn: sqlite3.Connection, master: bytes, now: float) -> None:
    """On a new database: the key check, the HMAC root key and the system key, in one transaction."""
    if key_matches(conn, master) is not None:
        return
    conn.execute("BEGIN IMMEDIATE")
    try:
        if key_matches(conn, master) is None:
            if conn.execute("SELECT count(*) FROM keys").fetchone()[0]:
                raise StoreError("the store has data keys but no key check; refusing to guess its master key")
            conn.execute("INSERT INTO meta(name, value) VALUES (?, ?)", (KEY_CHECK_NAME, seal_key_check(master)))
            keyring = Keyring(master, None)
            for key_id, owner in enumerate((HMAC_ROOT, SYSTEM_KEY), start=1):
                keyring.create(conn, owner, key_id, now)
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
