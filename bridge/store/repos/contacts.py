"""Contacts and their identities, found by blind index, never by plaintext.

Addresses arrive here already normalized by their channel (the relay and the
CLI ask ``bridge.agents.addresses``); the blind index is computed on exactly
what is given.
"""

from __future__ import annotations

from typing import Any

from bridge.errors import UnknownRecordError
from bridge.models import Address
from bridge.store.keyring import KeyOwner
from bridge.store.records import Contact, Identity
from bridge.store.session import Session


def identity_kind(channel: str) -> str:
    """Blind-index kind of a contact address on ``channel``."""
    return f"contact:{channel}"


class ContactsRepo:
    """``contacts`` and ``contact_identities``: sealed under each contact's own key."""

    def __init__(self, session: Session) -> None:
        self._s = session

    def create(self, *, name: str | None = None, email: str | None = None, email_verified: bool = False) -> int:
        """Create a contact (and its data key); return its id."""
        contact_id = self._s.next_id("contacts")
        owner = KeyOwner.contact(contact_id)
        self._s.new_key(owner)
        self._s.execute(
            "INSERT INTO contacts(id, created_at, name, email, email_index, email_verified) VALUES (?, ?, ?, ?, ?, ?)",
            (
                contact_id,
                self._s.now(),
                None if name is None else self._s.seal(owner, "contacts", "name", contact_id, name),
                None if email is None else self._s.seal(owner, "contacts", "email", contact_id, email),
                None if email is None else self._s.blind("email", email),
                int(email_verified),
            ),
        )
        return contact_id

    def get(self, contact_id: int) -> Contact | None:
        """The contact, decrypted, or None."""
        row = self._s.execute(
            "SELECT id, name, email, email_verified, created_at FROM contacts WHERE id = ?", (contact_id,)
        ).fetchone()
        if row is None:
            return None
        owner = KeyOwner.contact(row[0])
        return Contact(
            id=row[0],
            name=self._s.open_optional(owner, "contacts", "name", row[0], row[1]),
            email=self._s.open_optional(owner, "contacts", "email", row[0], row[2]),
            email_verified=bool(row[3]),
            created_at=row[4],
        )

    def set_name(self, contact_id: int, name: str | None) -> None:
        """Set (or clear) the contact's display name."""
        owner = KeyOwner.contact(contact_id)
        blob = None if name is None else self._s.seal(owner, "contacts", "name", contact_id, name)
        if self._s.execute("UPDATE contacts SET name = ? WHERE id = ?", (blob, contact_id)).rowcount != 1:
            raise UnknownRecordError(f"no contact {contact_id}")

    def set_email(self, contact_id: int, email: str | None, *, verified: bool = False) -> None:
        """Set the contact's email address (for ``/secure``); ``verified`` once a code was confirmed."""
        owner = KeyOwner.contact(contact_id)
        blob = index = None
        if email is not None:
            email = email.strip().lower()
            blob = self._s.seal(owner, "contacts", "email", contact_id, email)
            index = self._s.blind("email", email)
        cursor = self._s.execute(
            "UPDATE contacts SET email = ?, email_index = ?, email_verified = ? WHERE id = ?",
            (blob, index, int(verified and email is not None), contact_id),
        )
        if cursor.rowcount != 1:
            raise UnknownRecordError(f"no contact {contact_id}")

    def find_by_email(self, email: str) -> list[int]:
        """Ids of contacts whose stored email is ``email``."""
        rows = self._s.execute(
            "SELECT id FROM contacts WHERE email_index = ? ORDER BY id", (self._s.blind("email", email),)
        ).fetchall()
        return [r[0] for r in rows]

    def identity_from_row(self, row: Any, address: str | None = None) -> Identity:
        """Build an Identity; ``address`` is given when the row was matched by it.

        A row found by its blind index needs no decryption of the address: that
        is one AES-GCM open less per inbound message, and a damaged address
        cell cannot stop that person's new messages from being stored.
        """
        if address is None:
            owner = KeyOwner.contact(row[1])
            address = self._s.open_text(owner, "contact_identities", "address", row[0], row[3])
        return Identity(
            id=row[0],
            contact_id=row[1],
            channel=row[2],
            address=address,
            last_inbound_at=row[4],
            created_at=row[5],
        )

    _IDENTITY_COLUMNS = "id, contact_id, channel, address, last_inbound_at, created_at"

    def find_identity(self, channel: str, address: str) -> Identity | None:
        """The identity for ``address`` on ``channel``, or None.

        In a write, daemons sharing a database take turns per person from here to
        the commit, so one person's first messages open one conversation and
        their messages are stored in the order they arrived.
        """
        index = self._s.blind(identity_kind(channel), address)
        self._s.serialize(f"identity:{channel}:{index.hex()}")
        row = self._s.execute(
            f"SELECT {self._IDENTITY_COLUMNS} FROM contact_identities WHERE channel = ? AND address_index = ?",
            (channel, index),
        ).fetchone()
        return None if row is None else self.identity_from_row(row, address)

    def get_identity(self, identity_id: int) -> Identity | None:
        """One identity by id."""
        row = self._s.execute(
            f"SELECT {self._IDENTITY_COLUMNS} FROM contact_identities WHERE id = ?", (identity_id,)
        ).fetchone()
        return None if row is None else self.identity_from_row(row)

    def identities_of(self, contact_id: int) -> list[Identity]:
        """Every identity of a contact, oldest first."""
        rows = self._s.execute(
            f"SELECT {self._IDENTITY_COLUMNS} FROM contact_identities WHERE contact_id = ? ORDER BY id", (contact_id,)
        ).fetchall()
        return [self.identity_from_row(r) for r in rows]

    def add_identity(self, contact_id: int, channel: str, address: str, *, inbound_at: float | None = None) -> Identity:
        """Attach a new address to an existing contact."""
        identity_id = self._s.next_id("contact_identities")
        owner = KeyOwner.contact(contact_id)
        now = self._s.now()
        self._s.execute(
            "INSERT INTO contact_identities(id, contact_id, channel, address_index, address, last_inbound_at,"
            " created_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
            (
                identity_id,
                contact_id,
                channel,
                self._s.blind(identity_kind(channel), address),
                self._s.seal(owner, "contact_identities", "address", identity_id, address),
                inbound_at,
                now,
            ),
        )
        return Identity(identity_id, contact_id, channel, address, inbound_at, now)

    def get_or_create_identity(
        self, channel: str, address: str, *, name: str | None = None, inbound_at: float | None = None
    ) -> tuple[Identity, bool]:
        """Find the identity of ``address`` on ``channel``, creating contact + identity if new.

        ``inbound_at`` (when the person wrote) moves ``last_inbound_at`` forward;
        ``name`` is stored when the contact has none yet. Returns ``(identity, created)``.
        """
        found = self.find_identity(channel, address)
        if found is None:
            contact_id = self.create(name=name)
            return self.add_identity(contact_id, channel, address, inbound_at=inbound_at), True
        if inbound_at is not None and (found.last_inbound_at is None or inbound_at > found.last_inbound_at):
            self.touch_identity(found.id, inbound_at)
            found = Identity(found.id, found.contact_id, found.channel, found.address, inbound_at, found.created_at)
        if name:
            has_name = self._s.execute(
                "SELECT name IS NOT NULL FROM contacts WHERE id = ?", (found.contact_id,)
            ).fetchone()
            if has_name is not None and not has_name[0]:
                self.set_name(found.contact_id, name)
        return found, False

    def touch_identity(self, identity_id: int, at: float) -> None:
        """Record that the person wrote at ``at`` (opens platform reply windows)."""
        self._s.execute(
            "UPDATE contact_identities SET last_inbound_at = CASE WHEN last_inbound_at IS NULL"
            " OR last_inbound_at < ? THEN ? ELSE last_inbound_at END WHERE id = ?",
            (at, at, identity_id),
        )

    def find(self, ref: int | Address) -> int | None:
        """A contact id from a reference: an id, or a normalized address (an email also matches a contact's email)."""
        if isinstance(ref, int):
            row = self._s.execute("SELECT id FROM contacts WHERE id = ?", (ref,)).fetchone()
            return None if row is None else int(row[0])
        address = ref
        identity = self.find_identity(address.channel, address.address)
        if identity is not None:
            return identity.contact_id
        if address.channel == "email":
            found = self.find_by_email(address.address)
            return found[0] if found else None
        return None

    def last_inbound_at(self, contact_id: int, channel: str) -> float | None:
        """When the contact last wrote to us on ``channel`` (platform reply windows), or None."""
        row = self._s.execute(
            "SELECT MAX(last_inbound_at) FROM contact_identities WHERE contact_id = ? AND channel = ?",
            (contact_id, channel),
        ).fetchone()
        return float(row[0]) if row and row[0] is not None else None

    def exists(self, contact_id: int) -> bool:
        """Whether the contact exists (erased contacts do not)."""
        return self._s.execute("SELECT 1 FROM contacts WHERE id = ?", (contact_id,)).fetchone() is not None
