"""Inbound messages of one webhook POST, stored and routed in ONE write.

``ingest_batch`` runs inside ``store.write`` (group-committed), so a webhook
is acknowledged only once everything it carried is committed: the customer
message, its contact and conversation, and the outbox rows that relay it.
Traffic from a registered agent identity is never a customer conversation:
it is a command or a reply (see RELAY-SHARED).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from functools import partial
from typing import TYPE_CHECKING, Any

from bridge import agents as agents_repo
from bridge.channel import CONTACT_EMAIL
from bridge.errors import IntegrityError
from bridge.models import InboundMessage
from bridge.relay import fallbacks, reads, secure, sender_checks, sensitive
from bridge.relay.builtin_commands import LOGIN_INVALID
from bridge.relay.commands import ESCAPE, NOT_LOGGED_IN, handle_agent_command
from bridge.relay.format import display_name
from bridge.relay.routing import (
    QUEUED_NOTICE,
    notify_agent,
    relay_to_agent,
    requeue,
    route,
    send_to_customer,
    was_assigned_before,
)
from bridge.store import Agent, Conversation, KeyOwner, Tx

if TYPE_CHECKING:
    from bridge.relay.context import RelayContext

log = logging.getLogger(__name__)

#: Once per conversation: the customer was asked to send sensitive data by email.
SENSITIVE_NOTICE = "sensitive_notice"
#: Told to an agent whose message could not be handled because a record it needed is damaged.
DAMAGED = (
    "Your message could not be handled: a stored record it needed failed its integrity check. "
    "Nothing was sent; the operator's log names the record."
)


@dataclass
class IngestResult:
    """What the caller does after the commit: hooks and metrics."""

    customer: list[tuple[InboundMessage, int]] = field(default_factory=list)
    stored: list[tuple[str, str]] = field(default_factory=list)  # (channel, direction) per stored message
    duplicates: int = 0


def _isolated(tx: Tx, what: str, step: Callable[[], None]) -> bool:
    """Run ``step`` in its own savepoint; return False when a damaged record stopped it.

    A record failing its integrity check undoes just that step (rows, new
    data keys, files: ``Tx.savepoint``) and is logged, naming the cell; the
    webhook is still acknowledged, so one damaged row cannot make a platform
    retry a whole batch forever.
    """
    try:
        with tx.savepoint():
            step()
    except IntegrityError as err:
        log.error("%s stopped by a damaged record: %s", what, err)
        return False
    return True


def ingest_batch(tx: Tx, rctx: RelayContext, channel: str, messages: list[InboundMessage]) -> IngestResult:
    """Store and route every message of one POST, in order."""
    result = IngestResult()
    for message in messages:
        if message.channel != channel:
            raise ValueError(f"channel {channel!r} delivered a message marked {message.channel!r}")
        message = _normalized(rctx, message)
        if message.echo:
            _ingest_echo(tx, rctx, message, result)
            continue
        try:
            agent = agents_repo.find_agent_by_identity(tx, channel, message.sender)
        except IntegrityError as err:  # a registered agent whose record is damaged: never a customer
            log.error("%s: a message from an agent whose record is unreadable was dropped: %s", channel, err)
            continue
        if agent is not None:
            step = partial(_ingest_agent, tx, rctx, agent, message, result)
            if not _isolated(tx, f"{channel}: agent {agent.name}'s message", step):
                notify_agent(tx, rctx, agent, DAMAGED)
        else:
            _ingest_customer(tx, rctx, message, result)
    # Expired /secure requests and delivered /secure mails are erased on every touch.
    _isolated(tx, "the /secure clean-up", partial(secure.sweep, tx, rctx))
    return result


def _normalized(rctx: RelayContext, message: InboundMessage) -> InboundMessage:
    """The message with its sender in the channel's canonical form (what identities are indexed by).

    A sender its own channel refuses is a channel bug: the message is kept as
    given (an acknowledged message is never dropped) and the bug logged.
    """
    try:
        sender = rctx.addresses.normalize(message.channel, message.sender)
    except ValueError:
        log.warning("%s: a message's sender does not pass the channel's own address rule", message.channel)
        return message
    return message if sender == message.sender else replace(message, sender=sender)


# --- customers ------------------------------------------------------------------


def _attachment_meta(message: InboundMessage, index: int) -> dict[str, Any]:
    att = message.attachments[index]
    meta: dict[str, Any] = {k: v for k, v in att.meta.items() if isinstance(v, (str, int, float, bool))}
    for key in ("url", "media_id", "filename"):
        value = getattr(att, key)
        if value:
            meta[key] = value
    return meta


def _is_login_attempt(text: str) -> bool:
    """Whether ``text`` is a ``/login`` command (it may carry a TOTP code: never relay it)."""
    head = text.lstrip()[:7].lower()
    return head == "/login" or (head.startswith("/login") and not head[6].isalnum())


def _unknown_login(tx: Tx, message: InboundMessage, result: IngestResult) -> None:
    """A ``/login`` from an address that is no agent's: answered like a wrong code, stored and relayed nowhere.

    Someone who thinks they are an agent (a typo in their enrolment, an old
    number) must not have their one-time code relayed to an agent as a
    customer's message, and a prober learns nothing the wrong-code answer would
    not tell. Only the answer is kept (sealed under the sender's contact key).
    """
    if not tx.relay.first_agent_message(message.channel, message.external_id):
        result.duplicates += 1  # the platform's re-delivery: answered already
        return
    log.warning("%s: a /login from an address that is no agent's was refused (not stored)", message.channel)
    identity, _created = tx.contacts.get_or_create_identity(message.channel, message.sender)
    tx.outbox.enqueue(
        channel=message.channel, recipient=message.sender, recipient_kind="contact", recipient_id=identity.contact_id,
        text=LOGIN_INVALID, key_owner=KeyOwner.contact(identity.contact_id),
    )  # fmt: skip


def _ingest_customer(tx: Tx, rctx: RelayContext, message: InboundMessage, result: IngestResult) -> None:
    channel = message.channel
    if tx.messages.id_by_external(channel, message.external_id) is not None:
        result.duplicates += 1
        return
    if _is_login_attempt(message.text):
        _unknown_login(tx, message, result)
        rctx.wake()
        return
    try:
        identity, _created = tx.contacts.get_or_create_identity(
            channel, message.sender, name=message.sender_name, inbound_at=message.timestamp
        )
    except IntegrityError as err:
        # Raised while reading their identity, before anything was written. Failing the
        # webhook would make the platform retry (and drop) every message batched with it.
        log.error("%s: a message from a customer whose record is unreadable was not stored: %s", channel, err)
        return
    given_email = message.meta.get(CONTACT_EMAIL, "")
    if given_email:
        _take_contact_email(tx, channel, identity.contact_id, given_email)
    fallbacks.person_wrote(tx, rctx, "contact", identity.contact_id, channel)
    meta = sender_checks.customer_meta(tx, message, identity.contact_id)
    meta.pop(CONTACT_EMAIL, None)  # kept as the contact's email, not in every message
    conv = tx.conversations.open_for_identity(identity.id)
    if conv is None:
        language = rctx.rules.detect_language(message.text, message.meta)
        queue = rctx.rules.match(channel, message.text, language)
        # Rules match on what was detected; notices use the rules' default when nothing was.
        conv = tx.conversations.create(
            identity.contact_id, identity.id, channel, queue=queue, language=language or rctx.rules.default_language
        )
    findings = rctx.hooks.detect_sensitive(message.text) if message.text else []
    message_id = tx.messages.insert(
        conv.id,
        direction="in",
        channel=channel,
        text=message.text,
        external_id=message.external_id,
        reply_to=message.reply_to,
        status=reads.WAITING,
        sensitive=bool(findings),
        meta=meta or None,
    )
    if message_id is None:  # a duplicate inside the same POST
        result.duplicates += 1
        return
    for index, att in enumerate(message.attachments):
        tx.attachments.add(message_id, index, att.kind, mime=att.mime, meta=_attachment_meta(message, index))
    tx.conversations.update(conv.id)  # updated_at: the conversation is active
    result.customer.append((message, conv.id))
    result.stored.append((channel, "in"))
    if _answers_secure(tx, rctx, conv, message_id, message.text):
        return
    # The message is stored whatever happens next; if routing meets a damaged record
    # it waits (status "waiting") and is relayed when an agent takes the conversation.
    _isolated(tx, f"routing of message {message_id}", partial(_route_message, tx, rctx, conv.id, message_id))
    if sensitive.customer_should_be_told(rctx, channel, findings):
        _isolated(tx, f"the sensitive-data notice of #{conv.id}", partial(_sensitive_notice, tx, rctx, conv))


def _answers_secure(tx: Tx, rctx: RelayContext, conv: Conversation, message_id: int, text: str) -> bool:
    """Whether the message answered a pending ``/secure`` (an address or a code): then it is not relayed."""
    if tx.secure.get(conv.id) is None:  # the common case, without a savepoint
        return False
    answered: list[bool] = []

    def step() -> None:
        answered.append(secure.customer_answer(tx, rctx, conv, message_id, text))

    return _isolated(tx, f"the /secure answer in message {message_id}", step) and answered == [True]


def _sensitive_notice(tx: Tx, rctx: RelayContext, conv: Conversation) -> None:
    """Ask the customer, once per conversation, to send such data by email rather than by chat."""
    if tx.relay.flag(SENSITIVE_NOTICE, str(conv.id)):
        notice = rctx.templates.render("sensitive_notice", conv.language)
        send_to_customer(tx, rctx, conv.id, notice, kind="system")


def _take_contact_email(tx: Tx, channel: str, contact_id: int, email: str) -> None:
    """Keep the address a customer gave their channel (``CONTACT_EMAIL``) as their contact's email.

    It is stored as given, not verified (no code confirmed it); ``/secure``
    treats the address a website-chat customer gave as known (DESIGN §12,
    ``bridge.relay.secure.known_address``). Something that is no address is
    ignored (logged without the value); the address already stored is not
    written again (a verified one stays verified).
    """
    email = email.strip().lower()
    local, at, domain = email.rpartition("@")
    if not (at and local and "." in domain and len(email) <= 254 and not any(c.isspace() for c in email)):
        log.warning("%s: a message carried a contact email that is no address; ignored", channel)
        return
    if reads.contact_email(tx, contact_id)[0] != email:
        tx.contacts.set_email(contact_id, email, verified=False)


def _route_message(tx: Tx, rctx: RelayContext, conversation_id: int, message_id: int) -> None:
    """Relay to the assigned online agent, else find one, else queue with a notice (once)."""
    conv = tx.conversations.get(conversation_id)
    if conv is None:
        return
    now = rctx.now()
    if conv.status == "assigned" and conv.agent_id is not None:
        try:
            agent = tx.agents.get(conv.agent_id)
        except IntegrityError as err:  # their agent cannot be reached: treat them as gone
            log.error("conversation %d goes back to its queue, its agent is unreadable: %s", conv.id, err)
            agent = None
        if agent is not None and not agent.disabled and agents_repo.is_online(tx, agent.id, now):
            msg = tx.messages.get(message_id)
            if msg is None:  # stored in this very transaction
                return
            relay_to_agent(tx, rctx, conv, agent, msg)
            # DESIGN §7: the last relayed message sets the agent's current conversation.
            if agent.current_conversation_id != conv.id:
                tx.agents.set_current_conversation(agent.id, conv.id)
            return
        requeue(tx, rctx, conv.id)  # their agent went offline: someone else, or wait
    else:
        history = rctx.config.routing.history_messages if was_assigned_before(tx, conv.id) else 0
        route(tx, rctx, conv.id, history=history)
    conv = tx.conversations.get(conversation_id)
    if conv is not None and conv.status == "queued" and tx.relay.flag(QUEUED_NOTICE, str(conv.id)):
        send_to_customer(tx, rctx, conv.id, rctx.templates.render("queued", conv.language), kind="system")


def _ingest_echo(tx: Tx, rctx: RelayContext, message: InboundMessage, result: IngestResult) -> None:
    """A message the business sent outside Carebridge: keep the transcript whole, relay nothing."""
    channel = message.channel
    if tx.outbox.find_by_external_id(channel, message.external_id) is not None:
        return  # the platform's echo of our own send
    if agents_repo.find_agent_by_identity(tx, channel, message.sender) is not None:
        return  # a page-inbox message to an agent is not customer data
    if tx.messages.id_by_external(channel, message.external_id) is not None:
        result.duplicates += 1
        return
    identity, _created = tx.contacts.get_or_create_identity(channel, message.sender)
    conv = tx.conversations.open_for_identity(identity.id)
    if conv is None:
        conv = tx.conversations.create(
            identity.contact_id, identity.id, channel, queue=rctx.rules.default_queue, status="closed"
        )
    tx.messages.insert(
        conv.id, direction="out", channel=channel, text=message.text, external_id=message.external_id, status="sent"
    )
    result.stored.append((channel, "out"))


# --- agents -----------------------------------------------------------------------


def _ingest_agent(tx: Tx, rctx: RelayContext, agent: Agent, message: InboundMessage, result: IngestResult) -> None:
    channel = message.channel
    admission = sender_checks.admit_agent(tx, rctx, agent, message)
    if admission is None:
        return
    if not tx.relay.first_agent_message(channel, message.external_id):
        result.duplicates += 1
        return
    agents_repo.touch_identity(tx, agent.id, channel, message.sender, message.timestamp)
    fallbacks.person_wrote(tx, rctx, "agent", agent.id, channel)
    text = message.text.strip()
    if text.startswith(ESCAPE):
        # "//text" is a reply that starts with "/": send "/text" (see /help).
        message = replace(message, text=message.text.lstrip()[1:])
    elif text.startswith("/"):
        answer = handle_agent_command(tx, rctx, rctx.commands, agent, message)
        if answer:
            notify_agent(tx, rctx, tx.agents.get(agent.id) or agent, answer)
        return
    if agent.disabled or not agents_repo.is_online(tx, agent.id, rctx.now()):
        notify_agent(tx, rctx, agent, NOT_LOGGED_IN)
        return
    _agent_reply(tx, rctx, agent, message, admission.token)


def _agent_reply(
    tx: Tx, rctx: RelayContext, agent: Agent, message: InboundMessage, token: sender_checks.TokenClaim | None
) -> None:
    """Send an agent's plain text to the conversation it belongs to; ask when unsure.

    ``token`` is the agent's own verified reply token: a reply context like a
    quote, checked against the agent's assignment like one.
    """
    conversation_id: int | None = None
    quoted_customer: str | None = None
    if message.reply_to:
        quoted = tx.outbox.find_by_external_id(message.channel, message.reply_to)
        if quoted is not None and quoted.recipient_kind == "agent" and quoted.conversation_id is not None:
            conversation_id = quoted.conversation_id
            if quoted.message_id is not None:
                original = tx.messages.get(quoted.message_id, strict=False)
                if original is not None and original.direction == "in":
                    quoted_customer = original.external_id
    if conversation_id is None and token is not None:
        conversation_id = token.conversation_id
    if conversation_id is None:
        conversation_id = agent.current_conversation_id
    if conversation_id is None:
        notify_agent(tx, rctx, agent, _which_conversation(tx, rctx, agent))
        return
    conv = tx.conversations.get(conversation_id)
    if conv is None or conv.status == "closed":
        notify_agent(tx, rctx, agent, rctx.templates.render("conversation_closed", None, conversation=conversation_id))
        return
    if conv.agent_id != agent.id:
        notify_agent(tx, rctx, agent, _which_conversation(tx, rctx, agent))
        return
    text = message.text
    if message.attachments:
        note = ", ".join(att.kind for att in message.attachments)
        notify_agent(tx, rctx, agent, f"Attachments ({note}) are not relayed to customers; send them as text or links.")
        if not text.strip():
            return
    if not sender_checks.keeps_notes_in(tx, rctx, agent, conv, text):
        return
    # A quoted reply does not move the current conversation (set by relays and /switch).
    try:
        send_to_customer(tx, rctx, conv.id, text, agent_id=agent.id, reply_to=quoted_customer)
    except sensitive.SensitiveReplyRefused as refused:  # nothing was stored or sent; the answer names no value
        notify_agent(tx, rctx, agent, str(refused), conversation_id=conv.id)
    except IntegrityError as err:  # raised before anything was written: the customer's address is damaged
        log.error("conversation %d: an agent's reply cannot be sent: %s", conv.id, err)
        name = display_name(reads.contact_name(tx, conv.contact_id), conv.id)
        notice = rctx.templates.render(
            "delivery_failed", None, conversation=conv.id, contact=name, channel=rctx.label(conv.channel),
            error="the customer's record failed its integrity check in the store",
        )  # fmt: skip
        notify_agent(tx, rctx, agent, notice, conversation_id=conv.id)


def _which_conversation(tx: Tx, rctx: RelayContext, agent: Agent) -> str:
    ids = tx.conversations.assigned_ids(agent.id, limit=10)
    if not ids:
        return rctx.templates.render("no_conversation")
    listing = ", ".join(f"#{i}" for i in ids)
    return rctx.templates.render("which_conversation", None, list=listing)
