"""A customer's own conversation, as a channel shows it back to them (``ChannelContext.history``).

Why a relay question and not a store one: which messages a customer may see
is a rule of the relay, not of a table. They see what they wrote and what
was sent to them on the same channel, in the conversation that is open (or,
once it closed, the latest one), and never internal notes, relayed copies for
agents, nor anything delivered elsewhere (a ``/secure`` text goes by mail).
The store's repositories do the reading and decryption.
"""

from __future__ import annotations

from typing import Literal, cast

from bridge.channel import HistoryEntry
from bridge.store import Conversation, Message, Tx

#: The directions a customer sees; ``note`` (internal) never.
VISIBLE = ("in", "out", "system")
#: Messages read per page while skipping what the customer does not see.
_PAGE = 100


def customer_history(tx: Tx, channel: str, address: str, limit: int) -> list[HistoryEntry]:
    """The newest ``limit`` visible messages of the conversation of ``address`` on ``channel``, oldest first.

    ``address`` is in the channel's canonical form. Damaged records are left
    out (the store logs them) rather than shown or raised.
    """
    if limit <= 0:
        return []
    identity = tx.contacts.find_identity(channel, address)
    if identity is None:
        return []
    conv = tx.conversations.open_for_identity(identity.id) or _latest(tx, identity.contact_id, identity.id)
    if conv is None:
        return []
    entries: list[HistoryEntry] = []
    before: int | None = None
    while len(entries) < limit:
        page = tx.messages.recent(conv.id, _PAGE, before_id=before, strict=False)
        if not page:
            break
        entries[:0] = [_entry(m) for m in page if _visible(m, channel)]
        before = page[0].id
    return entries[-limit:]


def _latest(tx: Tx, contact_id: int, identity_id: int) -> Conversation | None:
    """The identity's most recent conversation (closed ones included), or None."""
    mine = [c for c in tx.conversations.of_contact(contact_id) if c.identity_id == identity_id]
    return mine[-1] if mine else None


def _visible(message: Message, channel: str) -> bool:
    return (
        message.direction in VISIBLE
        and message.channel == channel
        and message.text is not None
        and not message.unreadable
    )


def _entry(message: Message) -> HistoryEntry:
    direction = cast(Literal["in", "out", "system"], message.direction)
    return HistoryEntry(id=message.id, direction=direction, text=message.text or "", created_at=message.created_at)
