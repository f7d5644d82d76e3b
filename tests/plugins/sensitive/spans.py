"""Read findings back as the text they cover, so every table states exact spans."""

from __future__ import annotations

from carebridge_sensitive.scan import detect


def found(text: str) -> list[tuple[str, str]]:
    """``(kind, covered text)`` for every finding in ``text``, in the detector's order."""
    findings = detect(text)
    assert [f.start for f in findings] == sorted(f.start for f in findings)
    return [(f.kind, text[f.start : f.end]) for f in findings]
