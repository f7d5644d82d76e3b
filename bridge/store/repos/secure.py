"""Pending ``/secure`` deliveries and the mails that carried a secret or a code.

A ``/secure`` request waits here while the customer gives (and confirms) an
email address: one row per conversation, its text sealed under the
customer's key, the candidate address sealed too, the 6-digit code kept only
as a blind index. Rows are deleted (``secure_delete`` zeroes the pages) once
the text has been handed to the outbox, or when the request expires.

``secure_mails`` names the outbox rows that carry a secret or a code: once
such a row has its outcome (sent, failed, cancelled), its body is
overwritten, so the text does not outlive its delivery in the store.
"""

from __future__ import annotations

import hmac
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from bridge.store.keyring import KeyOwner
from bridge.store.session import Session

#: States of a pending request: waiting for the customer's address, or for the code mailed to it.
ADDRESS = "address"
CODE = "code"
#: What an erased mail's body says instead of the text it carried.
ERASED = "[erased after delivery: sent with /secure]"

_COLUMNS = "id, conversation_id, contact_id, agent_id, state, attempts, codes_sent, created_at, expires_at"
_P_COLUMNS = ", ".join(f"p.{name}" for name in _COLUMNS.split(", "))


@dataclass(frozen=True, slots=True)
class SecureRequest:
    """One pending ``/secure``, plain columns only: ``SecureRepo.secret`` and ``address`` open the sealed ones.

    Listing and expiring requests never decrypts, so one damaged cell cannot
    stop the clean-up of the others.

    :param attempts: wrong codes typed since the last code was mailed.
    :param codes_sent: codes mailed so far (each new address mails one).
    """

    id: int
    conversation_id: int
    contact_id: int
    agent_id: int | None
    state: str
    attempts: int
    codes_sent: int
    created_at: float
    expires_at: float


class SecureRepo:
    """``secure_pending`` and ``secure_mails``."""

    def __init__(self, session: Session) -> None:
        self._s = session

    def create(
        self, conversation_id: int, contact_id: int, agent_id: int | None, secret: str, *, expires_at: float
    ) -> bool:
        """Keep a new request waiting for the customer's address; False when the conversation has one already."""
        row_id = self._s.next_id("secure_pending")
        owner = KeyOwner.contact(contact_id)
        cursor = self._s.execute(
            "INSERT INTO secure_pending (id, conversation_id, contact_id, agent_id, state, secret, attempts,"
            " codes_sent, created_at, expires_at) VALUES (?, ?, ?, ?, ?, ?, 0, 0, ?, ?)"
            " ON CONFLICT (conversation_id) DO NOTHING",
            (
                row_id, conversation_id, contact_id, agent_id, ADDRESS,
                self._s.seal(owner, "secure_pending", "secret", row_id, secret), self._s.now(), expires_at,
            ),
        )  # fmt: skip
        return bool(cursor.rowcount == 1)

    def _decode(self, row: Sequence[Any]) -> SecureRequest:
        (row_id, conv, contact, agent, state, attempts, codes, created, expires) = tuple(row)
        return SecureRequest(
            id=row_id, conversation_id=conv, contact_id=contact, agent_id=agent, state=state, attempts=attempts,
            codes_sent=codes, created_at=created, expires_at=expires,
        )  # fmt: skip

    def get(self, conversation_id: int) -> SecureRequest | None:
        """The conversation's pending request, or None."""
        row = self._s.execute(
            f"SELECT {_COLUMNS} FROM secure_pending WHERE conversation_id = ?", (conversation_id,)
        ).fetchone()
        return None if row is None else self._decode(row)

    def secret(self, request: SecureRequest) -> str:
        """The request's text, decrypted (only to mail it).

        :raises IntegrityError: the sealed cell was tampered with or its key is gone.
        """
        row = self._s.execute("SELECT secret FROM secure_pending WHERE id = ?", (request.id,)).fetchone()
        if row is None:
            raise LookupError(f"secure request {request.id} is gone")
        owner = KeyOwner.contact(request.contact_id)
        return self._s.open_text(owner, "secure_pending", "secret", request.id, row[0])

    def address(self, request: SecureRequest) -> str | None:
        """The address the customer gave (a code was mailed to it), decrypted; None before they gave one.

        :raises IntegrityError: the sealed cell was tampered with or its key is gone.
        """
        row = self._s.execute("SELECT address FROM secure_pending WHERE id = ?", (request.id,)).fetchone()
        owner = KeyOwner.contact(request.contact_id)
        return None if row is None else self._s.open_optional(owner, "secure_pending", "address", request.id, row[0])

    def ask_code(self, request: SecureRequest, address: str, code: str, *, expires_at: float) -> None:
        """Record the address a code was mailed to and the code's blind index; wrong attempts start again."""
        owner = KeyOwner.contact(request.contact_id)
        self._s.execute(
            "UPDATE secure_pending SET state = ?, address = ?, code_index = ?, attempts = 0,"
            " codes_sent = codes_sent + 1, expires_at = ? WHERE id = ?",
            (
                CODE, self._s.seal(owner, "secure_pending", "address", request.id, address),
                self._code_index(request, code), expires_at, request.id,
            ),
        )  # fmt: skip

    def code_matches(self, request: SecureRequest, code: str) -> bool:
        """Whether ``code`` is the one mailed for ``request`` (constant-time comparison)."""
        row = self._s.execute("SELECT code_index FROM secure_pending WHERE id = ?", (request.id,)).fetchone()
        if row is None or row[0] is None:
            return False
        return hmac.compare_digest(bytes(row[0]), self._code_index(request, code))

    def count_wrong_code(self, request: SecureRequest) -> int:
        """Count one wrong code; return the attempts so far."""
        self._s.execute("UPDATE secure_pending SET attempts = attempts + 1 WHERE id = ?", (request.id,))
        row = self._s.execute("SELECT attempts FROM secure_pending WHERE id = ?", (request.id,)).fetchone()
        return int(row[0]) if row else 0

    def _code_index(self, request: SecureRequest, code: str) -> bytes:
        # Bound to the request: the same code for another request has another index.
        return self._s.blind(f"secure-code:{request.id}", code)

    def delete(self, request: SecureRequest) -> None:
        """Erase the request: its text, address and code go with the row."""
        self._s.execute("DELETE FROM secure_pending WHERE id = ?", (request.id,))

    def expired(self, now: float) -> list[SecureRequest]:
        """Requests whose time is up, oldest first."""
        rows = self._s.execute(
            f"SELECT {_COLUMNS} FROM secure_pending WHERE expires_at <= ? ORDER BY expires_at", (now,)
        ).fetchall()
        return [self._decode(r) for r in rows]

    def of_closed_conversations(self) -> list[SecureRequest]:
        """Requests whose conversation was closed meanwhile (nobody is waiting for them)."""
        rows = self._s.execute(
            f"SELECT {_P_COLUMNS} FROM secure_pending p"
            " JOIN conversations c ON c.id = p.conversation_id WHERE c.status = 'closed' ORDER BY p.id"
        ).fetchall()
        return [self._decode(r) for r in rows]

    # --- the mails that carried a secret or a code ---------------------------------

    def track_mail(self, outbox_id: int) -> None:
        """Remember that outbox row ``outbox_id`` carries a secret or a code (its body is erased later)."""
        self._s.execute(
            "INSERT INTO secure_mails (outbox_id, created_at) VALUES (?, ?) ON CONFLICT (outbox_id) DO NOTHING",
            (outbox_id, self._s.now()),
        )

    def erase_finished_mails(self) -> int:
        """Overwrite the body of every tracked mail that has its outcome; return how many.

        A row still pending or held keeps its text: the worker has yet to send it.
        """
        rows = self._s.execute(
            "SELECT o.id, o.key_kind, o.key_owner FROM secure_mails m JOIN outbox o ON o.id = m.outbox_id"
            " WHERE o.status IN ('sent', 'failed', 'cancelled') ORDER BY o.id"
        ).fetchall()
        for outbox_id, key_kind, key_owner in rows:
            owner = KeyOwner(key_kind, key_owner)
            self._s.execute(
                "UPDATE outbox SET body = ? WHERE id = ?",
                (self._s.seal(owner, "outbox", "body", outbox_id, ERASED), outbox_id),
            )
            self._s.execute("DELETE FROM secure_mails WHERE outbox_id = ?", (outbox_id,))
        return len(rows)

    def tracked_mails(self) -> int:
        """How many tracked mails still hold their text."""
        row = self._s.execute("SELECT count(*) FROM secure_mails").fetchone()
        return int(row[0])
