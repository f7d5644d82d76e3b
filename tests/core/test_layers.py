"""The store is the only owner of SQL: no statement, cursor call or database import anywhere else.

The import contract (`lint-imports`, run by `make check`) keeps the layers and
forbids importing sqlite3/sqlite_utils outside the store; this test also
catches SQL text and ``.execute()`` calls that an import check cannot see
(a statement built in the relay and handed to the store would still be SQL
outside the store).
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
_STATEMENT = re.compile(r"^\s*(SELECT|INSERT|UPDATE|DELETE|CREATE|ALTER|DROP|PRAGMA|WITH|REPLACE)\b", re.I)
_CLAUSE = re.compile(r"\b(FROM|INTO|TABLE|SET|WHERE)\b")
_DATABASES = {"sqlite3", "sqlite_utils", "psycopg", "psycopg_pool", "asyncpg"}


def _sql_places(path: Path) -> list[str]:
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            if node.func.attr in ("execute", "executemany", "executescript"):
                found.append(f"{node.lineno}: .{node.func.attr}()")
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""]
            found += [f"{node.lineno}: import {n}" for n in names if n.split(".")[0] in _DATABASES]
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            text = node.value
            if len(text) > 12 and _STATEMENT.match(text) and _CLAUSE.search(text.upper()):
                found.append(f"{node.lineno}: SQL text {text[:40]!r}")
    return found


def _modules_outside_the_store() -> list[Path]:
    core = [p for p in (ROOT / "bridge").rglob("*.py") if (ROOT / "bridge" / "store") not in p.parents]
    plugins = [p for p in (ROOT / "plugins").rglob("*.py") if "tests" not in p.parts and ".venv" not in p.parts]
    return sorted(core + plugins)


def test_no_sql_outside_the_store() -> None:
    offenders = {
        str(path.relative_to(ROOT)): places for path in _modules_outside_the_store() if (places := _sql_places(path))
    }
    assert offenders == {}


def test_the_scan_finds_sql_where_there_is_some() -> None:
    """The check above must be able to fail: the store's own repositories are full of SQL."""
    assert _sql_places(ROOT / "bridge" / "store" / "repos" / "outbox.py")
