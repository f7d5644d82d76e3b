"""Built-in routing strategies, registered like any third-party strategy.

Both are ``choose_agent`` hookimpls (entry point ``core-routing``). The
relay passes candidates that are online, serve the conversation's queue and
are under capacity; each candidate has ``agent``, ``open_conversations``,
``idle_since`` (when the agent last had work or started the shift) and
``last_assigned_at`` (persisted, None when never assigned). A strategy
answers only to its own name, so a plugin can add another one.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from bridge.hookspecs import hookimpl

LEAST_BUSY = "least_busy"
ROUND_ROBIN = "round_robin"
STRATEGIES = (LEAST_BUSY, ROUND_ROBIN)


def _agent_id(candidate: Any) -> int:
    return int(getattr(candidate.agent, "id", 0))


def least_busy(candidates: Sequence[Any]) -> Any | None:
    """Fewest open conversations; ties go to the longest idle, then the lowest id."""
    if not candidates:
        return None
    return min(
        candidates,
        key=lambda c: (c.open_conversations, float(getattr(c, "idle_since", 0.0) or 0.0), _agent_id(c)),
    )


def round_robin(candidates: Sequence[Any]) -> Any | None:
    """The candidate assigned longest ago (never assigned first), then the lowest id.

    The rotation survives restarts because ``last_assigned_at`` is stored.
    """
    if not candidates:
        return None

    def key(c: Any) -> tuple[int, float, int]:
        last = getattr(c, "last_assigned_at", None)
        return (0 if last is None else 1, float(last or 0.0), _agent_id(c))

    return min(candidates, key=key)


@hookimpl
def choose_agent(strategy: str, conversation: Any, candidates: Sequence[Any]) -> Any | None:
    """Pick among ``candidates`` for ``least_busy`` and ``round_robin``; None otherwise."""
    if strategy == LEAST_BUSY:
        return least_busy(candidates)
    if strategy == ROUND_ROBIN:
        return round_robin(candidates)
    return None
