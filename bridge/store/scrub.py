"""Keep personal data out of the few plaintext text columns: ``outbox.last_error``.

Delivery errors come from platforms and mail servers, and their text may name
the recipient ("550 <ann@example.org>: no such user", "not a WhatsApp number:
+31 6 1234 5678", a PSID or a platform message id). ``last_error`` stays
plaintext so an admin can read why deliveries fail, so instead of sealing it
the store guarantees it holds no address or id: migration 2 adds triggers that
pass every value written to it through :func:`scrub_error`, which each store
connection registers as the SQL function ``carebridge_scrub``. The guarantee
therefore holds for every writer, whatever module builds the error text.
"""

from __future__ import annotations

import re
import sqlite3

SQL_FUNCTION = "carebridge_scrub"
REDACTED = "[redacted]"

# An email address (anything@anything.tld), also inside <...> or quotes.
_EMAIL = re.compile(r"[^\s@<>()\[\]{}\"',;:]+@[^\s@<>()\[\]{}\"',;:]+")
# Platform message ids: wamid.<base64>, m_<id> (Messenger mids), <...@...> Message-IDs are emails above.
_MESSAGE_ID = re.compile(r"\b(?:wamid\.|m_)[A-Za-z0-9+/=_-]+")
# Phone numbers and PSIDs: eight or more digits, optionally after +, with the usual separators.
# Shorter runs stay (Graph error codes and subcodes have at most 7 digits).
_NUMBER = re.compile(r"\+?\d(?:[ ().-]{0,2}\d){7,}")
# Long opaque tokens (base64/hex ids, access tokens) that contain a digit.
_TOKEN = re.compile(r"\b(?=[A-Za-z0-9+/=_-]*\d)[A-Za-z0-9+/=_-]{24,}")


def scrub_error(text: str | None) -> str | None:
    """Return ``text`` with email addresses, phone numbers, ids and tokens replaced by ``[redacted]``."""
    if text is None:
        return None
    text = str(text)
    for pattern in (_EMAIL, _MESSAGE_ID, _TOKEN, _NUMBER):
        text = pattern.sub(REDACTED, text)
    return text


def register(conn: sqlite3.Connection) -> None:
    """Make ``carebridge_scrub(text)`` available to the triggers on this connection."""
    conn.create_function(SQL_FUNCTION, 1, scrub_error, deterministic=True)


# Migration 2: scrub on every INSERT and every UPDATE that sets last_error, and
# scrub what earlier versions stored. AFTER triggers rewrite the row; SQLite does
# not run a trigger recursively unless recursive_triggers is on (it is not).
M002_STATEMENTS = (
    f"UPDATE outbox SET last_error = {SQL_FUNCTION}(last_error) WHERE last_error IS NOT NULL",
    "CREATE TRIGGER outbox_last_error_insert AFTER INSERT ON outbox"
    f" WHEN NEW.last_error IS NOT NULL AND NEW.last_error IS NOT {SQL_FUNCTION}(NEW.last_error)"
    f" BEGIN UPDATE outbox SET last_error = {SQL_FUNCTION}(NEW.last_error) WHERE id = NEW.id; END",
    "CREATE TRIGGER outbox_last_error_update AFTER UPDATE OF last_error ON outbox"
    f" WHEN NEW.last_error IS NOT NULL AND NEW.last_error IS NOT {SQL_FUNCTION}(NEW.last_error)"
    f" BEGIN UPDATE outbox SET last_error = {SQL_FUNCTION}(NEW.last_error) WHERE id = NEW.id; END",
)
