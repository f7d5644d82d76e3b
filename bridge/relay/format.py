"""How relayed text looks in an agent's chat: prefixes and attachment labels.

Agents may juggle several conversations in one chat app, so every relayed
customer message starts with ``[#42 Jan · WhatsApp]``: the id the agent uses
in ``/switch 42``, who wrote, and where they wrote. A very long text is cut
to a few platform messages (``cap_for_relay``) rather than fanned out into
hundreds; the whole text stays in the store, where the console shows it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from bridge.parts import split_text

#: Ends a relayed text that was cut; ``{omitted}`` is the number of characters left out.
CUT_NOTE = "\n[… {omitted} more characters: the full message is in the Carebridge console]"


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


def cap_for_relay(text: str, max_length: int | None, max_parts: int) -> str:
    """Return ``text`` cut so that the channel sends it as at most ``max_parts`` messages.

    A channel splits a long text at word boundaries into parts of
    ``max_length`` characters (``bridge.parts.split_text``); a 2 MB message
    would become hundreds of chat messages. Past the budget the text is cut
    at a word boundary and ends with ``CUT_NOTE``. Channels without a length
    limit (email, console) get the text unchanged.
    """
    if max_length is None or len(text) <= max_length:
        return text
    budget = max_length * max(1, max_parts)
    if len(text) <= budget and len(split_text(text, max_length)) <= max_parts:
        return text
    keep = budget - len(CUT_NOTE.format(omitted=len(text)))
    while keep > 0:
        head = text[:keep]
        cut = max(head.rfind(" "), head.rfind("\n"))
        head = head[:cut] if cut > keep // 2 else head
        capped = head.rstrip() + CUT_NOTE.format(omitted=len(text) - len(head))
        if len(split_text(capped, max_length)) <= max_parts:
            return capped
        keep -= max(1, max_length // 4)  # parts cut at word boundaries hold less: leave more room
    return text[:max_length]  # a limit shorter than the note itself: one bare part
