"""Splitting a long text into platform-sized parts without cutting words."""

from __future__ import annotations


def split_text(text: str, limit: int) -> list[str]:
    """Split ``text`` into parts of at most ``limit`` characters, in order.

    Cuts at the last whitespace (a line break preferred) before the limit;
    a single word longer than the limit is cut hard. The whitespace at a cut
    is dropped, nothing else is: joining the parts with that whitespace gives
    back the text. An empty text is one empty part.
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
            parts.append(rest[:limit])
            rest = rest[limit:]
            continue
        parts.append(rest[:cut])
        rest = rest[cut + 1 :]
    parts.append(rest)
    return parts
