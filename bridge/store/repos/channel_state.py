"""Channels' own bookkeeping across restarts (``ChannelContext.load_state``/``save_state``).

A pull channel must remember where it stopped (an IMAP folder's UIDVALIDITY
and the last UID it committed) or a restart would lose or repeat mail. The
values are the channel's business and are sealed under the system key,
bound to their channel and name; names are the channel's fixed keys, never
message data.
"""

from __future__ import annotations

from bridge.store.keyring import SYSTEM_KEY
from bridge.store.session import Session

#: The longest name and value a channel may keep.
MAX_NAME = 200
MAX_VALUE = 64 * 1024


class ChannelStateRepo:
    """``channel_state``: one sealed text value per (channel, name)."""

    def __init__(self, session: Session) -> None:
        self._s = session

    def load(self, channel: str, name: str) -> str | None:
        """The value last saved under ``name`` by ``channel``, or None.

        :raises IntegrityError: the stored value was tampered with or moved.
        """
        row = self._s.execute(
            "SELECT value FROM channel_state WHERE channel = ? AND name = ?", (channel, name)
        ).fetchone()
        if row is None:
            return None
        return self._s.open_text(SYSTEM_KEY, "channel_state", "value", _row_id(channel, name), row[0])

    def save(self, channel: str, name: str, value: str) -> None:
        """Replace the value under ``name`` for ``channel``.

        :raises ValueError: the name is empty or too long, or the value too large.
        """
        if not name or len(name) > MAX_NAME:
            raise ValueError(f"a channel state name has 1-{MAX_NAME} characters")
        if len(value.encode()) > MAX_VALUE:
            raise ValueError(f"a channel state value holds at most {MAX_VALUE} bytes")
        blob = self._s.seal(SYSTEM_KEY, "channel_state", "value", _row_id(channel, name), value)
        self._s.execute(
            "INSERT INTO channel_state(channel, name, value, updated_at) VALUES (?, ?, ?, ?)"
            " ON CONFLICT (channel, name) DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at",
            (channel, name, blob, self._s.now()),
        )


def _row_id(channel: str, name: str) -> str:
    # The sealed value is bound to its channel and name: moving it to another row fails to open.
    return f"{channel}\x00{name}"
