"""The benchmark's child processes: pinned to a core, logged to files, always stopped.

Why pinning: on a 2-core machine a load generator and a server that share a
core measure the scheduler, not the server. The server under test (the
daemon or the baseline) gets core 1 alone; the load generators, the fake
Graph API and this driver share core 0. Children start in their own session
so a Ctrl-C in the terminal reaches only the driver, which then stops them
in order (SIGTERM, then SIGKILL after a grace period).
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp

PAGE = os.sysconf("SC_PAGE_SIZE")
TICKS = os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True, slots=True)
class Cores:
    """Which CPU runs what; ``None`` when the machine has fewer than two (nothing pinned)."""

    server: int | None
    load: int | None

    @classmethod
    def detect(cls) -> Cores:
        cpus = sorted(os.sched_getaffinity(0))
        if len(cpus) < 2:
            return cls(None, None)
        return cls(server=cpus[1], load=cpus[0])

    def describe(self) -> str:
        if self.server is None:
            return "not pinned (fewer than 2 CPUs)"
        return f"server on CPU {self.server}, load generators + fake Graph API + driver on CPU {self.load}"


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def pin_self(cpu: int | None) -> None:
    """Keep this driver (and what it runs in-process, the open-loop generator) on ``cpu``."""
    if cpu is not None:
        os.sched_setaffinity(0, {cpu})


def taskset(cpu: int | None, argv: list[str]) -> list[str]:
    """``argv`` run on ``cpu`` (taskset execs, so the pid stays the program's own)."""
    return argv if cpu is None else ["taskset", "-c", str(cpu), *argv]


@dataclass
class Child:
    """One long-running child process and the file its output goes to."""

    name: str
    proc: subprocess.Popen[bytes]
    log: Path

    @property
    def pid(self) -> int:
        return self.proc.pid

    def tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def rss_mib(self) -> float:
        """Resident set size now, MiB (from /proc/PID/statm)."""
        with open(f"/proc/{self.pid}/statm") as statm:
            return int(statm.read().split()[1]) * PAGE / 2**20

    def cpu_seconds(self) -> float:
        """User + system CPU time used so far (from /proc/PID/stat)."""
        with open(f"/proc/{self.pid}/stat") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / TICKS


@dataclass
class Children:
    """Every process the benchmark started; :meth:`stop_all` ends them, newest first."""

    directory: Path
    env: dict[str, str]
    running: list[Child] = field(default_factory=list)

    def start(self, name: str, argv: list[str], *, cpu: int | None, cwd: Path | None = None) -> Child:
        log = self.directory / f"{name}.log"
        with log.open("wb") as out:
            proc = subprocess.Popen(
                taskset(cpu, argv), stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                cwd=cwd or self.directory, env=self.env, start_new_session=True,
            )  # fmt: skip
        child = Child(name, proc, log)
        self.running.append(child)
        return child

    def stop(self, child: Child, grace: float = 15.0) -> int:
        """SIGTERM, wait up to ``grace`` seconds, then SIGKILL; return the exit status."""
        if child.proc.poll() is None:
            child.proc.send_signal(signal.SIGTERM)
            try:
                child.proc.wait(grace)
            except subprocess.TimeoutExpired:
                child.proc.kill()
                child.proc.wait()
        if child in self.running:
            self.running.remove(child)
        return child.proc.returncode

    def cpu_seconds(self) -> float:
        """CPU time used so far by the children still running."""
        total = 0.0
        for child in self.running:
            try:
                total += child.cpu_seconds()
            except OSError:  # exited meanwhile
                pass
        return total

    def stop_all(self) -> None:
        for child in reversed(list(self.running)):
            self.stop(child)


async def wait_http(child: Child, url: str, timeout: float = 60.0) -> None:
    """Wait until ``url`` answers (any status below 600); fail with the child's log if it died."""
    deadline = time.monotonic() + timeout
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=2)) as session:
        while time.monotonic() < deadline:
            if child.proc.poll() is not None:
                raise RuntimeError(f"{child.name} exited with {child.proc.returncode}:\n{child.tail()}")
            try:
                async with session.get(url) as response:
                    await response.read()
                    return
            except (TimeoutError, aiohttp.ClientError):
                await asyncio.sleep(0.05)
    raise RuntimeError(f"{child.name} did not answer {url} within {timeout:.0f} s:\n{child.tail()}")
