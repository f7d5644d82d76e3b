"""The outbox's retry policy: how long a failed delivery waits before its next attempt.

The rows themselves are the store's (``tx.outbox``); the worker
(``worker.py``) sends them and asks this module when to try again.
"""

from __future__ import annotations

import random


def retry_delay(
    attempt: int,
    base: float,
    maximum: float,
    retry_after: float | None = None,
    rng: random.Random | None = None,
) -> float:
    """Return the wait before retry number ``attempt`` (1-based).

    Exponential (``base * 2**(attempt-1)``, capped at ``maximum``) with
    "equal jitter": half the delay fixed, half random, so retries of many rows
    spread out but never come back at once. A platform's ``retry_after`` is a
    floor: we never call back sooner than asked.
    """
    rng = rng or random.Random()
    delay = float(min(maximum, base * (2 ** max(0, attempt - 1))))
    jittered = delay / 2 + rng.uniform(0, delay / 2)
    if retry_after is not None and retry_after > jittered:
        return float(retry_after)
    return jittered
