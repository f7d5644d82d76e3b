"""psycopg connections that speak the store's SQL: translation and SQLite-like value types.

The repositories pass Python values as SQLite takes them (``True`` for an
INTEGER flag) and expect what SQLite returns (``int`` from ``SUM`` of
integers, ``float`` from ``AVG``); the adapters here make PostgreSQL answer
the same way, so no repository needs to know which backend it runs on.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import psycopg
from psycopg.adapt import Dumper, Loader
from psycopg.pq import Format

from bridge.store.postgres import dialect

APPLICATION = "carebridge"


class _BoolAsInt(Dumper):
    """Python booleans go into the schema's INTEGER flag columns as 0/1, as on SQLite."""

    format = Format.TEXT
    oid = psycopg.postgres.types["int8"].oid

    def dump(self, obj: Any) -> bytes:
        return b"1" if obj else b"0"


class _NumericAsNumber(Loader):
    """``numeric`` results (``SUM``/``AVG`` of integers) as int when whole, else float, as on SQLite."""

    format = Format.TEXT

    def load(self, data: Any) -> int | float:
        text = bytes(data).decode()
        if text in ("NaN", "Infinity", "-Infinity"):
            return float(text)
        number = float(text)
        return int(text) if "." not in text and "e" not in text.lower() else number


def configure(conn: psycopg.Connection[Any]) -> None:
    """Adapters of one connection (also the pool's ``configure`` callback)."""
    conn.adapters.register_dumper(bool, _BoolAsInt)
    conn.adapters.register_loader("numeric", _NumericAsNumber)


CONNECT_TIMEOUT = 10  # seconds, unless the DSN says otherwise: an unreachable server must not hang start-up


def connect_kwargs(dsn: str) -> dict[str, Any]:
    """Connection settings besides the DSN: autocommit, our application name, a connect timeout."""
    kwargs: dict[str, Any] = {"autocommit": True, "application_name": APPLICATION}
    try:
        given = psycopg.conninfo.conninfo_to_dict(dsn)
    except psycopg.ProgrammingError:
        given = {}
    if "connect_timeout" not in given:
        kwargs["connect_timeout"] = CONNECT_TIMEOUT
    return kwargs


def connect(dsn: str) -> psycopg.Connection[Any]:
    """An autocommit connection: the store issues BEGIN, SAVEPOINT and COMMIT itself."""
    conn = psycopg.connect(dsn, **connect_kwargs(dsn))
    configure(conn)
    return conn


class PgConnection:
    """A psycopg connection behind the store's :class:`bridge.store.dbapi.Connection` protocol."""

    __slots__ = ("raw",)

    def __init__(self, raw: psycopg.Connection[Any]) -> None:
        self.raw = raw

    def execute(self, sql: str, params: Sequence[Any] = (), /) -> psycopg.Cursor[Any]:
        """Run one statement written in the store's dialect."""
        return self.raw.execute(dialect.statement(sql), tuple(params))

    def executemany(self, sql: str, rows: Iterable[Sequence[Any]], /) -> psycopg.Cursor[Any]:
        """Run one statement for each row of parameters."""
        cursor = self.raw.cursor()
        cursor.executemany(dialect.statement(sql), [tuple(r) for r in rows])
        return cursor

    def native(self, sql: str, params: Sequence[Any] | None = None, /) -> psycopg.Cursor[Any]:
        """Run a statement already in PostgreSQL's dialect (``%s`` placeholders; none: taken as it is)."""
        return self.raw.execute(sql, None if params is None else tuple(params))
