"""``/secure TEXT``: deliver a text to the customer by email, never through a chat platform (DESIGN §7, §11).

With a verified address (or a customer who wrote by email, or a website-chat
customer who gave one) the text is mailed at once and the customer is told
in chat where it went (``j***@example.com``). Without one the bridge runs a
round-trip in the customer's chat: it asks for an address, the customer
answers with the bare address, the bridge mails a 6-digit code (never the
text), the customer types the code back, the address is stored as verified
(encrypted, blind-indexed) and only then is the text mailed.

A conversation holds one pending request at a time. Its text waits sealed
under the customer's key (``tx.secure``) and is erased once it is handed to
the outbox, when the request expires or is cancelled, or when the
conversation closes; the outbox copy of a mail carrying a text or a code is
overwritten once it has been delivered (``sweep``). Wrong codes are limited
(``MAX_ATTEMPTS``), so are codes per request (``MAX_CODES``); a code is valid
for ``CODE_TTL`` seconds, a request waits ``REQUEST_TTL`` for an address.

Nothing here logs, audits or echoes the text, the code or the address: the
agent and the customer see the masked address only.

The console API calls :func:`start_secure` and :func:`cancel_secure`; ingest
calls :func:`customer_answer` for each customer message and :func:`sweep`
after each batch (the periodic checks call it too).
"""

from __future__ import annotations

import logging
import re
import secrets
from typing import TYPE_CHECKING

from bridge.errors import IntegrityError
from bridge.relay import reads
from bridge.relay.commands import CommandContext, CommandRefused, actor, own_conversation
from bridge.relay.format import format_prefix
from bridge.relay.routing import notify_agent, send_to_customer
from bridge.relay.sensitive import SECURE_ANSWER
from bridge.store import Agent, Conversation, Identity, KeyOwner, Tx
from bridge.store.repos.secure import CODE, SecureRequest

if TYPE_CHECKING:
    from bridge.relay.context import RelayContext

log = logging.getLogger(__name__)

#: How long a request waits for the customer's address (seconds).
REQUEST_TTL = 3600.0
#: How long a mailed code stays valid (seconds).
CODE_TTL = 600.0
#: Wrong codes before the request is cancelled.
MAX_ATTEMPTS = 5
#: Codes mailed per request (each new address the customer gives mails one).
MAX_CODES = 3
EMAIL = "email"
AUDIT_ACTION = "conversation.secure"

USAGE = "Send /secure followed by the text to mail to the customer of your current conversation (or /secure #ID TEXT)."
NO_EMAIL = "/secure needs the email channel, which is not enabled on this bridge: nothing was sent."
PENDING = (
    "{label} already has a /secure waiting for the customer's email address or code. "
    "Wait for it, or send /secure cancel first."
)
NOTHING_PENDING = "{label} has no /secure waiting."

_ADDRESS = re.compile(r"^<?([^\s@<>()\[\],;:\"]+@[^\s@<>()\[\],;:\"]+\.[^\s@<>()\[\],;:\"]+?)>?[.!]?$")
_CODE = re.compile(r"^(\d{3})[ -]?(\d{3})$")
_TARGET = re.compile(r"^#(\d{1,18})(?:\s+|$)")


class SecureRefused(CommandRefused):
    """``/secure`` cannot start; the message is the answer for the agent (it never repeats the text).

    :param code: ``empty``, ``email_disabled``, ``closed``, ``no_customer``,
        ``pending`` or ``nothing_pending``, for the console API's error code.
    """

    def __init__(self, message: str, code: str) -> None:
        super().__init__(message)
        self.code = code


def mask_email(address: str) -> str:
    """``j***@example.com``: enough for the customer to recognise their address, little for anyone else."""
    local, _, domain = address.rpartition("@")
    return f"{local[:1]}***@{domain}"


def _label(tx: Tx, rctx: RelayContext, conv: Conversation) -> str:
    return format_prefix(conv.id, reads.contact_name(tx, conv.contact_id), rctx.label(conv.channel))


def known_address(tx: Tx, conv: Conversation) -> str | None:
    """The address a text can go to without a round-trip, or None.

    A verified address of the contact; else the address an email customer
    wrote from; else the address a website-chat customer gave (DESIGN §12).
    """
    contact = tx.contacts.get(conv.contact_id)
    if contact is not None and contact.email and contact.email_verified:
        return contact.email
    identity = _identity(tx, conv)
    if identity is not None and identity.channel == EMAIL:
        return identity.address
    if identity is not None and identity.channel == "webchat" and contact is not None and contact.email:
        return contact.email
    return None


# --- the agent's side ---------------------------------------------------------


def start_secure(tx: Tx, rctx: RelayContext, conversation: Conversation, agent: Agent, text: str) -> str:
    """Mail ``text`` to the conversation's customer, or start the address round-trip; return the agent's answer.

    The caller has checked that ``agent`` may act on ``conversation``.

    :raises SecureRefused: no text, no email channel, a closed conversation,
        no customer, or a request already pending.
    """
    text = text.strip()
    if not text:
        raise SecureRefused(USAGE, "empty")
    if not rctx.channel_enabled(EMAIL):
        raise SecureRefused(NO_EMAIL, "email_disabled")
    conv = tx.conversations.get(conversation.id)
    if conv is None or conv.status == "closed":
        raise SecureRefused(f"Conversation #{conversation.id} is closed: nothing was sent.", "closed")
    if conv.identity_id is None:
        raise SecureRefused(f"Conversation #{conv.id} has no customer to send to.", "no_customer")
    label = _label(tx, rctx, conv)
    pending = tx.secure.get(conv.id)
    if pending is not None and pending.expires_at <= rctx.now():
        _cancel(tx, rctx, conv, pending, "it expired")
        pending = None
    if pending is not None:
        raise SecureRefused(PENDING.format(label=label), "pending")
    address = known_address(tx, conv)
    if address is not None:
        _mail_text(tx, rctx, conv, agent.id, address, text)
        tx.audit.append(actor(agent), AUDIT_ACTION, f"conversation:{conv.id}", {"outcome": "mailed"})
        told = "" if _mailed_in_thread(tx, conv, address) else " The customer was told in chat."
        return f"{label} Your text was mailed to {mask_email(address)}.{told}"
    tx.secure.create(conv.id, conv.contact_id, agent.id, text, expires_at=rctx.now() + REQUEST_TTL)
    send_to_customer(tx, rctx, conv.id, rctx.templates.render("secure_ask_email", conv.language), kind="system")
    tx.audit.append(actor(agent), AUDIT_ACTION, f"conversation:{conv.id}", {"outcome": "address_asked"})
    minutes = int(REQUEST_TTL // 60)
    return (
        f"{label} The customer has no verified email address: they are asked for one in chat and then for a code"
        f" mailed to it. Your text is mailed once they confirm; the request expires in {minutes} minutes."
    )


def cancel_secure(tx: Tx, rctx: RelayContext, conversation: Conversation, agent: Agent) -> str:
    """Cancel the conversation's pending request (its text is erased); return the agent's answer.

    :raises SecureRefused: nothing is pending.
    """
    label = _label(tx, rctx, conversation)
    pending = tx.secure.get(conversation.id)
    if pending is None:
        raise SecureRefused(NOTHING_PENDING.format(label=label), "nothing_pending")
    tx.secure.delete(pending)
    tx.audit.append(actor(agent), AUDIT_ACTION, f"conversation:{conversation.id}", {"outcome": "cancelled"})
    return f"{label} The /secure request was cancelled and its text erased."


def cmd_secure(ctx: CommandContext, args: str) -> str | None:
    """``/secure [#ID] TEXT`` (or ``/secure [#ID] cancel``) for the agent's (current) conversation.

    Only ``#ID`` names a conversation: a text that starts with digits (a code,
    an account number) is never taken for one, and no answer repeats the text.
    """
    target = _TARGET.match(args.strip())
    conversation_id = int(target.group(1)) if target else None
    text = args.strip()[target.end() :] if target else args
    conv = own_conversation(ctx, conversation_id)
    if text.strip().lower() == "cancel":
        return cancel_secure(ctx.tx, ctx.rctx, conv, ctx.agent)
    return start_secure(ctx.tx, ctx.rctx, conv, ctx.agent, text)


# --- the customer's side --------------------------------------------------------


def customer_answer(tx: Tx, rctx: RelayContext, conv: Conversation, message_id: int, text: str) -> bool:
    """Take a customer's message as their answer to a pending request; return True when it was one.

    A bare email address mails a code to it; six digits are checked as that
    code. An answer is stored like every message but never relayed (status
    ``secure``); anything else is an ordinary message.
    """
    request = tx.secure.get(conv.id)
    if request is None:
        return False
    answer = text.strip()
    address = _bare_address(rctx, answer)
    code = _CODE.match(answer)
    is_answer = address is not None or (code is not None and request.state == CODE)
    if request.expires_at <= rctx.now():
        _cancel(tx, rctx, conv, request, _expiry_reason(request), tell=is_answer)
    elif address is not None:
        if request.state == CODE and request.codes_sent >= MAX_CODES:
            _cancel(tx, rctx, conv, request, f"the customer gave more than {MAX_CODES} addresses", tell=True)
        else:
            _send_code(tx, rctx, conv, request, address)
    elif code is not None and request.state == CODE:
        _check_code(tx, rctx, conv, request, code.group(1) + code.group(2))
    if is_answer:
        tx.messages.set_inbound_status(message_id, SECURE_ANSWER)
    return is_answer


def _bare_address(rctx: RelayContext, text: str) -> str | None:
    match = _ADDRESS.match(text)
    if match is None:
        return None
    try:
        return rctx.addresses.normalize(EMAIL, match.group(1))
    except ValueError:
        return None


def _send_code(tx: Tx, rctx: RelayContext, conv: Conversation, request: SecureRequest, address: str) -> None:
    code = f"{secrets.randbelow(1_000_000):06d}"
    tx.secure.ask_code(request, address, code, expires_at=rctx.now() + CODE_TTL)
    body = rctx.templates.render("secure_code_mail", conv.language, code=code, minutes=int(CODE_TTL // 60))
    subject = rctx.templates.render("secure_code_subject", conv.language)
    _enqueue_mail(tx, rctx, conv, address, body, {"subject": subject})
    masked = mask_email(address)
    send_to_customer(
        tx, rctx, conv.id, rctx.templates.render("secure_code_sent", conv.language, email=masked), kind="system"
    )
    _tell_agent(tx, rctx, conv, request, f"the customer gave {masked}; a code was mailed there for them to type back.")


def _check_code(tx: Tx, rctx: RelayContext, conv: Conversation, request: SecureRequest, code: str) -> None:
    if tx.secure.code_matches(request, code):
        _deliver(tx, rctx, conv, request)
        return
    attempts = tx.secure.count_wrong_code(request)
    if attempts >= MAX_ATTEMPTS:
        _cancel(tx, rctx, conv, request, f"{MAX_ATTEMPTS} wrong codes", tell=True)
        return
    notice = rctx.templates.render("secure_code_wrong", conv.language, count=MAX_ATTEMPTS - attempts)
    send_to_customer(tx, rctx, conv.id, notice, kind="system")


def _deliver(tx: Tx, rctx: RelayContext, conv: Conversation, request: SecureRequest) -> None:
    """The code matched: keep the address as verified, mail the text, erase the request.

    A request whose sealed text or address fails its integrity check is
    erased and the agent asked to send it again (the log names the cell).
    """
    try:
        address = tx.secure.address(request)
        text = tx.secure.secret(request)
    except IntegrityError as err:
        log.error("conversation %d: a pending /secure is unreadable and was dropped: %s", conv.id, err)
        _cancel(tx, rctx, conv, request, "it could not be read back from the store (integrity check)", tell=True)
        return
    if address is None:  # a code is only ever mailed to an address the request records
        raise ValueError(f"secure request {request.id} has a code but no address")
    tx.contacts.set_email(conv.contact_id, address, verified=True)
    tx.secure.delete(request)
    _mail_text(tx, rctx, conv, request.agent_id, address, text)
    _tell_agent(tx, rctx, conv, request, f"the customer confirmed {mask_email(address)}; your text was mailed there.")


def _identity(tx: Tx, conv: Conversation) -> Identity | None:
    return tx.contacts.get_identity(conv.identity_id) if conv.identity_id is not None else None


def _mailed_in_thread(tx: Tx, conv: Conversation, address: str) -> bool:
    """Whether a mail to ``address`` reaches the customer where they write to us (an email customer's own address)."""
    identity = _identity(tx, conv)
    return identity is not None and identity.channel == EMAIL and identity.address == address


def _mail_text(tx: Tx, rctx: RelayContext, conv: Conversation, agent_id: int | None, address: str, text: str) -> None:
    """Mail the text and tell the customer where it went (in the transcript too).

    An email customer's mail joins their thread and the transcript records a
    line (their mailbox already shows the mail); a chat customer is told in chat.
    """
    body = rctx.templates.render("secure_mail", conv.language, conversation=conv.id, text=text)
    masked = mask_email(address)
    if _mailed_in_thread(tx, conv, address):
        meta = {k: str(v) for k, v in reads.last_inbound_meta(tx, conv.id).items() if isinstance(v, (str, int))}
        _enqueue_mail(tx, rctx, conv, address, body, meta or {"subject": _subject(rctx, conv)})
        record = f"[/secure: mailed to {masked}]"
        tx.messages.insert(conv.id, direction="system", channel=EMAIL, text=record, agent_id=agent_id, status="stored")
        return
    _enqueue_mail(tx, rctx, conv, address, body, {"subject": _subject(rctx, conv)})
    notice = rctx.templates.render("secure_mailed", conv.language, email=masked)
    send_to_customer(tx, rctx, conv.id, notice, agent_id=agent_id, kind="system")


def _subject(rctx: RelayContext, conv: Conversation) -> str:
    return rctx.templates.render("secure_mail_subject", conv.language)


def _enqueue_mail(
    tx: Tx, rctx: RelayContext, conv: Conversation, address: str, body: str, meta: dict[str, str]
) -> None:
    """One mail to the customer, sealed under their key; its body is erased once it is delivered."""
    outbox_id = tx.outbox.enqueue(
        channel=EMAIL,
        recipient=address,
        recipient_kind="contact",
        recipient_id=conv.contact_id,
        text=body,
        key_owner=KeyOwner.contact(conv.contact_id),
        conversation_id=conv.id,
        meta=meta,
    )
    tx.secure.track_mail(outbox_id)
    rctx.wake()


# --- endings ----------------------------------------------------------------------


def _tell_agent(tx: Tx, rctx: RelayContext, conv: Conversation, request: SecureRequest, text: str) -> None:
    """Tell the conversation's agent (else whoever asked) how their request went."""
    agent_id = conv.agent_id if conv.agent_id is not None else request.agent_id
    agent = tx.agents.get(agent_id) if agent_id is not None else None
    if agent is not None:
        notify_agent(tx, rctx, agent, f"{_label(tx, rctx, conv)} /secure: {text}", conversation_id=conv.id)


def _cancel(
    tx: Tx, rctx: RelayContext, conv: Conversation, request: SecureRequest, reason: str, *, tell: bool = False
) -> None:
    """Erase a request that cannot complete; tell the agent why and, with ``tell``, the customer."""
    tx.secure.delete(request)
    if tell and conv.status != "closed" and _window_open(tx, rctx, conv):
        send_to_customer(tx, rctx, conv.id, rctx.templates.render("secure_cancelled", conv.language), kind="system")
    _tell_agent(tx, rctx, conv, request, f"your text was not mailed: {reason}. It was erased; send /secure again.")


def _expiry_reason(request: SecureRequest) -> str:
    return "the code expired" if request.state == CODE else "the customer gave no email address in time"


def _window_open(tx: Tx, rctx: RelayContext, conv: Conversation) -> bool:
    """Whether free text reaches the customer now (a notice must not cost a re-engagement template)."""
    window = rctx.channel_window(conv.channel)
    if window is None:
        return True
    last = tx.contacts.last_inbound_at(conv.contact_id, conv.channel)
    return last is not None and rctx.now() - last < window


def sweep(tx: Tx, rctx: RelayContext) -> None:
    """Erase expired requests and those of closed conversations; erase delivered mails' texts.

    Runs after every ingested batch and with the periodic checks, so a text
    does not outlive its request or its delivery for long.
    """
    for request in tx.secure.expired(rctx.now()):
        conv = tx.conversations.get(request.conversation_id)
        if conv is None:
            tx.secure.delete(request)
            continue
        _cancel(tx, rctx, conv, request, _expiry_reason(request), tell=request.state == CODE)
    for request in tx.secure.of_closed_conversations():
        conv = tx.conversations.get(request.conversation_id)
        if conv is not None:
            _cancel(tx, rctx, conv, request, "the conversation was closed")
        else:
            tx.secure.delete(request)
    tx.secure.erase_finished_mails()
