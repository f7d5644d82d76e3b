"""Helpers shared by the store tests (no tests here): settings, raw-file access, CLI runs."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from pathlib import Path

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
