"""The encrypted local store: the only part of Carebridge that holds SQL.

Usage::

    store = await open_store(config.store)                       # key check, migrations
    conv = await store.write(lambda tx: tx.conversations.get(42))  # group-committed; resolves after COMMIT
    msgs = await store.read(lambda tx: tx.messages.recent(conv_id, 50))
    await store.close()

``fn`` is a plain (sync) function of a :class:`Tx`; a write function must not
commit; an exception rolls back that function's work only and is raised to
its caller; a cancelled caller's function still runs and commits. Admin
commands in other processes (``keys rotate``, ``gdpr erase``) are seen by a
running store without a restart.

``Tx`` is composed of one repository per aggregate (``tx.contacts``,
``tx.conversations``, ``tx.messages``, ``tx.attachments``, ``tx.agents``,
``tx.shifts``, ``tx.outbox``, ``tx.relay``, ``tx.events``, ``tx.audit``,
``tx.gdpr``, ``tx.sessions``), each built on the :class:`bridge.store.session.Session`
primitives (the backend seam: SQL, clock, ids, sealing, blind indexes, data
keys). Callers speak in domain terms; statements, encryption rules and the
schema (``bridge.store.schema``, numbered migrations) stay here.

Backends: ``[store] backend = "sqlite"`` (``bridge.store.engine``, the
default: one encrypted file, one daemon) or ``"postgresql"``
(``bridge.store.postgres``: one database shared by several daemons, with the
same envelope encryption, blind indexes and crypto-shredding). ``open_store``
(``bridge.store.backends``) picks one; its callers cannot tell them apart. Migrations are one list for
both (SQLite DDL, translated for PostgreSQL by ``bridge.store.postgres.dialect``).

Errors: ``KeyMismatchError`` (wrong master key, checked before any write),
``StoreError`` (missing key with an existing database, newer schema, unusable
file), ``IntegrityError`` (a tampered or moved ciphertext; has ``table``,
``column``, ``row_id``), ``UnknownRecordError`` (no such contact/conversation).

Plaintext text columns hold no personal data: ``outbox.last_error`` is passed
through :func:`bridge.store.scrub.scrub_error` by the outbox repository (and,
on SQLite, by migration 2's triggers as well).
"""

from __future__ import annotations

from bridge.store.backends import open_store
from bridge.store.engine import Store, StoreSettings
from bridge.store.keyring import SYSTEM_KEY, KeyOwner
from bridge.store.records import (
    Agent,
    AttachmentRecord,
    AuditCheck,
    AuditEntry,
    ConsoleSession,
    Contact,
    Conversation,
    ConversationEvent,
    Delivery,
    DuePlan,
    EarlyStatus,
    Identity,
    Message,
    OnlineAgent,
    PendingTransfer,
)
from bridge.store.repos.outbox import CHANNEL_UNAVAILABLE, WINDOW_CLOSED
from bridge.store.scrub import scrub_error
from bridge.store.tx import Tx

__all__ = [
    "open_store",
    "CHANNEL_UNAVAILABLE",
    "WINDOW_CLOSED",
    "Agent",
    "AttachmentRecord",
    "AuditCheck",
    "AuditEntry",
    "ConsoleSession",
    "Contact",
    "ConversationEvent",
    "Conversation",
    "Delivery",
    "DuePlan",
    "EarlyStatus",
    "Identity",
    "SYSTEM_KEY",
    "KeyOwner",
    "Message",
    "OnlineAgent",
    "PendingTransfer",
    "Store",
    "StoreSettings",
    "Tx",
    "scrub_error",
]
