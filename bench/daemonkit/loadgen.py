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
import shutil
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

    @property
    def rps(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0

    def as_dict(self) -> dict[str, float]:
        return {**asdict(self), "rps": self.rps}


async def run_wrk(
    url: str, bodies: Path, *, seconds: float, connections: int, cpu: int | None, timeout_s: int = 10
) -> WrkResult:
    """Run wrk against ``url`` (scheme and host only; paths come from ``bodies``)."""
    argv = taskset(cpu, [
        wrk_binary(), "-t1", f"-c{connections}", f"-d{max(1, round(seconds))}s", f"--timeout={timeout_s}s",
        "-s", str(SCRIPT), url, "--", str(bodies),
    ])  # fmt: skip
    proc = await asyncio.create_subprocess_exec(
        *argv, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    try:
        out, err = await proc.communicate()
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    line = next((x for x in out.decode().splitlines() if x.startswith("BENCH ")), None)
    if proc.returncode != 0 or line is None:
        raise RuntimeError(f"wrk failed ({proc.returncode}): {err.decode().strip()}\n{out.decode().strip()}")
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
    )
