"""WhatsApp Business Cloud API channel for Carebridge.

Registered through the ``carebridge`` entry-point group like any third-party
plugin; the channel itself lives in ``channel.py``.
"""

from __future__ import annotations

from bridge import RegisterChannel, hookimpl

from .channel import WhatsAppChannel

__all__ = ["WhatsAppChannel"]


@hookimpl
def register_channels(register: RegisterChannel) -> None:
    """Register the WhatsApp channel."""
    register(WhatsAppChannel)
