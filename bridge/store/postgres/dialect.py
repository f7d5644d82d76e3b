"""SQLite's dialect, as the store writes it, turned into PostgreSQL.

Why a translator: the repositories and the numbered migrations are written
once, in SQLite's dialect (``?`` placeholders, ``INTEGER PRIMARY KEY
AUTOINCREMENT``, ``BLOB``, ``REAL``, triggers with ``WHEN``/``RAISE``), and
every migration added later must run on PostgreSQL without its author's
help. Two entry points:

- :func:`statement` for the statements repositories run at every request
  (placeholders, ``%`` escaping, ``temp.`` tables, null-safe ``IS``);
  cached, since the same few hundred statements come back all day;
- :func:`ddl` for migration statements: column types, serial ids, foreign
  keys (made deferrable and added after the migration's tables exist, since
  SQLite allows forward references), and triggers (a PL/pgSQL function per
  trigger with the same ``WHEN`` and body).

The scanner knows string literals, quoted identifiers and comments, so
nothing inside a literal is ever rewritten.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass

_TOKEN = re.compile(
    r"""
    (?P<string>'(?:[^']|'')*')
  | (?P<ident>"(?:[^"]|"")*")
  | (?P<comment>--[^\n]*|/\*.*?\*/)
  | (?P<other>[^'"\-/]+|[\-/])
    """,
    re.VERBOSE | re.DOTALL,
)

# Null-safe comparisons: SQLite's ``a IS b`` / ``a IS NOT b`` on any values.
_IS_NOT = re.compile(r"\bIS\s+NOT\s+(?!NULL\b|TRUE\b|FALSE\b|DISTINCT\b|UNKNOWN\b)", re.IGNORECASE)
_IS = re.compile(r"\bIS\s+(?!NOT\b|NULL\b|TRUE\b|FALSE\b|DISTINCT\b|UNKNOWN\b)", re.IGNORECASE)
_TEMP = re.compile(r"\btemp\.", re.IGNORECASE)

_AUTOINCREMENT = re.compile(r"\bINTEGER\s+PRIMARY\s+KEY\s+AUTOINCREMENT\b", re.IGNORECASE)
_ID_ROWID = re.compile(r"^(\s*id\s+)INTEGER\s+PRIMARY\s+KEY(?:\s+AUTOINCREMENT)?\b", re.IGNORECASE)
_TYPES = (
    (re.compile(r"\bINTEGER\b", re.IGNORECASE), "BIGINT"),
    (re.compile(r"\bINT\b", re.IGNORECASE), "BIGINT"),
    (re.compile(r"\bREAL\b", re.IGNORECASE), "DOUBLE PRECISION"),
    (re.compile(r"\bFLOAT\b", re.IGNORECASE), "DOUBLE PRECISION"),
    (re.compile(r"\bDOUBLE\b(?!\s+PRECISION)", re.IGNORECASE), "DOUBLE PRECISION"),
    (re.compile(r"\bBLOB\b", re.IGNORECASE), "BYTEA"),
    (re.compile(r"\bDATETIME\b", re.IGNORECASE), "TEXT"),
)
_TABLE_OPTIONS = re.compile(r"\)\s*((?:WITHOUT\s+ROWID|STRICT)\s*,?\s*)+;?\s*$", re.IGNORECASE)
_CREATE_TABLE = re.compile(r"^\s*CREATE\s+(?:TEMP(?:ORARY)?\s+)?TABLE\s+(?:IF\s+NOT\s+EXISTS\s+)?(\w+)\s*\(", re.I)
_ADD_COLUMN = re.compile(r"^\s*ALTER\s+TABLE\s+\w+\s+ADD\s+(?:COLUMN\s+)?", re.IGNORECASE)
_REFERENCES = re.compile(
    r"\s*\bREFERENCES\s+(\w+)\s*(?:\(([^)]*)\))?"
    r"((?:\s+ON\s+(?:DELETE|UPDATE)\s+(?:CASCADE|SET\s+NULL|SET\s+DEFAULT|RESTRICT|NO\s+ACTION))*)"
    r"(?:\s+(?:NOT\s+)?DEFERRABLE(?:\s+INITIALLY\s+(?:DEFERRED|IMMEDIATE))?)?",
    re.IGNORECASE,
)
_TABLE_FK = re.compile(r"^\s*(?:CONSTRAINT\s+\w+\s+)?FOREIGN\s+KEY\s*\(([^)]*)\)", re.IGNORECASE)
_TRIGGER = re.compile(
    r"^\s*CREATE\s+(?:TEMP(?:ORARY)?\s+)?TRIGGER\s+(?:IF\s+NOT\s+EXISTS\s+)?(?P<name>\w+)\s+"
    r"(?P<when>BEFORE|AFTER|INSTEAD\s+OF)\s+(?P<event>INSERT|DELETE|UPDATE(?:\s+OF\s+[\w\s,]+?)?)\s+"
    r"ON\s+(?P<table>\w+)\s+(?:FOR\s+EACH\s+ROW\s+)?(?:WHEN\s+(?P<cond>.*?)\s+)?BEGIN\b(?P<body>.*)\bEND\s*;?\s*$",
    re.IGNORECASE | re.DOTALL,
)
_DROP_TRIGGER = re.compile(r"^\s*DROP\s+TRIGGER\s+(IF\s+EXISTS\s+)?(\w+)\s*;?\s*$", re.IGNORECASE)
_RAISE = re.compile(r"^\s*SELECT\s+RAISE\s*\(\s*(?:ABORT|FAIL|ROLLBACK)\s*,\s*('(?:[^']|'')*')\s*\)\s*$", re.I | re.S)
_RAISE_IGNORE = re.compile(r"^\s*SELECT\s+RAISE\s*\(\s*IGNORE\s*\)\s*$", re.IGNORECASE)
_PRAGMA = re.compile(r"^\s*PRAGMA\b", re.IGNORECASE)
_SELECT = re.compile(r"^\s*SELECT\b", re.IGNORECASE)


@dataclass(frozen=True)
class ForeignKey:
    """A foreign key taken out of a ``CREATE TABLE``, added once the migration's tables exist."""

    table: str
    columns: str
    target: str
    target_columns: str
    actions: str

    def statement(self) -> str:
        """The ``ALTER TABLE`` that adds it (deferrable, so a bulk copy may order rows freely)."""
        target = f"{self.target}({self.target_columns})" if self.target_columns else self.target
        return (
            f"ALTER TABLE {self.table} ADD FOREIGN KEY ({self.columns}) REFERENCES {target}{self.actions}"
            " DEFERRABLE INITIALLY IMMEDIATE"
        )


@dataclass(frozen=True)
class Translated:
    """One migration statement in PostgreSQL: what to run now, and foreign keys to add afterwards.

    ``drop_trigger`` names a trigger to drop (its table is looked up in the
    catalogue, since PostgreSQL's ``DROP TRIGGER`` needs it and SQLite's has none).
    """

    statements: tuple[str, ...]
    foreign_keys: tuple[ForeignKey, ...] = ()
    drop_trigger: tuple[str, bool] | None = None


def _pieces(sql: str) -> list[tuple[str, str]]:
    """``(kind, text)`` pieces of ``sql``: string/ident/comment literals and the code between them."""
    out: list[tuple[str, str]] = []
    for match in _TOKEN.finditer(sql):
        kind = match.lastgroup or "other"
        if kind == "other" and out and out[-1][0] == "other":
            out[-1] = ("other", out[-1][1] + match.group())
        else:
            out.append((kind, match.group()))
    return out


def _code(sql: str, rewrite: object) -> str:
    """Apply ``rewrite`` (a str -> str function) to the code outside literals and comments."""
    assert callable(rewrite)
    return "".join(rewrite(text) if kind == "other" else text for kind, text in _pieces(sql))


def _null_safe(code: str) -> str:
    return _IS.sub("IS NOT DISTINCT FROM ", _IS_NOT.sub("IS DISTINCT FROM ", code))


def _expression(code: str) -> str:
    return _TEMP.sub("pg_temp.", _null_safe(code))


@functools.lru_cache(maxsize=4096)
def statement(sql: str) -> str:
    """A repository statement for psycopg: ``?`` → ``%s``, ``%`` doubled, ``temp.`` → ``pg_temp.``, null-safe ``IS``."""

    def rewrite(code: str) -> str:
        return _expression(code).replace("?", "%s")

    # psycopg reads placeholders everywhere, literals included: every other % is doubled.
    return _code(sql.replace("%", "%%"), rewrite)


def _types(code: str) -> str:
    code = _AUTOINCREMENT.sub("BIGSERIAL PRIMARY KEY", code)
    for pattern, replacement in _TYPES:
        code = pattern.sub(replacement, code)
    return code


def _split_top(body: str) -> list[str]:
    """Split a table body on its top-level commas (not those inside parentheses or literals)."""
    items: list[str] = []
    depth = 0
    current: list[str] = []
    for kind, text in _pieces(body):
        if kind != "other":
            current.append(text)
            continue
        for char in text:
            if char == "(":
                depth += 1
            elif char == ")":
                depth -= 1
            if char == "," and depth == 0:
                items.append("".join(current))
                current = []
            else:
                current.append(char)
    items.append("".join(current))
    return items


def _create_table(sql: str, table: str) -> Translated:
    head_end = _CREATE_TABLE.match(sql)
    assert head_end is not None
    open_at = head_end.end() - 1
    close_at = sql.rstrip().rstrip(";").rstrip()
    options = _TABLE_OPTIONS.search(close_at)
    if options is not None:
        close_at = close_at[: options.start() + 1]
    body = close_at[open_at + 1 : -1]
    items: list[str] = []
    keys: list[ForeignKey] = []
    for position, item in enumerate(_split_top(body)):
        fk = _TABLE_FK.match(item)
        refs = _REFERENCES.search(item)
        if refs is not None:
            columns = fk.group(1).strip() if fk else item.split()[0]
            keys.append(ForeignKey(table, columns, refs.group(1), (refs.group(2) or "").strip(), refs.group(3) or ""))
            if fk:
                continue
            item = item[: refs.start()] + item[refs.end() :]
        elif position == 0 or item.lstrip().lower().startswith("id "):
            # SQLite numbers an ``id INTEGER PRIMARY KEY`` row left without one: a sequence here.
            item = _ID_ROWID.sub(r"\1BIGSERIAL PRIMARY KEY", item)
        items.append(_code(item, _types))
    return Translated((f"{sql[:open_at]}({','.join(items)})",), tuple(keys))


def _trigger(match: re.Match[str]) -> Translated:
    name, table = match.group("name"), match.group("table")
    timing = re.sub(r"\s+", " ", match.group("when").upper())
    event = re.sub(r"\s+", " ", match.group("event"))
    kind = event.split()[0].upper()
    passed = "OLD" if kind == "DELETE" else "NEW"
    done = f"RETURN {passed};" if timing != "AFTER" else "RETURN NULL;"
    lines: list[str] = []
    cond = match.group("cond")
    if cond:
        lines.append(f"IF ({_code(cond, _expression)}) IS NOT TRUE THEN {done} END IF;")
    for raw in _split_statements(match.group("body")):
        raised = _RAISE.match(raw)
        if raised:
            lines.append(f"RAISE EXCEPTION {raised.group(1)};")
        elif _RAISE_IGNORE.match(raw):
            lines.append("RETURN NULL;")
        elif _SELECT.match(raw):
            lines.append("PERFORM " + _code(_SELECT.sub("", raw, count=1), _expression) + ";")
        else:
            lines.append(_code(raw, _expression) + ";")
    lines.append(done)
    function = (
        f"CREATE OR REPLACE FUNCTION {name}_fn() RETURNS trigger LANGUAGE plpgsql AS $trigger$\nBEGIN\n  "
        + "\n  ".join(lines)
        + "\nEND\n$trigger$"
    )
    trigger = f"CREATE TRIGGER {name} {timing} {event} ON {table} FOR EACH ROW EXECUTE FUNCTION {name}_fn()"
    return Translated((function, trigger))


def _split_statements(body: str) -> list[str]:
    """The statements of a trigger body (split on top-level semicolons)."""
    out: list[str] = []
    current: list[str] = []
    for kind, text in _pieces(body):
        if kind != "other":
            current.append(text)
            continue
        parts = text.split(";")
        for index, part in enumerate(parts):
            current.append(part)
            if index < len(parts) - 1:
                out.append("".join(current))
                current = []
    out.append("".join(current))
    return [s.strip() for s in out if s.strip()]


def ddl(sql: str) -> Translated:
    """Translate one migration statement (SQLite dialect) into PostgreSQL."""
    if _PRAGMA.match(sql):
        return Translated(())
    trigger = _TRIGGER.match(sql)
    if trigger is not None:
        return _trigger(trigger)
    dropped = _DROP_TRIGGER.match(sql)
    if dropped is not None:
        return Translated((), drop_trigger=(dropped.group(2), bool(dropped.group(1))))
    table = _CREATE_TABLE.match(sql)
    if table is not None:
        return _create_table(sql.strip(), table.group(1))
    if _ADD_COLUMN.match(sql):
        refs = _REFERENCES.search(sql)
        if refs is not None:  # the target exists already; keep it inline but deferrable
            sql = sql[: refs.end()] + " DEFERRABLE INITIALLY IMMEDIATE" + sql[refs.end() :]
        return Translated((_code(sql, _types),))
    return Translated((_code(sql, _expression),))
