"""Website chat channel for Carebridge: a customer page at /chat and an embeddable widget.

Installed as its own distribution and found through the ``carebridge``
entry-point group, exactly as a third-party channel would be.
"""

from __future__ import annotations

from bridge import RegisterChannel, hookimpl

from .channel import WebchatChannel
from .config import WebchatConfig

__all__ = ["WebchatChannel", "WebchatConfig", "register_channels"]


@hookimpl
def register_channels(register: RegisterChannel) -> None:
    """Register the website chat channel."""
    register(WebchatChannel)
