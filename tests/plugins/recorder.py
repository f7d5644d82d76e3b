"""The recording channel context now ships with the core's test kit (``bridge.testing``)."""

from __future__ import annotations

from bridge.testing import RecordingCore

__all__ = ["RecordingCore"]
