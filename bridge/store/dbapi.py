"""What the store's key and session code needs of any database connection.

Why a module of its own: the keyring and the sessions run the same
statements on SQLite and on PostgreSQL connections (the latter behind a
translating wrapper), so they are typed against this protocol, and they
recognise a unique-key violation by the class name DB-API 2.0 gives it in
every driver rather than by one driver's class.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any, Protocol


class Connection(Protocol):
    """Statements in SQLite's dialect (``?`` placeholders); a backend translates what it must."""

    def execute(self, sql: str, params: Sequence[Any] = ..., /) -> Any: ...

    def executemany(self, sql: str, rows: Iterable[Sequence[Any]], /) -> Any: ...


def is_integrity_error(err: BaseException) -> bool:
    """Whether ``err`` is a constraint violation (``IntegrityError`` in sqlite3, psycopg, …)."""
    return any(cls.__name__ == "IntegrityError" for cls in type(err).__mro__)
