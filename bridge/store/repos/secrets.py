"""Random keys the bridge makes for itself, kept in ``meta`` sealed under the system key.

Why in the store rather than the config: such a key (the one that signs
email reply tokens) is needed by every process that shares the database,
must survive restarts, and must never be chosen by an admin. It is made on
first use and rotates with the master key like all system data.
"""

from __future__ import annotations

import secrets

from bridge.errors import StoreError
from bridge.store.keyring import SYSTEM_KEY
from bridge.store.session import Session

_PREFIX = "secret:"


class SecretsRepo:
    """Named random keys in ``meta`` (``secret:<name>``)."""

    def __init__(self, session: Session) -> None:
        self._s = session

    def get_or_create(self, name: str, size: int = 32) -> bytes:
        """The key called ``name``, made of ``size`` random bytes the first time it is asked for.

        :raises IntegrityError: the stored key was tampered with or moved.
        :raises StoreError: it does not exist yet and this is a read-only transaction.
        """
        row_name = _PREFIX + name
        row = self._s.execute("SELECT value FROM meta WHERE name = ?", (row_name,)).fetchone()
        if row is not None:
            return self._s.open_bytes(SYSTEM_KEY, "meta", "value", row_name, row[0])
        if not self._s.writable:
            raise StoreError(f"the key {name!r} does not exist yet; it is made by store.write(), not store.read()")
        key = secrets.token_bytes(size)
        blob = self._s.seal(SYSTEM_KEY, "meta", "value", row_name, key)
        self._s.execute("INSERT INTO meta(name, value) VALUES (?, ?) ON CONFLICT (name) DO NOTHING", (row_name, blob))
        return key
