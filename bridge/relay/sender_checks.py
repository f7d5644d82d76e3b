"""Who may act: proof of an agent's authorship, marks on unproven customer mail, notes kept in.

Why a module of its own: on a channel whose sender is only a claim (an
email From), knowing the agent's address must not be enough to answer
customers, transfer conversations or fail logins in their name. A message
acts for an agent only when the channel vouches for its sender
(``InboundMessage.authenticated``, or a platform that signs what it hands
over: ``Channel.senders_vouched``) or when it carries a reply token the
bridge issued to that very agent. Anything else changes nothing: it is
logged without content, counted, audited, and the real agent is told.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

from bridge.models import InboundMessage
from bridge.relay import reply_tokens
from bridge.relay.reply_tokens import TokenClaim
from bridge.relay.routing import UNVERIFIED_SENDER, notify_agent
from bridge.store import Agent, Conversation, Tx

if TYPE_CHECKING:
    from bridge.relay.context import RelayContext

__all__ = ["Admission", "TokenClaim", "admit_agent", "customer_meta", "keeps_notes_in", "quotes_a_note", "token_of"]

log = logging.getLogger(__name__)

#: Told to an agent (at most once an hour) when a message claiming their address was refused.
IMPERSONATION_REFUSED = (
    "A message in your name arrived by {channel} without proof that it came from you, and was refused: "
    "nothing was changed. If you sent it, send it again as a reply to a message from the bridge."
)
#: Told to an agent whose reply carries the text of an internal note.
NOTE_QUOTED = (
    "Your reply to #{conversation} was not sent: it contains the text of an internal note "
    "(perhaps quoted below your answer). Send your answer again without it."
)
#: The audit action of a refused message (also what limits the notices to one an hour).
REFUSED_ACTION = "inbound.refused"
NOTICE_EVERY = 3600.0
#: Notes shorter than this (letters and digits, words joined by one space) are not looked for in replies.
NOTE_MIN_CHARS = 12


@dataclass(frozen=True, slots=True)
class Admission:
    """An agent's message that may act: ``token`` is their own verified reply token, if it carried one."""

    token: TokenClaim | None


def admit_agent(tx: Tx, rctx: RelayContext, agent: Agent, message: InboundMessage) -> Admission | None:
    """Whether ``message`` may act for ``agent``; None when it was refused (and that was handled).

    Call it before anything else records the message: a forgery must not use
    up the real message's id, nor count against the agent's login attempts.
    """
    token = token_of(tx, message, agent_id=agent.id)
    if token is None and not _vouched(rctx, message):
        _refuse(tx, rctx, agent, message)
        return None
    return Admission(token)


def customer_meta(tx: Tx, message: InboundMessage, contact_id: int) -> dict[str, str]:
    """The meta to store with a customer's message: marked when its sender failed the channel's check.

    A reply on a token issued to this very contact is not marked: only the
    recipient of our mail could have sent it there.
    """
    meta = dict(message.meta)
    if message.authenticated is False and token_of(tx, message, contact_id=contact_id) is None:
        meta[UNVERIFIED_SENDER] = "1"  # agents see a warning on it (routing.relay_to_agent)
    return meta


def token_of(
    tx: Tx, message: InboundMessage, *, agent_id: int | None = None, contact_id: int | None = None
) -> TokenClaim | None:
    """The message's reply token (``meta["reply_token"]``) if it verifies and was issued to this sender.

    Any other token (forged, truncated, another conversation's, another
    person's) counts as none: the message is as if sent to the bare address.
    """
    claim = reply_tokens.verify(tx, message.meta.get("reply_token"))
    if claim is None:
        return None
    if agent_id is not None and claim.is_agent(agent_id):
        return claim
    if contact_id is not None and claim.is_contact(contact_id):
        return claim
    return None


def keeps_notes_in(tx: Tx, rctx: RelayContext, agent: Agent, conv: Conversation, text: str) -> bool:
    """False (and the agent told) when ``text`` carries an internal note's text: it must not be sent."""
    if not quotes_a_note(tx, conv, text):
        return True
    log.warning("conversation %d: an agent's reply carrying an internal note's text was not sent", conv.id)
    notify_agent(tx, rctx, agent, NOTE_QUOTED.format(conversation=conv.id), conversation_id=conv.id)
    return False


def quotes_a_note(tx: Tx, conv: Conversation, text: str) -> bool:
    """Whether ``text`` carries the text of one of the conversation's notes (``/note``, transfer notes).

    Compared on words only (case, punctuation, line breaks and ``>`` quote
    marks ignored), so a note quoted back by a mail client is still found.
    """
    body = f" {_words(text)} "
    notes = [m.text for m in tx.messages.of_conversation(conv.id, strict=False) if m.direction == "note" and m.text]
    notes += tx.events.notes(conv.id, conv.contact_id)
    for note in notes:
        words = _words(note)
        if len(words) >= NOTE_MIN_CHARS and f" {words} " in body:
            return True
    return False


def _words(text: str) -> str:
    return " ".join(re.findall(r"\w+", text.casefold()))


def _vouched(rctx: RelayContext, message: InboundMessage) -> bool:
    """Whether the sender is proven: the channel's verdict, else whether its platform vouches."""
    if message.authenticated is not None:
        return message.authenticated
    return rctx.senders_vouched(message.channel)


def _refuse(tx: Tx, rctx: RelayContext, agent: Agent, message: InboundMessage) -> None:
    """Change nothing; log (no content), count, audit, and tell the agent at most once an hour."""
    channel = message.channel
    log.warning(
        "%s: refused a message claiming to be from agent %s: not authenticated and not on a reply token issued"
        " to them; nothing was changed", channel, agent.name,
    )  # fmt: skip
    observer = rctx.observer
    tx.after_commit(lambda: observer.inbound_refused(channel, "unauthenticated"))
    subject = f"agent:{agent.id}"  # the subject of the agent's logins; this action never counts towards lock-out
    told = tx.audit.recent_actions(subject, (REFUSED_ACTION,), tx.now() - NOTICE_EVERY, 1)
    tx.audit.append("system", REFUSED_ACTION, subject, {"channel": channel, "reason": "unauthenticated"})
    if not told:
        notify_agent(tx, rctx, agent, IMPERSONATION_REFUSED.format(channel=rctx.label(channel)))
