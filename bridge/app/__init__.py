"""The Bridge: every long-lived resource wired together (store, plugins, relay, channels); metrics; pre-flight."""

from __future__ import annotations

from bridge.app.bridge import Bridge

__all__ = ["Bridge"]
