"""Instagram messaging channel for Carebridge.

Installed as its own distribution and found through the ``carebridge``
entry-point group, exactly as a third-party channel would be.
"""

from __future__ import annotations

from bridge import RegisterChannel, hookimpl

from .channel import InstagramChannel
from .config import InstagramConfig

__all__ = ["InstagramChannel", "InstagramConfig", "register_channels"]


@hookimpl
def register_channels(register: RegisterChannel) -> None:
    """Register the Instagram channel."""
    register(InstagramChannel)
