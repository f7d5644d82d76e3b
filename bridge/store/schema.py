"""Numbered schema migrations.

The store runs every migration whose number is not yet in ``schema_migrations``,
in order, each in its own transaction together with its version row. A
database whose highest version is above every migration this code knows is
refused ("database schema version N is newer than this Carebridge (M)").

Every table of Carebridge is created here: the store owns the whole schema.
Numbers 1–99 are the core tables, 100–199 the relay's bookkeeping (agent
dedupe, sent ids, rotation, flags, early status reports; 110–119 pending
/secure exchanges; 120–129 console sessions and login failures; 130–139 the
channels' own state; 140–149 data protection). Append new
migrations; never edit a released one.

``fn(db)`` runs inside the migration's transaction and must not commit.
One list serves both backends: on SQLite ``db`` is a
:class:`sqlite_utils.Database` wrapping the writer connection; on PostgreSQL
it is ``bridge.store.postgres.migrate.PgMigrationDb``, whose ``execute``
translates the same SQLite DDL (types, serial ids, foreign keys, triggers;
see ``bridge.store.postgres.dialect``). So write plain SQLite statements
through ``db.execute``; where the dialects must differ, say so explicitly
with :func:`sqlite_only` / :func:`postgresql_only` (native statements of that
backend) or branch on :func:`dialect`.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable
from typing import Any

import sqlite_utils

from bridge.errors import StoreError
from bridge.store import scrub

#: ``fn(db)``: ``db`` is a ``sqlite_utils.Database`` or a ``PgMigrationDb`` (both have ``execute``).
Migration = Callable[[Any], None]

_MIGRATIONS: dict[int, tuple[str, Migration]] = {}


def register_migration(number: int, fn: Migration, *, name: str | None = None) -> None:
    """Add migration ``number``; registering the same function twice is harmless.

    :raises ValueError: when another function already holds that number.
    """
    existing = _MIGRATIONS.get(number)
    label: str = name or str(getattr(fn, "__name__", f"m{number:03d}"))
    if existing is not None:
        if existing[1] is fn or (existing[0] == label and existing[1].__module__ == fn.__module__):
            return
        raise ValueError(f"migration {number} is already registered as {existing[0]}")
    _MIGRATIONS[number] = (label, fn)


def dialect(db: object) -> str:
    """``"sqlite"`` or ``"postgresql"``: the backend a migration runs on."""
    return str(getattr(db, "dialect", "sqlite"))


def sqlite_only(db: Any, *statements: str) -> None:
    """Run SQLite-only statements (on PostgreSQL they are skipped: the caller says what replaces them)."""
    if dialect(db) == "sqlite":
        for statement in statements:
            db.execute(statement)


def postgresql_only(db: Any, *statements: str) -> None:
    """Run native PostgreSQL statements, untranslated (skipped on SQLite)."""
    if dialect(db) == "postgresql":
        for statement in statements:
            db.execute_native(statement)


def migrations() -> list[tuple[int, str, Migration]]:
    """Every known migration, ordered by number."""
    return [(n, label, fn) for n, (label, fn) in sorted(_MIGRATIONS.items())]


def latest_version() -> int:
    """The highest migration number this code knows."""
    known = migrations()
    return known[-1][0] if known else 0


def current_version(db: sqlite_utils.Database) -> int:
    """The highest migration applied to ``db`` (0 for a new database)."""
    if not db["schema_migrations"].exists():
        return 0
    row = db.execute("SELECT max(number) FROM schema_migrations").fetchone()
    return int(row[0] or 0)


def check_not_newer(db: sqlite_utils.Database) -> int:
    """Refuse a database migrated by a newer Carebridge; return its version."""
    version = current_version(db)
    latest = latest_version()
    if version > latest:
        raise StoreError(f"database schema version {version} is newer than this Carebridge ({latest})")
    return version


def migrate(db: sqlite_utils.Database) -> int:
    """Apply every pending migration; return the resulting version."""
    check_not_newer(db)
    conn = db.conn
    for number, label, fn in migrations():
        conn.execute("BEGIN IMMEDIATE")
        try:
            if number == 1:
                _create_version_table(db)
            applied = (
                db["schema_migrations"].exists()
                and db.execute("SELECT 1 FROM schema_migrations WHERE number = ?", [number]).fetchone()
            )
            if not applied:
                fn(db)
                conn.execute(
                    "INSERT INTO schema_migrations(number, name, applied_at) VALUES (?, ?, ?)",
                    (number, label, time.time()),
                )
            conn.execute("COMMIT")
        except sqlite3.Error as err:
            conn.execute("ROLLBACK")
            raise StoreError(f"migration {number} ({label}) failed: {err}") from err
        except BaseException:
            conn.execute("ROLLBACK")
            raise
    return current_version(db)


def _create_version_table(db: sqlite_utils.Database) -> None:
    # Plain DDL: sqlite-utils' Table.create() commits, which would end our transaction.
    db.execute(
        "CREATE TABLE IF NOT EXISTS schema_migrations("
        "number INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at REAL NOT NULL)"
    )


_M001 = """
CREATE TABLE keys(
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  owner_kind TEXT NOT NULL,
  owner_id INTEGER NOT NULL,
  wrapped BLOB NOT NULL,
  created_at REAL NOT NULL,
  UNIQUE(owner_kind, owner_id));
CREATE TABLE meta(name TEXT PRIMARY KEY, value BLOB);
CREATE TABLE contacts(
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  created_at REAL NOT NULL,
  name BLOB, email BLOB, email_index BLOB,
  email_verified INTEGER NOT NULL DEFAULT 0);
CREATE INDEX contacts_email ON contacts(email_index) WHERE email_index IS NOT NULL;
CREATE TABLE contact_identities(
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  contact_id INTEGER NOT NULL REFERENCES contacts(id) ON DELETE CASCADE,
  channel TEXT NOT NULL,
  address_index BLOB NOT NULL,
  address BLOB NOT NULL,
  last_inbound_at REAL,
  created_at REAL NOT NULL,
  UNIQUE(channel, address_index));
CREATE INDEX contact_identities_contact ON contact_identities(contact_id);
CREATE TABLE agents(
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  name TEXT NOT NULL UNIQUE,
  role TEXT NOT NULL DEFAULT 'agent' CHECK(role IN ('agent', 'admin')),
  channel TEXT NOT NULL,
  address BLOB, email BLOB,
  capacity INTEGER NOT NULL DEFAULT 5,
  queues TEXT NOT NULL DEFAULT '["default"]',
  disabled INTEGER NOT NULL DEFAULT 0,
  totp_secret BLOB, password_hash BLOB,
  created_at REAL NOT NULL,
  current_conversation_id INTEGER REFERENCES conversations(id) ON DELETE SET NULL);
CREATE INDEX agents_current ON agents(current_conversation_id) WHERE current_conversation_id IS NOT NULL;
CREATE TABLE agent_identities(
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  agent_id INTEGER NOT NULL REFERENCES agents(id) ON DELETE CASCADE,
  channel TEXT NOT NULL,
  address_index BLOB NOT NULL,
  address BLOB NOT NULL,
  last_inbound_at REAL,
  created_at REAL,
  UNIQUE(channel, address_index));
CREATE INDEX agent_identities_agent ON agent_identities(agent_id);
CREATE TABLE shifts(
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  agent_id INTEGER NOT NULL REFERENCES agents(id) ON DELETE CASCADE,
  started_at REAL NOT NULL, expires_at REAL NOT NULL, ended_at REAL);
CREATE INDEX shifts_agent ON shifts(agent_id, expires_at);
CREATE TABLE totp_used(
  agent_id INTEGER NOT NULL REFERENCES agents(id) ON DELETE CASCADE,
  counter INTEGER NOT NULL,
  used_at REAL NOT NULL,
  PRIMARY KEY(agent_id, counter));
CREATE TABLE conversations(
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  contact_id INTEGER NOT NULL REFERENCES contacts(id) ON DELETE CASCADE,
  identity_id INTEGER REFERENCES contact_identities(id) ON DELETE CASCADE,
  channel TEXT NOT NULL,
  status TEXT NOT NULL DEFAULT 'queued' CHECK(status IN ('queued', 'assigned', 'closed')),
  queue TEXT NOT NULL DEFAULT 'default',
  agent_id INTEGER REFERENCES agents(id) ON DELETE SET NULL,
  created_at REAL NOT NULL, updated_at REAL NOT NULL,
  closed_at REAL, language TEXT);
CREATE INDEX conversations_status ON conversations(status, queue);
CREATE INDEX conversations_identity ON conversations(identity_id, status);
CREATE INDEX conversations_contact ON conversations(contact_id);
CREATE INDEX conversations_agent ON conversations(agent_id, status);
CREATE INDEX conversations_closed ON conversations(closed_at) WHERE closed_at IS NOT NULL;
CREATE TABLE messages(
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  conversation_id INTEGER NOT NULL REFERENCES conversations(id) ON DELETE CASCADE,
  direction TEXT NOT NULL CHECK(direction IN ('in', 'out', 'note', 'system')),
  channel TEXT NOT NULL,
  agent_id INTEGER,
  external_index BLOB,
  external_id BLOB,
  reply_to_index BLOB,
  status TEXT NOT NULL,
  sensitive INTEGER NOT NULL DEFAULT 0,
  body BLOB NOT NULL,
  meta BLOB,
  created_at REAL NOT NULL,
  UNIQUE(channel, external_index));
CREATE INDEX messages_conversation ON messages(conversation_id, id);
CREATE TABLE attachments(
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  message_id INTEGER NOT NULL REFERENCES messages(id) ON DELETE CASCADE,
  idx INTEGER NOT NULL,
  kind TEXT NOT NULL,
  mime TEXT,
  meta BLOB,
  file TEXT,
  size INTEGER,
  UNIQUE(message_id, idx));
CREATE TABLE events(
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  conversation_id INTEGER NOT NULL REFERENCES conversations(id) ON DELETE CASCADE,
  kind TEXT NOT NULL,
  from_agent INTEGER, to_agent INTEGER,
  detail BLOB,
  created_at REAL NOT NULL,
  expires_at REAL);
CREATE INDEX events_conversation ON events(conversation_id, id);
CREATE INDEX events_expiry ON events(kind, expires_at) WHERE expires_at IS NOT NULL;
CREATE TABLE outbox(
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  conversation_id INTEGER REFERENCES conversations(id) ON DELETE CASCADE,
  message_id INTEGER REFERENCES messages(id) ON DELETE CASCADE,
  key_kind TEXT NOT NULL,
  key_owner INTEGER NOT NULL,
  channel TEXT NOT NULL,
  recipient_kind TEXT NOT NULL CHECK(recipient_kind IN ('contact', 'agent')),
  recipient_id INTEGER NOT NULL,
  recipient BLOB NOT NULL,
  body BLOB NOT NULL,
  reply_to BLOB,
  template INTEGER NOT NULL DEFAULT 0,
  meta BLOB,
  status TEXT NOT NULL DEFAULT 'pending'
    CHECK(status IN ('pending', 'held', 'sent', 'failed', 'cancelled')),
  attempts INTEGER NOT NULL DEFAULT 0,
  next_attempt_at REAL NOT NULL,
  last_error TEXT,
  external_index BLOB,
  created_at REAL NOT NULL,
  sent_at REAL);
CREATE INDEX outbox_due ON outbox(status, next_attempt_at);
CREATE INDEX outbox_conversation ON outbox(conversation_id, id);
CREATE INDEX outbox_message ON outbox(message_id) WHERE message_id IS NOT NULL;
CREATE INDEX outbox_key ON outbox(key_kind, key_owner);
CREATE INDEX outbox_external ON outbox(channel, external_index) WHERE external_index IS NOT NULL;
CREATE TABLE audit_log(
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  at REAL NOT NULL,
  actor TEXT NOT NULL,
  action TEXT NOT NULL,
  subject TEXT,
  detail BLOB,
  prev_hash BLOB NOT NULL,
  hash BLOB NOT NULL);
CREATE INDEX audit_log_subject ON audit_log(subject);
"""

# The audit log is append-only: each backend refuses UPDATE and DELETE (and on
# PostgreSQL TRUNCATE, which row triggers do not see) in its own dialect.
_M001_AUDIT_SQLITE = (
    "CREATE TRIGGER audit_log_no_update BEFORE UPDATE ON audit_log\n"
    "  BEGIN SELECT RAISE(ABORT, 'audit_log is append-only'); END;",
    "CREATE TRIGGER audit_log_no_delete BEFORE DELETE ON audit_log\n"
    "  BEGIN SELECT RAISE(ABORT, 'audit_log is append-only'); END;",
)
_M001_AUDIT_POSTGRESQL = (
    "CREATE FUNCTION audit_log_append_only() RETURNS trigger LANGUAGE plpgsql AS $$"
    " BEGIN RAISE EXCEPTION 'audit_log is append-only' USING ERRCODE = 'integrity_constraint_violation'; END $$",
    "CREATE TRIGGER audit_log_no_update BEFORE UPDATE ON audit_log FOR EACH ROW"
    " EXECUTE FUNCTION audit_log_append_only()",
    "CREATE TRIGGER audit_log_no_delete BEFORE DELETE ON audit_log FOR EACH ROW"
    " EXECUTE FUNCTION audit_log_append_only()",
    "CREATE TRIGGER audit_log_no_truncate BEFORE TRUNCATE ON audit_log FOR EACH STATEMENT"
    " EXECUTE FUNCTION audit_log_append_only()",
)


def m001_initial(db: Any) -> None:
    """The initial schema: every table of the contract (see COMMON schema)."""
    for statement in _split(_M001):
        db.execute(statement)
    sqlite_only(db, *_M001_AUDIT_SQLITE)
    postgresql_only(db, *_M001_AUDIT_POSTGRESQL)


def _split(script: str) -> list[str]:
    """Split a DDL script into statements, keeping trigger bodies whole."""
    statements: list[str] = []
    current: list[str] = []
    for line in script.strip().splitlines():
        current.append(line)
        text = "\n".join(current).strip()
        in_trigger = text.upper().startswith("CREATE TRIGGER")
        if text.endswith(";") and (not in_trigger or text.upper().endswith("END;")):
            statements.append(text)
            current = []
    if current and "\n".join(current).strip():
        statements.append("\n".join(current).strip())
    return statements


def m002_scrub_last_error(db: Any) -> None:
    """``outbox.last_error`` never holds an address or id (see :mod:`bridge.store.scrub`).

    SQLite: triggers calling the connection's ``carebridge_scrub`` function.
    PostgreSQL has no such function: the outbox repository scrubs every value
    before writing it (it does so on SQLite too; the triggers stay as a net).
    """
    sqlite_only(db, *scrub.M002_STATEMENTS)


register_migration(1, m001_initial)
register_migration(2, m002_scrub_last_error)

_M100 = (
    # Agent traffic is not a customer message, so it has no row in messages;
    # this keyed-hash table drops a platform's re-delivery of it.
    (
        "CREATE TABLE agent_inbound(channel TEXT NOT NULL, external_index BLOB NOT NULL,"
        " created_at REAL NOT NULL, PRIMARY KEY(channel, external_index))"
    ),
    # Every platform id of every part of a sent delivery: status reports and
    # an agent's quoted reply name any part.
    (
        "CREATE TABLE outbox_ids(channel TEXT NOT NULL, external_index BLOB NOT NULL,"
        " outbox_id INTEGER NOT NULL REFERENCES outbox(id) ON DELETE CASCADE, part INTEGER NOT NULL,"
        " PRIMARY KEY(channel, external_index))"
    ),
    "CREATE INDEX outbox_ids_outbox ON outbox_ids(outbox_id)",
    # Round-robin rotation survives restarts.
    (
        "CREATE TABLE routing_state(agent_id INTEGER PRIMARY KEY REFERENCES agents(id) ON DELETE CASCADE,"
        " last_assigned_at REAL)"
    ),
    # "Once per period" notices: queued notice per waiting period, one
    # re-engagement template per closed window, one warning per agent window.
    (
        "CREATE TABLE relay_flags(name TEXT NOT NULL, subject TEXT NOT NULL, at REAL NOT NULL,"
        " PRIMARY KEY(name, subject))"
    ),
    # Why a row is held: 'window' (released when the person writes again) or
    # 'channel' (released when the channel is enabled again).
    "ALTER TABLE outbox ADD COLUMN hold_reason TEXT",
    # Strict order per recipient stream.
    "CREATE INDEX outbox_recipient ON outbox(recipient_kind, recipient_id, channel, id)",
    "CREATE INDEX outbox_open ON outbox(status, id) WHERE status IN ('pending', 'held')",
)


def m100_relay(db: sqlite_utils.Database) -> None:
    """Relay bookkeeping: agent dedupe, sent ids, rotation, flags, hold reasons."""
    for statement in _M100:
        db.execute(statement)


def m101_early_statuses(db: sqlite_utils.Database) -> None:
    """Status reports that arrive before the send they describe was recorded."""
    db.execute(
        "CREATE TABLE early_statuses(channel TEXT NOT NULL, external_index BLOB NOT NULL, status TEXT NOT NULL,"
        " error_code TEXT, error_title TEXT, at REAL NOT NULL, PRIMARY KEY(channel, external_index, status))"
    )


def m102_early_status_window(db: sqlite_utils.Database) -> None:
    """Early status reports keep the channel's neutral "reply window closed" mark (``StatusUpdate.window_closed``)."""
    db.execute("ALTER TABLE early_statuses ADD COLUMN window_closed INTEGER NOT NULL DEFAULT 0")


register_migration(100, m100_relay)
register_migration(101, m101_early_statuses)
register_migration(102, m102_early_status_window)

_M110 = (
    # A /secure request waiting for the customer's address and code: one per
    # conversation; text and address sealed under the contact's key, the code
    # only as a blind index. Rows are deleted once the text is mailed or expires.
    (
        "CREATE TABLE secure_pending(id INTEGER PRIMARY KEY AUTOINCREMENT,"
        " conversation_id INTEGER NOT NULL UNIQUE REFERENCES conversations(id) ON DELETE CASCADE,"
        " contact_id INTEGER NOT NULL REFERENCES contacts(id) ON DELETE CASCADE,"
        " agent_id INTEGER REFERENCES agents(id) ON DELETE SET NULL,"
        " state TEXT NOT NULL CHECK(state IN ('address', 'code')),"
        " secret BLOB NOT NULL, address BLOB, code_index BLOB,"
        " attempts INTEGER NOT NULL DEFAULT 0, codes_sent INTEGER NOT NULL DEFAULT 0,"
        " created_at REAL NOT NULL, expires_at REAL NOT NULL)"
    ),
    "CREATE INDEX secure_pending_expiry ON secure_pending(expires_at)",
    # Outbox rows that carry a /secure text or code: their bodies are overwritten once delivered.
    (
        "CREATE TABLE secure_mails(outbox_id INTEGER PRIMARY KEY REFERENCES outbox(id) ON DELETE CASCADE,"
        " created_at REAL NOT NULL)"
    ),
)


def m110_secure(db: sqlite_utils.Database) -> None:
    """Pending ``/secure`` deliveries and the mails whose text is erased after delivery."""
    for statement in _M110:
        db.execute(statement)


register_migration(110, m110_secure)


def m140_outbox_mentions(db: sqlite_utils.Database) -> None:
    """Agent notices that name several customers at once (``/list``) and so are sealed under the agent's key.

    Erasure and retention delete every outbox row that names a conversation
    they remove; a notice about one conversation is sealed under its
    customer's key instead and needs no row here.
    """
    db.execute(
        "CREATE TABLE outbox_mentions(outbox_id INTEGER NOT NULL REFERENCES outbox(id) ON DELETE CASCADE,"
        " conversation_id INTEGER NOT NULL REFERENCES conversations(id) ON DELETE CASCADE,"
        " PRIMARY KEY(outbox_id, conversation_id))"
    )
    db.execute("CREATE INDEX outbox_mentions_conversation ON outbox_mentions(conversation_id)")


register_migration(140, m140_outbox_mentions)


_M120 = (
    # Console sessions: only a hash of the cookie token is kept, so the
    # database file alone cannot be used to take over a session.
    (
        "CREATE TABLE console_sessions(id INTEGER PRIMARY KEY AUTOINCREMENT, token_hash BLOB NOT NULL UNIQUE,"
        " agent_id INTEGER NOT NULL REFERENCES agents(id) ON DELETE CASCADE,"
        " created_at REAL NOT NULL, expires_at REAL NOT NULL)"
    ),
    "CREATE INDEX console_sessions_agent ON console_sessions(agent_id)",
    "CREATE INDEX console_sessions_expiry ON console_sessions(expires_at)",
    # Failed console logins by client address or by an unknown username, each
    # as a keyed hash: the lock-outs that are not an agent's own (theirs is
    # counted from the audit log) survive restarts without storing who tried.
    (
        "CREATE TABLE login_failures(id INTEGER PRIMARY KEY AUTOINCREMENT, scope TEXT NOT NULL,"
        " key_index BLOB NOT NULL, at REAL NOT NULL)"
    ),
    "CREATE INDEX login_failures_key ON login_failures(scope, key_index, at)",
    "CREATE INDEX login_failures_at ON login_failures(at)",
)


def m120_console_sessions(db: sqlite_utils.Database) -> None:
    """Console sessions (hashed tokens) and per-address/per-name login failure counts."""
    for statement in _M120:
        db.execute(statement)


register_migration(120, m120_console_sessions)


def m130_channel_state(db: sqlite_utils.Database) -> None:
    """What a channel keeps across restarts (an IMAP folder's UIDVALIDITY and last UID), sealed."""
    db.execute(
        "CREATE TABLE channel_state(channel TEXT NOT NULL, name TEXT NOT NULL, value BLOB NOT NULL,"
        " updated_at REAL NOT NULL, PRIMARY KEY(channel, name))"
    )


register_migration(130, m130_channel_state)


# --- Migration 103: the outbox's line, so that picking the next deliveries costs the same whatever the history.
#
# ``in_line = 1`` marks the rows first in line for their recipient stream
# (recipient kind, recipient id, channel): the oldest pending row, and the
# oldest pending template (a re-engagement template waits only for earlier
# templates). At most two rows per stream carry it, always pending ones. The
# triggers keep it true on every insert, status change and delete (a
# conversation's cascade included), whoever makes the change; each firing
# costs a few index seeks on the partial indexes of pending rows, never a
# scan of a stream's history. The worker's pick reads ``outbox_line`` only.
def _stream(row: str) -> str:
    return f"recipient_kind = {row}.recipient_kind AND recipient_id = {row}.recipient_id AND channel = {row}.channel"


def _head(row: str, *, template: bool = False) -> str:
    """The id that must be in line in ``row``'s stream (its oldest pending row, or template); NULL if none.

    A plain scalar ``MIN`` so that SQLite reads it with one seek in the partial index.
    """
    only = " AND template = 1" if template else ""
    return f"(SELECT MIN(id) FROM outbox WHERE status = 'pending'{only} AND {_stream(row)})"


def _relink(row: str, *, turns: bool = False) -> str:
    """Trigger body: clear the marks that are no longer true in ``row``'s stream, then set the right ones.

    :param turns: first wait for the stream's turn (PostgreSQL, see ``_M103_TURN``).
    """
    first, template = _head(row), _head(row, template=True)
    turn = _M103_TURN.format(row=row) if turns else ""
    return (
        f"{turn}UPDATE outbox SET in_line = 0 WHERE in_line = 1 AND {_stream(row)}"
        f" AND id IS NOT {first} AND id IS NOT {template};"
        f" UPDATE outbox SET in_line = 1 WHERE in_line = 0 AND id IN ({first}, {template});"
    )


_M103 = (
    "ALTER TABLE outbox ADD COLUMN in_line INTEGER NOT NULL DEFAULT 0",
    # Set when a send's answer was lost (or the send was cut off at shutdown):
    # the platform may have the message, so a later send is a possible duplicate.
    "ALTER TABLE outbox ADD COLUMN uncertain_at REAL",
    "CREATE INDEX outbox_pending_stream ON outbox(recipient_kind, recipient_id, channel, id) WHERE status = 'pending'",
    (
        "CREATE INDEX outbox_pending_templates ON outbox(recipient_kind, recipient_id, channel, id)"
        " WHERE status = 'pending' AND template = 1"
    ),
    "CREATE INDEX outbox_held_stream ON outbox(recipient_kind, recipient_id, channel, id) WHERE status = 'held'",
    "CREATE INDEX outbox_line ON outbox(channel, next_attempt_at, id) WHERE in_line = 1",
    "CREATE INDEX outbox_line_stream ON outbox(recipient_kind, recipient_id, channel) WHERE in_line = 1",
    # The line replaces the (status, next_attempt_at) index, which led every pick through the history.
    "DROP INDEX IF EXISTS outbox_due",
    (
        "UPDATE outbox SET in_line = 1 WHERE status = 'pending' AND (id = (SELECT MIN(p.id) FROM outbox p"
        " WHERE p.status = 'pending' AND p.recipient_kind = outbox.recipient_kind"
        " AND p.recipient_id = outbox.recipient_id AND p.channel = outbox.channel)"
        " OR (template = 1 AND id = (SELECT MIN(t.id) FROM outbox t WHERE t.status = 'pending' AND t.template = 1"
        " AND t.recipient_kind = outbox.recipient_kind AND t.recipient_id = outbox.recipient_id"
        " AND t.channel = outbox.channel)))"
    ),
)

# Several daemons on one PostgreSQL database change a stream from several
# transactions at once, where SQLite's one writer takes turns by itself: a
# trigger that did not see another's uncommitted change (a new row, the head
# sent) could leave a stream with no row in line for good. So on PostgreSQL
# each firing first takes the stream's transaction-scoped advisory lock; the
# writer runs READ COMMITTED, so the trigger's statements after the lock see
# every change committed by whoever held it before.
_M103_TURN = (
    "SELECT pg_advisory_xact_lock(hashtextextended('carebridge:outbox-line:' || {row}.recipient_kind"
    " || ':' || {row}.recipient_id || ':' || {row}.channel, 0)); "
)


def _m103_triggers(*, turns: bool) -> tuple[str, ...]:
    """The triggers that keep the line (the same on both backends but for ``turns``)."""
    return (
        (
            "CREATE TRIGGER outbox_line_insert AFTER INSERT ON outbox WHEN NEW.status = 'pending'"
            f" BEGIN {_relink('NEW', turns=turns)} END"
        ),
        (
            "CREATE TRIGGER outbox_line_status AFTER UPDATE OF status ON outbox"
            " WHEN OLD.status IS NOT NEW.status AND (OLD.status = 'pending' OR NEW.status = 'pending')"
            f" BEGIN {_relink('NEW', turns=turns)} END"
        ),
        (
            "CREATE TRIGGER outbox_line_delete AFTER DELETE ON outbox WHEN OLD.status = 'pending'"
            f" BEGIN {_relink('OLD', turns=turns)} END"
        ),
    )


def m103_outbox_line(db: Any) -> None:
    """The outbox's line (``in_line`` kept by triggers), partial indexes of open rows, ``uncertain_at``."""
    for statement in (*_M103, *_m103_triggers(turns=dialect(db) == "postgresql")):
        db.execute(statement)


register_migration(103, m103_outbox_line)


def m190_outbox_leases(db: Any) -> None:
    """Leases on outbox rows: several daemons on one database send each delivery once.

    A daemon claims the rows it is about to send (``lease_owner``, ``lease_until``);
    another daemon takes a row only once its lease has run out (its daemon died).
    """
    db.execute("ALTER TABLE outbox ADD COLUMN lease_owner TEXT")
    db.execute("ALTER TABLE outbox ADD COLUMN lease_until REAL")


register_migration(190, m190_outbox_leases)
