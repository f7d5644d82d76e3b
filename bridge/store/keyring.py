"""Data keys: who owns them, how they are wrapped, cached, checked and shredded.

Each contact and each agent has its own 256-bit data key; system data has
one more. Data keys are stored in ``keys`` wrapped (AES-GCM) by the master
key, and unwrapped keys are cached in memory. A random "hmac" root key, also
wrapped, gives the blind-index key and the audit-chain key through HKDF, so a
master key rotation only re-wraps rows and never has to recompute an index.

A ``meta`` row (``key_check``) holds a constant sealed by the master key: a
wrong master key is detected before anything is written. If an admin rotates
the key while the daemon runs, the daemon notices when a key check fails and
re-reads the key file (or the ``.new`` file of a rotation in progress).

Data keys themselves change only with ``keys rotate --rekey`` (another
process): it bumps the ``key_epoch`` row of ``meta`` in each transaction
that replaces keys. Every transaction of the store starts with
:meth:`Keyring.sync`, so a running daemon drops its cached keys as soon as
it sees a newer epoch, and a reader still on an older snapshot neither uses
nor caches keys of another epoch.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import NamedTuple

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from bridge.errors import IntegrityError, KeyMismatchError, StoreError
from bridge.store import crypto
from bridge.store.dbapi import Connection, is_integrity_error
from bridge.store.keyfile import key_file_path, load_master_key

log = logging.getLogger("carebridge.store")

KEY_CHECK_NAME = "key_check"
#: ``meta`` row counting data-key replacements (``keys rotate --rekey``); a plain integer.
KEY_EPOCH_NAME = "key_epoch"
_KEY_CHECK_PLAIN = b"carebridge key check v1"
_KEY_CHECK_AAD = crypto.aad("meta", "value", KEY_CHECK_NAME)
MISMATCH = "the master key does not match this database"


class KeyOwner(NamedTuple):
    """Whose data key seals a value: ``KeyOwner("contact", 7)``, ``KeyOwner("agent", 2)``
    or ``SYSTEM_KEY``. A tuple, so hashing it on the hot path is cheap."""

    kind: str
    id: int = 0

    @classmethod
    def contact(cls, contact_id: int) -> KeyOwner:
        """The data key of one contact (shredded when the contact is erased)."""
        return cls("contact", int(contact_id))

    @classmethod
    def agent(cls, agent_id: int) -> KeyOwner:
        """The data key of one agent."""
        return cls("agent", int(agent_id))


#: The data key of system data (the audit log's details, the audit head).
SYSTEM_KEY = KeyOwner("system", 0)
HMAC_ROOT = KeyOwner("hmac", 0)


def pending_key_path(key_path: Path) -> Path:
    """Where ``keys rotate`` puts the new key before the database commit."""
    return key_path.with_name(key_path.name + ".new")


def seal_key_check(master: bytes) -> bytes:
    """The ``meta.key_check`` value for ``master``."""
    return crypto.seal(crypto.cipher(master), _KEY_CHECK_AAD, _KEY_CHECK_PLAIN)


def key_matches(conn: Connection, master: bytes) -> bool | None:
    """True/False whether ``master`` opens the key check; None when there is none yet."""
    try:
        row = conn.execute("SELECT value FROM meta WHERE name = ?", (KEY_CHECK_NAME,)).fetchone()
    except Exception as err:  # sqlite3's OperationalError; PostgreSQL callers check for the table first
        if "no such table" in str(err):
            return None
        raise
    if row is None:
        return None
    try:
        return crypto.open_blob(crypto.cipher(master), _KEY_CHECK_AAD, row[0]) == _KEY_CHECK_PLAIN
    except crypto.DecryptError:
        return False


def wrap(master: AESGCM, key_id: int, raw: bytes) -> bytes:
    """Wrap a data key under the master key, bound to its ``keys`` row."""
    return crypto.seal(master, crypto.aad("keys", "wrapped", key_id), raw)


def unwrap(master: AESGCM, key_id: int, wrapped: bytes) -> bytes:
    """Unwrap a data key; :class:`crypto.DecryptError` when the master is wrong."""
    return crypto.open_blob(master, crypto.aad("keys", "wrapped", key_id), wrapped)


class Keyring:
    """The master key, the cache of unwrapped data keys, and the derived HMAC keys.

    Shared by the writer and reader threads; the cache is a plain dict (the GIL
    makes single get/set atomic) and master-key swaps take a lock.
    """

    def __init__(self, master: bytes, ref: str | None) -> None:
        self._ref = ref
        self._lock = threading.Lock()
        self._set_master(master)
        self._cache: dict[tuple[str, int], tuple[int, AESGCM]] = {}
        self._epoch = 0
        self._local = threading.local()
        self.blind: crypto.BlindIndex | None = None
        self.audit_key: bytes = b""

    def _set_master(self, master: bytes) -> None:
        self._master_raw = master
        self._master = crypto.cipher(master)

    @property
    def master(self) -> bytes:
        """The master key in use (for rotation only)."""
        return self._master_raw

    # -- master key -------------------------------------------------------
    def ensure_current(self, conn: Connection) -> None:
        """Make sure our master key is the database's, reloading it after a rotation.

        :raises KeyMismatchError: when neither the loaded key nor a fresh read matches.
        """
        if key_matches(conn, self._master_raw) is not False:
            return
        with self._lock:
            if key_matches(conn, self._master_raw) is not False:
                return
            for candidate in self._candidates():
                if key_matches(conn, candidate):
                    self._set_master(candidate)
                    log.warning("the master key was rotated; now using the new key")
                    return
        raise KeyMismatchError(f"{MISMATCH} (it was rotated: restart with the new key)")

    def _candidates(self) -> list[bytes]:
        if self._ref is None:
            return []
        found: list[bytes] = []
        try:
            found.append(load_master_key(self._ref))
        except StoreError:
            pass
        path = key_file_path(self._ref)
        if path is not None:
            try:
                found.append(load_master_key(f"file:{pending_key_path(path)}"))
            except StoreError:
                pass
        return found

    def replace_master(self, new_master: bytes) -> None:
        """Use ``new_master`` from now on (after a committed rotation)."""
        with self._lock:
            self._set_master(new_master)

    # -- data keys --------------------------------------------------------
    def load_secrets(self, conn: Connection) -> None:
        """Unwrap the HMAC root key and derive the blind-index and audit keys."""
        row = conn.execute(
            "SELECT id, wrapped FROM keys WHERE owner_kind = ? AND owner_id = ?", (HMAC_ROOT.kind, HMAC_ROOT.id)
        ).fetchone()
        if row is None:
            raise StoreError("the store has no HMAC root key; it was not created by Carebridge")
        root = self._unwrap(conn, row[0], row[1])
        self.blind = crypto.BlindIndex(crypto.derive(root, crypto.BLIND_INFO))
        self.audit_key = crypto.derive(root, crypto.AUDIT_INFO)

    # -- epochs (data keys replaced by another process) ----------------------
    def sync(self, conn: Connection) -> int:
        """Note the key epoch of the transaction just begun on ``conn``; a newer one empties the cache.

        Call it first thing in every transaction (it also fixes the snapshot).
        """
        row = conn.execute("SELECT value FROM meta WHERE name = ?", (KEY_EPOCH_NAME,)).fetchone()
        epoch = int(row[0]) if row is not None and row[0] is not None else 0
        self._local.epoch = epoch
        if epoch > self._epoch:
            with self._lock:
                if epoch > self._epoch:
                    self._cache.clear()
                    self._epoch = epoch
        return epoch

    def _current(self) -> bool:
        """Whether this thread's transaction sees the newest key epoch (only then is the cache valid)."""
        return bool(getattr(self._local, "epoch", self._epoch) == self._epoch)

    def cached(self, owner: KeyOwner) -> tuple[int, AESGCM] | None:
        """The cached key of ``owner``, if any (never one of another epoch than this transaction's)."""
        if not self._current():
            return None
        return self._cache.get((owner.kind, owner.id))

    def lookup(self, conn: Connection, owner: KeyOwner) -> tuple[int, AESGCM]:
        """Return ``(key id, cipher)`` of ``owner``'s existing key.

        :raises IntegrityError: when the owner has no key (erased, or never had one).
        """
        current = self._current()
        hit = self._cache.get((owner.kind, owner.id)) if current else None
        if hit is not None:
            return hit
        row = conn.execute(
            "SELECT id, wrapped FROM keys WHERE owner_kind = ? AND owner_id = ?", (owner.kind, owner.id)
        ).fetchone()
        if row is None:
            raise IntegrityError(f"no data key for {owner.kind} {owner.id} (erased?)")
        entry = (row[0], crypto.cipher(self._unwrap(conn, row[0], row[1])))
        if current:
            self.publish(owner, entry)
        return entry

    def _unwrap(self, conn: Connection, key_id: int, wrapped: bytes) -> bytes:
        try:
            return unwrap(self._master, key_id, wrapped)
        except crypto.DecryptError:
            self.ensure_current(conn)
        try:
            return unwrap(self._master, key_id, wrapped)
        except crypto.DecryptError as err:
            raise IntegrityError(
                f"keys.wrapped of row {key_id} failed authentication", table="keys", column="wrapped", row_id=key_id
            ) from err

    def create(
        self, conn: Connection, owner: KeyOwner, key_id: int, now: float, raw: bytes | None = None
    ) -> tuple[int, AESGCM]:
        """Insert a new wrapped data key for ``owner`` (not cached until commit)."""
        self.ensure_current(conn)
        raw = raw if raw is not None else crypto.new_data_key()
        try:
            conn.execute(
                "INSERT INTO keys(id, owner_kind, owner_id, wrapped, created_at) VALUES (?, ?, ?, ?, ?)",
                (key_id, owner.kind, owner.id, wrap(self._master, key_id, raw), now),
            )
        except Exception as err:
            if not is_integrity_error(err):
                raise
            raise StoreError(f"{owner.kind} {owner.id} already has a data key") from err
        return key_id, crypto.cipher(raw)

    def publish(self, owner: KeyOwner, entry: tuple[int, AESGCM]) -> None:
        """Cache a key whose row is committed (unless this transaction's epoch is no longer the newest)."""
        with self._lock:  # against a sync() emptying the cache between the check and the insert
            if self._current():
                self._cache[(owner.kind, owner.id)] = entry

    def prune(self, conn: Connection) -> int:
        """Forget cached keys whose rows another process deleted or replaced (``gdpr erase``, a rekey)."""
        if not self._cache:
            return 0
        existing = {(kind, owner_id): key_id for key_id, kind, owner_id in conn.execute(
            "SELECT id, owner_kind, owner_id FROM keys")}  # fmt: skip
        gone = [owner for owner, entry in list(self._cache.items()) if existing.get(owner) != entry[0]]
        for owner in gone:
            self._cache.pop(owner, None)
        return len(gone)

    def drop(self, owner: KeyOwner) -> None:
        """Forget ``owner``'s unwrapped key (crypto-shredding)."""
        self._cache.pop((owner.kind, owner.id), None)

    def rewrap_all(self, conn: Connection, new_master: bytes) -> int:
        """Re-wrap every data key and the key check under ``new_master``; return the count.

        Runs inside the caller's transaction; nothing is visible until it commits.
        """
        self.ensure_current(conn)
        new = crypto.cipher(new_master)
        rows = conn.execute("SELECT id, wrapped FROM keys").fetchall()
        updates = [(wrap(new, key_id, self._unwrap(conn, key_id, wrapped)), key_id) for key_id, wrapped in rows]
        conn.executemany("UPDATE keys SET wrapped = ? WHERE id = ?", updates)
        conn.execute("UPDATE meta SET value = ? WHERE name = ?", (seal_key_check(new_master), KEY_CHECK_NAME))
        return len(updates)
