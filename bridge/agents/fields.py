"""Agent fields as typed by admins: checked, normalized, and masked for display.

Pure functions with no store access, shared by ``bridge.agents`` (which
re-exports them), the ``carebridge agent`` CLI and the console. A mistake is
an ``AgentError`` whose message says what is allowed.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from bridge.errors import BridgeError
from bridge.models import Address

ROLES = ("agent", "admin")
DEFAULT_QUEUE = "default"
# A leading letter: "/transfer 42" must never be read as an agent named "42".
_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9._-]{0,63}$")
_QUEUE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


class AgentError(BridgeError):
    """An agent cannot be created or changed as asked; the message says why."""


def normalize_address(channel: str, address: str) -> str:
    """Return the canonical form used for blind indexes (E.164 with ``+``, lower-case email).

    Platforms give WhatsApp numbers without ``+``; the CLI may give them with.
    An address the channel's rules cannot parse is kept as given, stripped.
    """
    try:
        return Address.parse(f"{channel}:{address}").address
    except ValueError:
        return address.strip()


def parse_address(text: str, known_channels: Iterable[str] | None = None) -> Address:
    """Parse an agent's ``CHANNEL:ADDRESS`` (``console`` needs no address).

    :param known_channels: channel names this bridge knows; None skips the check.
    :raises AgentError: saying what is wrong with the text.
    """
    try:
        address = Address.parse(text)
    except ValueError as err:
        raise AgentError(str(err)) from err
    if known_channels is not None and address.channel != "console" and address.channel not in set(known_channels):
        known = ", ".join(sorted({"console", *known_channels}))
        raise AgentError(f"unknown channel {address.channel!r} in {text!r}: known channels are {known}")
    if address.channel == "messenger" and not address.address.isdigit():
        raise AgentError(f"not a Messenger PSID (digits only): {address.address!r}")
    if len(address.address) > 320:
        raise AgentError("address too long")
    return address


def validate_name(name: str) -> str:
    """Return ``name`` if it is a valid username.

    :raises AgentError: saying what is allowed.
    """
    if not _NAME.match(name):
        raise AgentError(
            f"invalid agent name {name!r}: start with a letter, then letters, digits, '.', '_' or '-' (at most 64)"
        )
    return name


def validate_queues(queues: Iterable[str]) -> tuple[str, ...]:
    """Return the queues, de-duplicated in order; ``("default",)`` when none.

    :raises AgentError: for a malformed queue name.
    """
    out: list[str] = []
    for queue in queues:
        if not _QUEUE.match(queue):
            raise AgentError(f"invalid queue name {queue!r}: use letters, digits, '.', '_' or '-'")
        if queue not in out:
            out.append(queue)
    return tuple(out) or (DEFAULT_QUEUE,)


def mask_address(address: Address) -> str:
    """Return ``channel:address`` with the middle hidden, e.g. ``whatsapp:+3161****78``."""
    text = address.address
    if not text:
        return address.channel
    if address.channel == "email" and "@" in text:
        local, _, domain = text.partition("@")
        shown = local[:1] + "***@" + domain
    elif len(text) <= 6:
        shown = "*" * len(text)
    else:
        # A fixed run of stars: the mask must not tell the length either.
        keep = 5 if len(text) >= 10 else 2
        shown = text[:keep] + "****" + text[-2:]
    return f"{address.channel}:{shown}"
