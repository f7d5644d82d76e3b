"""The transaction handle: primitives plus every repository of the store."""

from __future__ import annotations

from .gdpr import GdprMixin


class Tx(GdprMixin):
    """What ``store.write(fn)`` and ``store.read(fn)`` pass to ``fn``; see ``bridge.store``."""
