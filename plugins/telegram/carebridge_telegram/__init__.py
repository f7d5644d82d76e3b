"""Telegram Bot API channel for Carebridge.

Installed as its own distribution and found through the ``carebridge``
entry-point group, exactly as a third-party channel would be. Besides the
channel it adds one CLI command, ``carebridge telegram set-webhook``.
"""

from __future__ import annotations

import argparse

from bridge import RegisterChannel, hookimpl

from .channel import TelegramChannel
from .cli import add_commands
from .config import TelegramConfig

__all__ = ["TelegramChannel", "TelegramConfig", "register_channels", "register_cli"]


@hookimpl
def register_channels(register: RegisterChannel) -> None:
    """Register the Telegram channel."""
    register(TelegramChannel)


@hookimpl
def register_cli(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``carebridge telegram set-webhook``."""
    add_commands(subparsers)
