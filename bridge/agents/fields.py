"""Agent fields as typed by admins: checked, normalized, and masked for display.

Pure functions with no store access, shared by ``bridge.agents`` (which
re-exports them), the ``carebridge agent`` CLI and the console. A mistake is
an ``AgentError`` whose message says what is allowed. Platform addresses are
checked by their channels (``bridge.agents.addresses``), not here.
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


def normalize_email(text: str) -> str:
    """Return a mail address (``local@domain``) lower-cased, for an agent's or a customer's email.

    :raises AgentError: when it is not one.
    """
    address = text.strip().lower()
    local, at, domain = address.rpartition("@")
    if not at or not local or "." not in domain or domain.startswith(".") or any(c.isspace() for c in address):
        raise AgentError(f"not an email address: {text!r}")
    if len(address) > 254:
        raise AgentError("email address too long")
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
