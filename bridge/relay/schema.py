"""The relay's own tables, added through the store's numbered migrations.

The store runs ``MIGRATIONS`` (numbers 100–199 belong to the relay) after
its own, each in one transaction. Append new ones; never edit a released one.
"""

from __future__ import annotations

import sqlite_utils

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


MIGRATIONS = [(100, m100_relay), (101, m101_early_statuses)]
