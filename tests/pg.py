"""A real PostgreSQL server for the tests: initdb and pg_ctl in a temporary directory.

Debian's ``postgresql`` package puts the binaries in /usr/lib/postgresql/<v>/bin.
As root the server runs as the ``postgres`` user (it refuses root). The
server listens on 127.0.0.1 and a unix socket in its own directory, with
durability off (tests never need a crash-safe test database). Each test gets
a fresh database (``new_database``). With ``CI`` set, a missing server is an
error, never a skip.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

_SEARCH = ("/usr/lib/postgresql",)


def find_bindir() -> Path | None:
    """The newest PostgreSQL server bin directory on this machine, or None."""
    override = os.environ.get("CAREBRIDGE_PG_BINDIR")
    if override:
        return Path(override)
    for root in _SEARCH:
        base = Path(root)
        if base.is_dir():
            versions = sorted(
                (p for p in base.iterdir() if (p / "bin" / "initdb").exists()),
                key=lambda p: int(p.name) if p.name.isdigit() else 0,
            )
            if versions:
                return versions[-1] / "bin"
    found = shutil.which("initdb")
    return Path(found).parent if found else None


def require_bindir() -> Path:
    """The server binaries, or a skip (a failure under CI, where .ci/run installs them)."""
    bindir = find_bindir()
    if bindir is None:
        message = "PostgreSQL server binaries not found (apt-get install postgresql)"
        if os.environ.get("CI"):
            pytest.fail(message + "; CI must install them", pytrace=False)
        pytest.skip(message)
    return bindir


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class PostgresServer:
    """One throw-away cluster; ``dsn(db)`` names a database on it."""

    def __init__(self, bindir: Path) -> None:
        self.bindir = bindir
        self.root = Path(tempfile.mkdtemp(prefix="carebridge-pg-"))
        self.data = self.root / "data"
        self.port = _free_port()
        self._counter = itertools.count(1)
        self._as_user: list[str] = []
        if os.geteuid() == 0:
            user = pwd.getpwnam("postgres")
            os.chown(self.root, user.pw_uid, user.pw_gid)
            self._as_user = ["runuser", "-u", "postgres", "--"]
        os.chmod(self.root, 0o755)

    def _run(self, *args: str) -> None:
        result = subprocess.run([*self._as_user, *args], capture_output=True, text=True, timeout=120, check=False)
        if result.returncode != 0:
            raise RuntimeError(f"{args[0]} failed ({result.returncode}): {result.stderr or result.stdout}")

    def start(self) -> None:
        """initdb and start the server (returns once it accepts connections)."""
        self._run(str(self.bindir / "initdb"), "-D", str(self.data), "-A", "trust", "-U", "postgres", "-E", "UTF8")
        self._start()

    def restart(self) -> None:
        """Stop the server (fast: sessions are cut) and start it again on the same port and data."""
        self._run(str(self.bindir / "pg_ctl"), "-D", str(self.data), "-m", "fast", "-w", "stop")
        self._start()

    def _start(self) -> None:
        options = (
            f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 -c fsync=off"
            " -c synchronous_commit=off -c full_page_writes=off -c max_connections=300"
        )
        self._run(
            str(self.bindir / "pg_ctl"), "-D", str(self.data), "-o", options, "-l", str(self.root / "log"), "-w",
            "start",
        )  # fmt: skip

    def stop(self) -> None:
        """Stop the server and remove its directory."""
        with contextlib.suppress(RuntimeError, subprocess.TimeoutExpired):
            self._run(str(self.bindir / "pg_ctl"), "-D", str(self.data), "-m", "immediate", "-w", "stop")
        shutil.rmtree(self.root, ignore_errors=True)

    def dsn(self, dbname: str = "postgres") -> str:
        """A libpq DSN for ``dbname`` on this server, over loopback TCP."""
        return f"host=127.0.0.1 port={self.port} user=postgres dbname={dbname}"

    def new_database(self) -> str:
        """Create an empty database; return its DSN."""
        import psycopg

        name = f"t{os.getpid()}_{next(self._counter)}"
        with psycopg.connect(self.dsn(), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}" TEMPLATE template0')
        return self.dsn(name)

    def drop_database(self, dsn: str) -> None:
        """Drop a database made by ``new_database`` (ending its sessions first)."""
        import psycopg

        name = dsn.rsplit("dbname=", 1)[1]
        with psycopg.connect(self.dsn(), autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    def dump(self, dsn: str) -> bytes:
        """``pg_dump`` of a database (plain SQL, data included), as bytes."""
        name = dsn.rsplit("dbname=", 1)[1]
        result = subprocess.run(
            [str(self.bindir / "pg_dump"), "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres", name],
            capture_output=True, timeout=120, check=True,
        )  # fmt: skip
        return result.stdout


@contextlib.contextmanager
def running_server() -> Iterator[PostgresServer]:
    """A started server for the length of the block."""
    server = PostgresServer(require_bindir())
    try:
        server.start()
        yield server
    finally:
        server.stop()
