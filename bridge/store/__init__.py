"""The encrypted local store: the only way Carebridge reads or writes data.

Usage::

    store = await Store.open(config.store)        # key check, migrations
    conv_id = await store.write(lambda tx: ...)   # group-committed; resolves after COMMIT
    msgs = await store.read(lambda tx: tx.recent_messages(conv_id, 50))
    await store.close()

``Store``: ``open(settings, *, create_missing_key=True, must_exist=False, clock=None)``,
``write(fn)``, ``read(fn)``, ``health()``, ``media_dir``, ``purge_closed(days, chunk=2000)``,
``rotate_master_key(new_key)``, ``close()``, counters ``batches``/``writes``. ``fn`` is a
plain (sync) function of a :class:`Tx`; a write function must not commit; an
exception rolls back that function's work only and is raised to its caller; a
cancelled caller's function still runs and commits. Admin commands in other
processes (``keys rotate``, ``gdpr erase``) are seen by a running store without
a restart: it re-reads a rotated key file, and drops cached keys another
process shredded.

Errors: ``KeyMismatchError`` (wrong master key, checked before any write),
``StoreError`` (missing key with an existing database, newer schema, unusable
file), ``IntegrityError`` (a tampered or moved ciphertext; has ``table``,
``column``, ``row_id``), ``UnknownRecordError`` (no such contact/conversation).

Tx primitives (``bridge.store.base.TxBase``)
    ``tx.conn`` (sqlite3), ``tx.now()``, ``tx.next_id(table)`` (take the id
    BEFORE sealing so the associated data names the row),
    ``tx.seal(owner, table, column, row_id, value) -> bytes`` (creates the
    owner's data key when missing), ``tx.open_text(...)``/``open_bytes(...)``/
    ``open_optional(...)`` (raise ``IntegrityError`` naming table, column, row),
    ``tx.blind(kind, value) -> bytes`` (16-byte HMAC; email kinds case-folded),
    ``tx.new_key(owner)``, ``tx.has_key(owner)``, ``tx.shred_key(owner)``,
    ``tx.after_commit(cb)``, ``tx.on_rollback(cb)``, ``tx.media_dir``.
    ``KeyOwner.contact(id)``, ``KeyOwner.agent(id)``, ``KeyOwner.SYSTEM``.
    Blind-index kinds in use: ``contact:<channel>`` (contact addresses),
    ``message:<channel>`` (platform message ids), ``email``; agents use
    ``agent:<channel>``.

Contacts (``contacts.py``)
    ``create_contact(name=, email=, email_verified=) -> id``; ``get_contact(id) -> Contact | None``;
    ``set_contact_name(id, name)``; ``set_contact_email(id, email, verified=)``;
    ``find_contacts_by_email(email) -> [id]``;
    ``find_identity(channel, address) -> Identity | None``; ``get_identity(id)``;
    ``identities_of(contact_id)``; ``add_identity(contact_id, channel, address, inbound_at=)``;
    ``get_or_create_identity(channel, address, name=, inbound_at=) -> (Identity, created)``
    (moves ``last_inbound_at`` forward, sets the name if the contact has none);
    ``touch_identity(id, at)``; ``find_contact("42" | "whatsapp:+31…") -> id | None``.
    Addresses are normalized (E.164 with ``+``, lower-case email) before indexing.

Conversations (``conversations.py``)
    ``create_conversation(contact_id, identity_id, channel, queue=, language=, status=)``;
    ``get_conversation(id)``; ``open_conversation(identity_id)`` (newest not closed);
    ``conversations_of(contact_id)``; ``update_conversation(id, status=, queue=, agent_id=, language=)``;
    ``close_conversation(id)``; ``conversation_owner(id) -> KeyOwner``.

Messages (``messages.py``), sealed under the conversation's contact key
    ``insert_message(conversation_id, direction=, channel=, text=, external_id=, reply_to=,
    agent_id=, status=, sensitive=, meta=, created_at=, owner=) -> id | None`` (None: the
    ``(channel, external_id)`` is already stored); ``message_id_by_external(channel, ext)``;
    ``set_message_status(channel, ext, status) -> id | None``; ``update_message_status(id, status)``;
    ``set_message_external_id(id, ext, status=)``; ``get_message(id)``;
    ``recent_messages(conversation_id, limit=50, before_id=, strict=True)`` (newest N, oldest
    first); ``messages_of(conversation_id, strict=)``. With ``strict=False`` a tampered
    record comes back with ``text=None, unreadable=True`` and is logged.

Attachments (``attachments.py``)
    ``add_attachment(message_id, idx, kind, mime=, meta=, data=) -> id``;
    ``store_attachment_data(id, data, mime=)``; ``attachment_by_external(channel, ext, idx)``;
    ``attachments_of(message_id)``; ``get_attachment(id)``; ``read_attachment(id) -> bytes``.

Audit (``audit.py``)
    ``audit(actor, action, subject=None, detail=None) -> id`` (HMAC hash chain; detail sealed);
    ``audit_entries(subject=None)``; ``verify_audit() -> AuditCheck``.

GDPR and retention (``gdpr.py``)
    ``erase_contact(id) -> counts`` (rows deleted with secure_delete, data key destroyed,
    media files removed and WAL truncated after commit); ``export_contact(id) -> (doc,
    problems)``; ``purge_closed(days) -> messages deleted``.

Plaintext text columns hold no personal data: ``outbox.last_error`` is passed
through :func:`bridge.store.scrub.scrub_error` by triggers (migration 2), so
addresses, phone numbers and platform ids in a platform's error text never
reach the file; log the same text through ``scrub_error`` too.

Schema changes: ``register_migration(number, fn)`` or ``MIGRATIONS`` in
``bridge.relay.schema`` (numbers 100–199); see :mod:`bridge.store.schema`.
"""

from __future__ import annotations

from .engine import Store, StoreSettings
from .keyring import KeyOwner
from .records import AttachmentRecord, AuditCheck, AuditEntry, Contact, Conversation, Identity, Message
from .schema import register_migration
from .tx import Tx

__all__ = [
    "AttachmentRecord",
    "AuditCheck",
    "AuditEntry",
    "Contact",
    "Conversation",
    "Identity",
    "KeyOwner",
    "Message",
    "Store",
    "StoreSettings",
    "Tx",
    "register_migration",
]
