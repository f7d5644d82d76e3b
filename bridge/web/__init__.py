"""The HTTP face: the aiohttp application (webhooks, /healthz, /metrics)."""

from __future__ import annotations

from bridge.web.app import BRIDGE, make_app

__all__ = ["BRIDGE", "make_app"]
