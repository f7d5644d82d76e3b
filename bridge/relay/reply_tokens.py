"""Reply tokens: unguessable per-conversation, per-recipient reply addresses.

Why: a channel that threads by address (email's ``Reply-To:
reply+TOKEN@domain``) tells us which conversation an answer belongs to,
and for a channel whose sender is only a claim (an email From) the token
is also the proof that the answer comes from whoever received our mail. A
counter such as ``c42`` proves nothing, so a token is an HMAC, under a
random key kept sealed in the store (``tx.secrets``), of the conversation
and the recipient it was issued to, 100 bits of it, compared in constant
time. A token that does not verify is as if there were none.

The text is opaque to channels: ``<conversation><kind><id>-<mac>`` in lower
case digits and base32 (mail systems may fold the case of a local part),
where kind is ``a`` (an agent) or ``u`` (a customer, by contact id), and
conversation 0 stands for "no conversation" (notices to an agent).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
from dataclasses import dataclass
from typing import Literal

from bridge.store import Tx

#: The ``tx.secrets`` name of the HMAC key.
KEY_NAME = "reply_token_key"
#: The base32 characters of the MAC: 20 x 5 = 100 bits.
MAC_CHARS = 20
_KINDS = {"agent": "a", "contact": "u"}
# No leading zeros: one claim has exactly one token text.
_NUMBER = r"(0|[1-9]\d{0,17})"
_TOKEN = re.compile(rf"^{_NUMBER}([au]){_NUMBER}-([a-z2-7]{{{MAC_CHARS}}})$")

RecipientKind = Literal["agent", "contact"]


@dataclass(frozen=True, slots=True)
class TokenClaim:
    """What a verified token was issued for.

    :param conversation_id: the conversation, or None for a notice outside any.
    :param kind: ``agent`` or ``contact``.
    :param recipient_id: the agent's or the contact's id.
    """

    conversation_id: int | None
    kind: RecipientKind
    recipient_id: int

    def is_agent(self, agent_id: int) -> bool:
        """Whether this token was issued to agent ``agent_id``."""
        return self.kind == "agent" and self.recipient_id == agent_id

    def is_contact(self, contact_id: int) -> bool:
        """Whether this token was issued to contact ``contact_id``."""
        return self.kind == "contact" and self.recipient_id == contact_id


def issue(tx: Tx, conversation_id: int | None, kind: RecipientKind, recipient_id: int) -> str:
    """The token for ``recipient_id`` (an agent or a contact) in ``conversation_id`` (None: none)."""
    conv = int(conversation_id or 0)
    return f"{conv}{_KINDS[kind]}{int(recipient_id)}-{_mac(tx, conv, _KINDS[kind], int(recipient_id))}"


def verify(tx: Tx, token: str | None) -> TokenClaim | None:
    """What ``token`` was issued for, or None when it is malformed, truncated or forged."""
    if not token or len(token) > 64:
        return None
    match = _TOKEN.match(token.strip().lower())
    if match is None:
        return None
    conv, kind, recipient = int(match.group(1)), match.group(2), int(match.group(3))
    if not hmac.compare_digest(_mac(tx, conv, kind, recipient), match.group(4)):
        return None
    return TokenClaim(conversation_id=conv or None, kind="agent" if kind == "a" else "contact", recipient_id=recipient)


def _mac(tx: Tx, conversation_id: int, kind: str, recipient_id: int) -> str:
    key = tx.secrets.get_or_create(KEY_NAME)
    digest = hmac.new(key, f"reply-token:v1:{conversation_id}:{kind}:{recipient_id}".encode(), hashlib.sha256)
    return base64.b32encode(digest.digest()).decode("ascii").lower()[:MAC_CHARS]
