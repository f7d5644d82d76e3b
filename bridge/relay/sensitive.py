"""Sensitive data and the chat platforms: what a policy hides, how it is masked, what an agent may send.

Chat platforms (WhatsApp, Messenger, …) run on third-party servers abroad;
bank account numbers, card numbers and login codes must not travel through
them. The ``detect_sensitive`` plugins find the spans; this module applies
``[sensitive] policy`` (per kind with ``[sensitive.kinds]``) to every copy
the bridge itself puts on such a platform:

- ``redact``: the copy shows only enough to recognise the value
  (``NL91 **** **** **** 4300 [IBAN hidden]``, ``**** 1111 [card hidden]``,
  ``[code hidden]``);
- ``block``: a customer's message is not relayed at all, the agent is told
  it was withheld;
- ``allow``: the copy keeps the value.

Email and the console put nothing on a third-party chat platform: copies to
them are whole. The full text always stays in the encrypted store, flagged
``sensitive``. Overlapping findings (one span reported as both a ``code`` and
a ``password``) are merged into one masked span under the strictest policy.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from bridge.models import Finding
from bridge.relay import reads
from bridge.relay.commands import CommandRefused
from bridge.relay.format import display_name

if TYPE_CHECKING:
    from bridge.relay.context import RelayContext
    from bridge.store import Conversation, Tx

#: Channels whose copies never sit on a third-party chat platform.
PRIVATE_CHANNELS = frozenset({"email", "console"})
REDACT = "redact"
BLOCK = "block"
ALLOW = "allow"
_STRICTNESS = {ALLOW: 0, REDACT: 1, BLOCK: 2}
#: Status of a customer message that answered a ``/secure`` question (an address or a code): never relayed.
SECURE_ANSWER = "secure"

#: Built-in kinds in the order a merged span is named by; admin kinds follow, alphabetically.
_ORDER = ("iban", "card", "bsn", "password", "code")
_LABELS = {"iban": "IBAN", "card": "card", "bsn": "BSN", "code": "code", "password": "password"}
_NAMES = {"iban": "IBAN", "card": "card number", "bsn": "BSN", "code": "login code", "password": "password"}
_BLANKS = re.compile(r"\s+")
_NOT_DIGIT = re.compile(r"\D")


class SensitiveReplyRefused(CommandRefused):
    """An agent's reply holds data that must not go through the customer's chat platform.

    The message (the answer for the agent) names the kinds found, never the value.
    """

    def __init__(self, message: str, kinds: Sequence[str]) -> None:
        super().__init__(message)
        self.kinds = tuple(kinds)


@dataclass(frozen=True, slots=True)
class Span:
    """One stretch of text holding one or more overlapping findings.

    :param kinds: the kinds found there, the one that names it first.
    :param policy: the strictest policy among those kinds.
    """

    start: int
    end: int
    kinds: tuple[str, ...]
    policy: str


def third_party(channel: str) -> bool:
    """Whether a copy on ``channel`` lands on a third-party chat platform (anything but email and the console)."""
    return channel not in PRIVATE_CHANNELS


def _rank(kind: str) -> tuple[int, str]:
    return (_ORDER.index(kind), "") if kind in _ORDER else (len(_ORDER), kind)


def _strictest(policies: Sequence[str]) -> str:
    return max(policies, key=lambda p: _STRICTNESS.get(p, _STRICTNESS[REDACT]))


def merge(findings: Sequence[Finding], policy_for: Callable[[str], str]) -> list[Span]:
    """Merge overlapping findings into spans, ordered by position, each with its strictest policy."""
    groups: list[tuple[int, int, set[str]]] = []
    for finding in sorted(findings, key=lambda f: (f.start, -f.end)):
        if finding.end <= finding.start:
            continue
        if groups and finding.start < groups[-1][1]:
            start, end, kinds = groups[-1]
            groups[-1] = (start, max(end, finding.end), kinds | {finding.kind})
        else:
            groups.append((finding.start, finding.end, {finding.kind}))
    return [
        Span(start, end, tuple(sorted(kinds, key=_rank)), _strictest([policy_for(k) for k in kinds]))
        for start, end, kinds in groups
    ]


def scan(rctx: RelayContext, text: str | None) -> list[Span]:
    """The spans the detector plugins find in ``text``, with the configured policies."""
    if not text:
        return []
    return merge(rctx.hooks.detect_sensitive(text), rctx.config.sensitive.policy_for)


def masked_value(value: str, kinds: Sequence[str]) -> str:
    """What a copy shows instead of ``value``: enough to recognise an IBAN or a card, nothing of the rest."""
    kind = kinds[0]
    if len(kinds) == 1 and kind == "iban":
        compact = _BLANKS.sub("", value).upper()
        if len(compact) > 8:
            return f"{compact[:4]} **** **** **** {compact[-4:]} [IBAN hidden]"
    if len(kinds) == 1 and kind == "card":
        digits = _NOT_DIGIT.sub("", value)
        if len(digits) > 8:
            return f"**** {digits[-4:]} [card hidden]"
    return f"[{_LABELS.get(kind, kind.replace('_', ' '))} hidden]"


def mask(text: str, spans: Sequence[Span]) -> str:
    """``text`` with every span whose policy is not ``allow`` replaced by its masked form."""
    out: list[str] = []
    at = 0
    for span in spans:
        if span.policy == ALLOW or span.start < at:
            continue
        out.append(text[at : span.start])
        out.append(masked_value(text[span.start : span.end], span.kinds))
        at = span.end
    out.append(text[at:])
    return "".join(out)


def kinds_text(kinds: Sequence[str]) -> str:
    """``IBAN, card number`` for an agent's notice (each kind once, in naming order)."""
    unique = sorted(set(kinds), key=_rank)
    return ", ".join(_NAMES.get(k, k.replace("_", " ")) for k in unique)


def kinds_of(spans: Sequence[Span], *policies: str) -> list[str]:
    """The kinds of the spans whose policy is one of ``policies``."""
    return [kind for span in spans if span.policy in policies for kind in span.kinds]


def redact(rctx: RelayContext, text: str) -> str:
    """``text`` with what the policy hides masked (``block`` kinds too: they are never shown)."""
    spans = scan(rctx, text)
    return mask(text, spans) if spans else text


def for_agent(rctx: RelayContext, channel: str, text: str) -> str:
    """The copy of ``text`` an agent receives on ``channel``: masked on a third-party chat platform."""
    return redact(rctx, text) if third_party(channel) else text


def withheld_kinds(rctx: RelayContext, channel: str, text: str | None) -> list[str]:
    """Kinds under the ``block`` policy in a customer's ``text``, when its copy would go to ``channel``."""
    if not third_party(channel):
        return []
    return kinds_of(scan(rctx, text), BLOCK)


def history_text(rctx: RelayContext, channel: str, text: str, status: str) -> str:
    """A message's text in a hand-off's history for an agent on ``channel``.

    On a third-party chat platform an answer to ``/secure`` (an address, a
    code) is not shown and a blocked message is named, not quoted; the rest
    is masked when the hand-off is queued.
    """
    if not third_party(channel):
        return text
    if status == SECURE_ANSWER:
        return "[answer to /secure, not shown]"
    blocked = kinds_of(scan(rctx, text), BLOCK)
    return f"[withheld: {kinds_text(blocked)}]" if blocked else text


def customer_should_be_told(rctx: RelayContext, channel: str, findings: Sequence[Finding]) -> bool:
    """Whether a customer who wrote ``findings`` on ``channel`` should be asked to use email for such data."""
    if not findings or not third_party(channel):
        return False
    policy_for = rctx.config.sensitive.policy_for
    return any(policy_for(f.kind) != ALLOW for f in findings)


def check_reply(tx: Tx, rctx: RelayContext, conv: Conversation, channel: str, text: str) -> bool:
    """Refuse an agent's reply that would carry a finding through a chat platform; return whether it has findings.

    A reply to a customer on email goes as it is (flagged sensitive); on any
    other channel a finding whose policy is not ``allow`` stops the whole
    reply, and the answer tells the agent to use ``/secure``.

    :raises SensitiveReplyRefused: the answer for the agent, naming kinds, never values.
    """
    spans = scan(rctx, text)
    if not spans:
        return False
    kinds = kinds_of(spans, REDACT, BLOCK)
    if kinds and third_party(channel):
        name = display_name(reads.contact_name(tx, conv.contact_id), conv.id)
        notice = rctx.templates.render(
            "sensitive_reply_refused", None, conversation=conv.id, contact=name, channel=rctx.label(channel),
            kinds=kinds_text(kinds),
        )  # fmt: skip
        raise SensitiveReplyRefused(notice, kinds)
    return True
