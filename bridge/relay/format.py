"""How relayed text looks in an agent's chat: prefixes and attachment labels.

Agents may juggle several conversations in one chat app, so every relayed
customer message starts with ``[#42 Jan · WhatsApp]``: the id the agent uses
in ``/switch 42``, who wrote, and where they wrote.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any


def display_name(name: str | None, conversation_id: int) -> str:
    """Return the contact's name for a prefix, or a neutral stand-in."""
    name = " ".join((name or "").split())
    return name[:40] if name else f"Customer {conversation_id}"


def format_prefix(conversation_id: int, contact_name: str | None, label: str) -> str:
    """Return ``[#42 Jan · WhatsApp]`` for a conversation.

    :param label: the display name of the customer's platform (``RelayContext.label``).
    """
    return f"[#{conversation_id} {display_name(contact_name, conversation_id)} · {label}]"


def attachment_line(
    kind: str, attachment_id: int | None, public_url: str, meta: Mapping[str, Any] | None = None
) -> str:
    """Return one line describing an attachment for an agent's chat.

    With a public URL the agent gets a console link to the stored (decrypted
    on demand) media; without one, a label and whatever text the platform gave.
    """
    label = f"[{kind}]"
    meta = meta or {}
    extra = str(meta.get("caption") or meta.get("title") or meta.get("filename") or meta.get("name") or "").strip()
    if kind == "location" and "latitude" in meta and "longitude" in meta:
        extra = f"{meta['latitude']},{meta['longitude']} {extra}".strip()
    if public_url and attachment_id is not None:
        link = f"{public_url.rstrip('/')}/console/media/{attachment_id}"
        return f"{label} {link}" + (f" {extra}" if extra else "")
    return f"{label} {extra}".rstrip() if extra else f"{label} (open the console to view)"


def relay_text(prefix: str, text: str, attachment_lines: Sequence[str] = ()) -> str:
    """Join a prefix, the message text and attachment lines into one relayed text."""
    body = "\n".join(part for part in (text.strip(), *attachment_lines) if part)
    return f"{prefix} {body}" if body else prefix
