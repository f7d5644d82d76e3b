"""Sensitive values hidden in what the console shows, unless an agent asks to reveal them.

Why at display time: the store keeps what the customer wrote (encrypted), and
the ``detect_sensitive`` plugins say where the bank numbers, card numbers and
codes are. The console's API and live updates show ``[hidden iban]`` in their
place; ``?reveal=1`` on a transcript shows them and is audited by the caller.
"""

from __future__ import annotations

from collections.abc import Sequence

from bridge.models import Finding
from bridge.plugins.hooks import Hooks


def mask_findings(text: str, findings: Sequence[Finding]) -> str:
    """Replace each finding's span in ``text`` by ``[hidden KIND]`` (overlapping spans merge)."""
    spans = sorted((max(0, f.start), min(len(text), f.end), f.kind) for f in findings if f.end > f.start)
    out: list[str] = []
    position = 0
    for start, end, kind in spans:
        if end <= position:
            continue
        start = max(start, position)
        out.append(text[position:start])
        out.append(f"[hidden {kind}]")
        position = end
    out.append(text[position:])
    return "".join(out)


class Masker:
    """Masks texts with the installed detectors (``detect_sensitive`` hook)."""

    def __init__(self, hooks: Hooks) -> None:
        self._hooks = hooks

    def __call__(self, text: str) -> str:
        """``text`` with every sensitive value hidden."""
        if not text:
            return text
        findings = self._hooks.detect_sensitive(text)
        return mask_findings(text, findings) if findings else text
