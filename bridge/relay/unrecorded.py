"""Outcomes the worker could not commit yet, kept until the store takes them.

Why keep them: once a platform has accepted a message, sending it again is a
duplicate. If the store refuses the commit of that outcome (a full or
read-only disk, an I/O error), the worker keeps the outcome here, leaves the
row out of every pick, and commits it as soon as the store can write again
(``Store.on_writable``) or at the next try; nothing of it is sent again while
the process lives. Only a stop before the store recovers loses it, which the
README's delivery guarantee names.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from bridge.store import Tx

#: Seconds between tries while the store cannot write (each try is a real write, so it is also a probe).
STORE_RETRY = 1.0


@dataclass
class _Kept:
    write: Callable[[Tx], object]
    what: str
    tries: int = 0
    next_try: float = 0.0


class Unrecorded:
    """Outcomes waiting for the store, by delivery id."""

    def __init__(self, retry_base: float, retry_max: float) -> None:
        self._kept: dict[int, _Kept] = {}
        self._base = retry_base
        self._max = retry_max

    def __len__(self) -> int:
        return len(self._kept)

    def __contains__(self, delivery_id: object) -> bool:
        return delivery_id in self._kept

    @property
    def ids(self) -> list[int]:
        """The deliveries whose outcome waits (never picked for sending meanwhile)."""
        return list(self._kept)

    def keep(self, delivery_id: int, write: Callable[[Tx], object], what: str, now: float) -> None:
        """Keep ``write`` (the outcome ``what`` of ``delivery_id``) for the next try."""
        self._kept[delivery_id] = _Kept(write, what, next_try=now + STORE_RETRY)

    def due(self, now: float) -> list[tuple[int, Callable[[Tx], object], str]]:
        """The outcomes to try committing now."""
        return [(i, k.write, k.what) for i, k in self._kept.items() if k.next_try <= now]

    def done(self, delivery_id: int) -> None:
        """The outcome is committed."""
        self._kept.pop(delivery_id, None)

    def failed(self, delivery_id: int, now: float, *, store_refused: bool) -> None:
        """Another try failed: soon again while the store refuses writes, else back off (a bug is not a state)."""
        kept = self._kept.get(delivery_id)
        if kept is None:
            return
        kept.tries += 1
        delay = STORE_RETRY if store_refused else min(self._max, self._base * 2 ** min(kept.tries, 30))
        kept.next_try = now + delay

    def try_all_now(self) -> None:
        """The store can write again: every kept outcome is due."""
        for kept in self._kept.values():
            kept.next_try = 0.0

    def next_try(self) -> float | None:
        """When the soonest kept outcome is due (None: nothing kept)."""
        return min((k.next_try for k in self._kept.values()), default=None)
