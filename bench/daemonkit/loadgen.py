"""Closed-loop load with wrk: a fixed number of connections, each sending as soon as answered.

Why wrk: a C load generator on its own core costs a small fraction of what
the servers under test spend per request, so the figures are the servers'.
It is run as ``wrk -t1 -c64 -d<S>s --latency`` (one thread: one core) with
webhooks.lua, which cycles through a file of pre-signed bodies and prints a
JSON summary line.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
from dataclasses import asdict, dataclass
from pathlib import Path

from .procs import taskset

SCRIPT = Path(__file__).with_name("webhooks.lua")
APT_HINT = "apt-get install -y wrk"


class WrkMissing(RuntimeError):
    """wrk is not installed: the ingest phase cannot run."""


def wrk_binary() -> str:
    """The wrk executable, or :class:`WrkMissing` naming the Debian package."""
    found = shutil.which("wrk")
    if found is None:
        raise WrkMissing(f"wrk not found on PATH: install it with `{APT_HINT}` (Debian's wrk package)")
    return found


@dataclass(frozen=True, slots=True)
class WrkResult:
    """One wrk run, as webhooks.lua reports it."""

    requests: int
    seconds: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    max_ms: float
    errors: int
    wrapped: int
    cpu_seconds: float

    @property
    def rps(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0

    def as_dict(self) -> dict[str, float]:
        return {**asdict(self), "rps": self.rps}


def _wrk(argv: list[str], out: Path) -> tuple[int, float]:
    """Run wrk to completion; return its status and CPU seconds (``wait4`` rusage)."""
    with out.open("wb") as sink:
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=sink, stderr=subprocess.STDOUT)
    _RUNNING.add(proc)
    try:
        _pid, status, usage = os.wait4(proc.pid, 0)
    finally:
        _RUNNING.discard(proc)
    proc.returncode = os.waitstatus_to_exitcode(status)
    return proc.returncode, usage.ru_utime + usage.ru_stime


def kill_running() -> None:
    """Kill wrk runs still going (the driver was interrupted while one ran in a thread)."""
    for proc in list(_RUNNING):
        proc.kill()


_RUNNING: set[subprocess.Popen[bytes]] = set()


async def run_wrk(
    url: str, bodies: Path, *, seconds: float, connections: int, cpu: int | None, timeout_s: int = 10
) -> WrkResult:
    """Run wrk against ``url`` (scheme and host only; paths come from ``bodies``)."""
    argv = taskset(cpu, [
        wrk_binary(), "-t1", f"-c{connections}", f"-d{max(1, round(seconds))}s", f"--timeout={timeout_s}s",
        "-s", str(SCRIPT), url, "--", str(bodies),
    ])  # fmt: skip
    out = bodies.with_suffix(".wrk.txt")
    try:
        status, cpu_seconds = await asyncio.to_thread(_wrk, argv, out)
    except BaseException:
        kill_running()
        raise
    text = out.read_text(errors="replace")
    out.unlink()
    line = next((x for x in text.splitlines() if x.startswith("BENCH ")), None)
    if status != 0 or line is None:
        raise RuntimeError(f"wrk failed ({status}): {text.strip()}")
    data = json.loads(line[len("BENCH ") :])
    errors = sum(data[k] for k in ("connect_errors", "read_errors", "write_errors", "status_errors", "timeouts"))
    return WrkResult(
        requests=int(data["requests"]),
        seconds=data["duration_us"] / 1e6,
        p50_ms=data["p50_us"] / 1000,
        p90_ms=data["p90_us"] / 1000,
        p99_ms=data["p99_us"] / 1000,
        max_ms=data["max_us"] / 1000,
        errors=int(errors),
        wrapped=int(data["wrapped"]),
        cpu_seconds=cpu_seconds,
    )
