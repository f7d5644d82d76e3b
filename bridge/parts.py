"""Sending one long text as several platform messages, in order, exactly once each.

Platforms cap a message's length (Messenger 2000 characters, WhatsApp
4096), so a channel splits longer texts. When a later part fails, the core's
outbox retries the whole delivery; ``SentParts`` lets the channel resume at
the failed part instead of sending the first parts again.
"""

from __future__ import annotations

from collections import OrderedDict


def split_text(text: str, limit: int) -> list[str]:
    """Split ``text`` into non-blank parts of at most ``limit`` characters, in order.

    Cuts at the last whitespace before the limit (a line break in the second
    half of the part is preferred); a single word longer than the limit is
    cut hard. The whitespace at a cut is dropped and nothing else is.
    An empty or blank text is one part, unchanged: refusing it is the caller's call.

    :raises ValueError: when ``limit`` is not positive.
    """
    if limit < 1:
        raise ValueError("limit must be positive")
    parts: list[str] = []
    rest = text
    while len(rest) > limit:
        window = rest[: limit + 1]
        cut = window.rfind("\n")
        if cut < limit // 2:
            cut = max(window.rfind(" "), window.rfind("\t"), cut)
        if cut <= 0:
            head, rest = rest[:limit], rest[limit:]
        else:
            head, rest = rest[:cut], rest[cut + 1 :]
        if head.strip():
            parts.append(head)
    if rest.strip() or not parts:
        parts.append(rest)
    return parts


class SentParts:
    """The platform ids of parts already accepted, per delivery, for resuming a retry.

    Bounded: the oldest unfinished deliveries are forgotten first (a forgotten
    one is sent whole again, which the at-least-once guarantee allows).
    """

    def __init__(self, remember: int = 1024) -> None:
        self._remember = remember
        self._parts: OrderedDict[int, tuple[str, list[str]]] = OrderedDict()

    def accepted(self, delivery_id: int, text: str) -> list[str]:
        """Return the (mutable) list of ids accepted so far for this delivery's text.

        Append each new id as its part is accepted; a changed text starts afresh.
        """
        known = self._parts.get(delivery_id)
        if known is None or known[0] != text:
            known = (text, [])
            self._parts[delivery_id] = known
            while len(self._parts) > self._remember:
                self._parts.popitem(last=False)
        else:
            self._parts.move_to_end(delivery_id)
        return known[1]

    def finish(self, delivery_id: int) -> None:
        """Forget a delivery that succeeded or failed for good."""
        self._parts.pop(delivery_id, None)
