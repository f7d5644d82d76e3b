"""The handle every ``store.write(fn)``/``store.read(fn)`` function gets: the repositories.

Why composition: each aggregate's statements and encryption rules sit in one
repository (``bridge.store.repos``), all built on the same :class:`Session`
(the backend seam); a write function reaches them as ``tx.contacts``,
``tx.messages``, … and never sees SQL or a connection.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager

from bridge.store.repos.agents import AgentsRepo
from bridge.store.repos.attachments import AttachmentsRepo
from bridge.store.repos.audit import AuditRepo
from bridge.store.repos.channel_state import ChannelStateRepo
from bridge.store.repos.contacts import ContactsRepo
from bridge.store.repos.conversations import ConversationsRepo
from bridge.store.repos.events import EventsRepo
from bridge.store.repos.gdpr import GdprRepo
from bridge.store.repos.messages import MessagesRepo
from bridge.store.repos.outbox import OutboxRepo
from bridge.store.repos.rekey import RekeyRepo
from bridge.store.repos.relay_state import RelayStateRepo
from bridge.store.repos.retention import RetentionRepo
from bridge.store.repos.secrets import SecretsRepo
from bridge.store.repos.secure import SecureRepo
from bridge.store.repos.sessions import SessionsRepo
from bridge.store.repos.shifts import ShiftsRepo
from bridge.store.session import Session


class Tx:
    """One transaction's view of the store (valid only while its function runs).

    :ivar contacts: contacts and their platform identities.
    :ivar conversations: conversations and their assignment.
    :ivar messages: messages, sealed under the contact's key.
    :ivar attachments: attachment rows and their encrypted files.
    :ivar agents: agents, their identities and routing state.
    :ivar shifts: shifts and used TOTP steps.
    :ivar outbox: deliveries waiting, sent, held or failed.
    :ivar relay: the relay's flags, agent-message dedupe and early status reports.
    :ivar events: conversation events (assignments, transfers, …).
    :ivar audit: the append-only audit log.
    :ivar secure: pending ``/secure`` deliveries and the mails erased after delivery.
    :ivar gdpr: erasure and export (and the deletions retention shares).
    :ivar retention: the retention purge and idle conversations.
    :ivar rekey: replacing data keys (``keys rotate --rekey``).
    :ivar sessions: console sessions and failed-login counts by address or unknown name.
    :ivar channel_state: what channels keep across restarts (``ChannelContext.load_state``).
    :ivar secrets: random keys the bridge makes for itself (the reply-token key).
    """

    __slots__ = (
        "_session", "agents", "attachments", "audit", "channel_state", "contacts", "conversations", "events", "gdpr",
        "messages", "outbox", "rekey", "relay", "retention", "secrets", "secure", "sessions", "shifts",
    )  # fmt: skip

    def __init__(self, session: Session) -> None:
        self._session = session
        self.contacts = ContactsRepo(session)
        self.conversations = ConversationsRepo(session)
        self.messages = MessagesRepo(session, self.conversations)
        self.attachments = AttachmentsRepo(session)
        self.agents = AgentsRepo(session)
        self.shifts = ShiftsRepo(session)
        self.outbox = OutboxRepo(session, self.messages)
        self.relay = RelayStateRepo(session)
        self.events = EventsRepo(session)
        self.audit = AuditRepo(session)
        self.secure = SecureRepo(session)
        self.sessions = SessionsRepo(session)
        self.channel_state = ChannelStateRepo(session)
        self.secrets = SecretsRepo(session)
        self.gdpr = GdprRepo(session, self.contacts, self.conversations, self.messages, self.attachments, self.audit)
        self.retention = RetentionRepo(session, self.gdpr)
        self.rekey = RekeyRepo(session, self.attachments)

    def now(self) -> float:
        """The store's clock (epoch seconds); tests may inject their own."""
        return self._session.now()

    def savepoint(self) -> AbstractContextManager[None]:
        """A nested block an exception rolls back whole: rows, new data keys, files (see ``SqliteSession``)."""
        return self._session.savepoint()

    def after_commit(self, callback: Callable[[], None]) -> None:
        """Run ``callback`` (on the writer thread) once this function's work is committed."""
        self._session.after_commit(callback)

    def on_rollback(self, callback: Callable[[], None]) -> None:
        """Run ``callback`` if this function's work is rolled back."""
        self._session.on_rollback(callback)
