"""Helpers shared by the store tests (no tests here): settings, raw-file access, CLI runs."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bridge.config import StoreConfig
from bridge.store.keyfile import encode_key, load_master_key

ROOT = Path(__file__).resolve().parents[2]


def settings(tmp_path: Path, key: str | None = None, synchronous: str = "full") -> StoreConfig:
    """A StoreConfig for a store under tmp_path (key file next to it by default)."""
    return StoreConfig(
        path=tmp_path / "var" / "carebridge.db",
        key=key or f"file:{tmp_path / 'var' / 'master.key'}",
        synchronous=synchronous,
    )


@dataclass(frozen=True)
class Backend:
    """One store backend under test: ``sqlite`` (a file under tmp_path) or ``postgresql`` (a fresh database)."""

    name: str
    dsn: str = ""
    server: Any = None

    @property
    def postgresql(self) -> bool:
        return self.name == "postgresql"

    def settings(self, tmp_path: Path, key: str | None = None, synchronous: str = "full") -> StoreConfig:
        """Settings of a store under tmp_path (media and key file there with either backend)."""
        base = settings(tmp_path, key=key, synchronous=synchronous)
        if not self.postgresql:
            return base
        return StoreConfig(path=base.path, key=base.key, synchronous=synchronous, backend="postgresql", dsn=self.dsn)

    def raw(self, tmp_path: Path) -> Any:
        """A plain connection to the store's database that takes the store's SQL (``?`` placeholders)."""
        if not self.postgresql:
            return raw(settings(tmp_path).path)
        from bridge.store.postgres.connection import PgConnection, connect

        return _ClosingPg(PgConnection(connect(self.dsn)))

    def write_config(self, tmp_path: Path, key: str = "file:var/master.key") -> Path:
        """A minimal bridge.toml for this backend (CLI subprocess tests)."""
        path = write_config(tmp_path, key)
        if self.postgresql:
            with path.open("a", encoding="utf-8") as handle:
                handle.write(f'backend = "postgresql"\ndsn = "{self.dsn}"\n')
        return path

    def files(self, tmp_path: Path, *, data_directory: bool = True) -> dict[str, bytes]:
        """What an attacker with the disks gets: the database files (PostgreSQL: a ``pg_dump`` and,
        with ``data_directory``, every file of the server's data directory, WAL included) and the media files."""
        cfg = settings(tmp_path)
        if not self.postgresql:
            return raw_files(cfg.path)
        found = {name: data for name, data in raw_files(cfg.path).items() if name.startswith("media/")}
        found["pg_dump.sql"] = self.server.dump(self.dsn)
        for path in self.server.data.rglob("*") if data_directory else ():
            if path.is_file():
                found[f"pgdata/{path.relative_to(self.server.data)}"] = path.read_bytes()
        return found

    @property
    def integrity_error(self) -> type[Exception]:
        """What the driver raises for a violated constraint."""
        if self.postgresql:
            import psycopg

            return psycopg.IntegrityError
        return sqlite3.IntegrityError

    @property
    def database_error(self) -> type[Exception]:
        """What the driver raises for a refused statement (e.g. a trigger's)."""
        if self.postgresql:
            import psycopg

            return psycopg.DatabaseError
        return sqlite3.DatabaseError


class _ClosingPg:
    """A PgConnection with ``close()``, like a sqlite3 connection."""

    def __init__(self, conn: Any) -> None:
        self._conn = conn
        self.execute = conn.execute
        self.executemany = conn.executemany

    def close(self) -> None:
        self._conn.raw.close()


def write_config(tmp_path: Path, key: str = "file:var/master.key") -> Path:
    """A minimal bridge.toml for CLI subprocess tests."""
    path = tmp_path / "bridge.toml"
    path.write_text(f'[store]\npath = "var/carebridge.db"\nkey = "{key}"\n', encoding="utf-8")
    return path


def raw_files(db: Path) -> dict[str, bytes]:
    """Raw bytes of the database, its -wal and -shm, and every media file."""
    found = {}
    for suffix in ("", "-wal", "-shm", "-journal"):
        path = Path(str(db) + suffix)
        if path.exists():
            found[path.name] = path.read_bytes()
    media = db.with_name(db.stem + "-media")
    if media.exists():
        for path in media.iterdir():
            found[f"media/{path.name}"] = path.read_bytes()
    return found


def raw(db: Path) -> sqlite3.Connection:
    """A plain sqlite3 connection to the store file (for tampering and inspection)."""
    conn = sqlite3.connect(db, isolation_level=None)
    conn.execute("PRAGMA busy_timeout = 5000")
    return conn


def env_key_settings(tmp_path: Path, key: bytes, monkeypatch: object, name: str = "CB_TEST_KEY") -> StoreConfig:
    """Settings that read ``key`` from an environment variable."""
    monkeypatch.setenv(name, encode_key(key).strip())  # type: ignore[attr-defined]
    return settings(tmp_path, key=f"env:{name}")


def file_key(tmp_path: Path) -> bytes:
    """The key currently in tmp_path/var/master.key."""
    return load_master_key(f"file:{tmp_path / 'var' / 'master.key'}")


def cli(
    *args: str, cwd: Path, stdin: str | None = None, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run ``python -m bridge ARGS`` as a real subprocess."""
    full_env = {**os.environ, "PYTHONPATH": str(ROOT), **(env or {})}
    full_env.pop("CAREBRIDGE_CONFIG", None)
    return subprocess.run(
        [sys.executable, "-m", "bridge", *args],
        cwd=cwd,
        input=stdin,
        capture_output=True,
        text=True,
        env=full_env,
        timeout=60,
    )
