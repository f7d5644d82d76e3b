"""The per-sender cap on mails per hour: what stops a mail loop or a flood.

Two auto-responders answering each other, or a script mailing us in a
loop, would each mail become a customer message and an agent's chat line.
Beyond ``max_mails_per_hour`` from one sender within the last hour, mail
is kept out of the bridge until the hour has passed; the operator is told
once per sender and episode (a log line, and the channel's reason in
/healthz while any sender is over).

Mail that a trusted ``Authentication-Results`` vouches for is counted
apart from mail that merely claims the same From: forged mail cannot use
up a real sender's allowance. Senders are kept as digests, in memory: a
restart forgets the counts, which only ever lets more mail in.
"""

from __future__ import annotations

import enum
import hashlib
import time
from collections import deque
from collections.abc import Callable

WINDOW = 3600.0
#: Stale senders are forgotten every this many mails.
_PRUNE_EVERY = 1000


class Verdict(enum.Enum):
    """What the cap says about one mail."""

    ADMIT = "admit"
    REFUSE_FIRST = "refuse_first"  # the first mail of an episode over the cap: tell the operator
    REFUSE = "refuse"


class SenderCap:
    """Counts mails per sender over a sliding hour.

    :param per_hour: the most mails one sender may send in an hour (0: no cap).
    """

    def __init__(self, per_hour: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.per_hour = per_hour
        self.clock = clock
        self._seen: dict[bytes, deque[float]] = {}
        self._over: dict[bytes, float] = {}  # sender -> when its last mail was refused
        self._count = 0

    def check(self, sender: str, vouched: bool) -> Verdict:
        """Count one mail from ``sender`` and say whether it may come in."""
        if self.per_hour <= 0:
            return Verdict.ADMIT
        now = self.clock()
        self._count += 1
        if self._count % _PRUNE_EVERY == 0:
            self._prune(now)
        key = hashlib.sha256(f"{int(vouched)}:{sender}".encode()).digest()
        times = self._seen.setdefault(key, deque())
        while times and now - times[0] >= WINDOW:
            times.popleft()
        if len(times) < self.per_hour:
            times.append(now)
            self._over.pop(key, None)
            return Verdict.ADMIT
        first = key not in self._over or now - self._over[key] >= WINDOW
        self._over[key] = now
        return Verdict.REFUSE_FIRST if first else Verdict.REFUSE

    def active(self) -> bool:
        """Whether any sender had mail refused within the last hour."""
        now = self.clock()
        return any(now - at < WINDOW for at in self._over.values())

    def _prune(self, now: float) -> None:
        for key in [k for k, times in self._seen.items() if not times or now - times[-1] >= WINDOW]:
            del self._seen[key]
        for key in [k for k, at in self._over.items() if now - at >= WINDOW]:
            del self._over[key]
