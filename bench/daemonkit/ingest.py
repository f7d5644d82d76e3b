"""Ingest: signed single-message WhatsApp webhooks, closed loop, daemon beside bare aiohttp.

Method: wrk, one thread pinned to the load core, 64 connections; first a
warm-up run against each server, then R rounds of a fixed time, the two
servers interleaved and the order flipped every round (B D, D B, B D, ...)
so a drift of the machine hits both alike; the median of each is reported.
Every daemon run gets a fresh file of bodies (every message id new, so
nothing is a duplicate); the baseline reads the same bodies. After a
daemon run its ``messages_stored`` counter must have grown by at least the
requests wrk counted: an answered webhook is a committed message.
"""

from __future__ import annotations

import asyncio
import math
import statistics
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .cpuwatch import disturbed
from .loadgen import WrkResult, run_wrk
from .payloads import write_for_wrk
from .procs import Child
from .scene import Scene

CONNECTIONS = 64


@dataclass(frozen=True, slots=True)
class IngestSettings:
    seconds: float
    warmup: float
    rounds: int


class Bodies:
    """Files of fresh signed bodies, sized from the fastest daemon rate seen so far."""

    def __init__(self, scene: Scene) -> None:
        self.scene = scene
        self.guess = 5000.0  # req/s; raised after every run, doubled when a file was too short
        self.made = 0

    async def make(self, seconds: float) -> Path:
        count = math.ceil(self.guess * (seconds + 1))
        self.made += 1
        path = self.scene.directory / f"bodies-{self.made}.txt"
        await asyncio.to_thread(write_for_wrk, path, self.scene.ingest_hooks(count))
        return path


async def _run(
    scene: Scene, server: Child, url: str, bodies: Path, seconds: float
) -> tuple[WrkResult, dict[str, float]]:
    """One wrk run; also the server process's CPU (1.0 = its core) and who else used the CPUs."""
    cpu, before = server.cpu_seconds(), scene.cpu.snapshot()
    result = await run_wrk(url, bodies, seconds=seconds, connections=CONNECTIONS, cpu=scene.cores.load)
    load = scene.cpu.between(before, scene.cpu.snapshot(), extra_ours=result.cpu_seconds)
    return result, {"cpu": (server.cpu_seconds() - cpu) / result.seconds, **load}


async def daemon_run(scene: Scene, bodies: Bodies, seconds: float) -> tuple[dict[str, Any], Path]:
    """A daemon run on fresh bodies; redone with a larger file if wrk had to wrap around."""
    daemon = scene.main
    for _attempt in range(4):
        await daemon.wait_outbox_empty(timeout=120)
        path = await bodies.make(seconds)
        await scene.quiet()
        stored = await daemon.stored_in()
        result, load = await _run(scene, daemon.proc, daemon.url, path, seconds)
        committed = await daemon.stored_in() - stored
        bodies.guess = max(bodies.guess, result.rps * 1.5)
        if not result.wrapped:
            break
        bodies.guess *= 2
        path.unlink()
    else:
        raise RuntimeError("wrk kept wrapping around its bodies file")
    if result.errors or committed < result.requests:
        raise RuntimeError(f"daemon ingest: {result.errors} errors, {committed} stored of {result.requests} answered")
    return {**result.as_dict(), **load, "stored": committed}, path


async def baseline_run(scene: Scene, bodies: Path, seconds: float) -> dict[str, Any]:
    await scene.main.wait_outbox_empty(timeout=120)  # the idle daemon shares the server core
    await scene.quiet()
    assert scene.baseline is not None
    result, load = await _run(scene, scene.baseline, scene.baseline_url, bodies, seconds)
    if result.errors:
        raise RuntimeError(f"baseline: {result.errors} errors")
    return {**result.as_dict(), **load}


def _median(runs: list[dict[str, Any]], key: str) -> float:
    return float(statistics.median(run[key] for run in runs))


async def run_ingest(scene: Scene, settings: IngestSettings, say: Any) -> dict[str, Any]:
    """Warm both up, then interleaved rounds; return every run and the medians."""
    bodies = Bodies(scene)
    say(f"ingest: warm-up {settings.warmup:.0f} s each, then {settings.rounds} interleaved rounds of "
        f"{settings.seconds:.0f} s, wrk -t1 -c{CONNECTIONS}")  # fmt: skip
    _, last = await daemon_run(scene, bodies, settings.warmup)
    await baseline_run(scene, last, settings.warmup)
    runs: dict[str, list[dict[str, Any]]] = {"baseline": [], "daemon": []}
    for n in range(settings.rounds):
        order = ("baseline", "daemon") if n % 2 == 0 else ("daemon", "baseline")
        for who in order:
            while True:
                if who == "daemon":
                    run, fresh = await daemon_run(scene, bodies, settings.seconds)
                    last.unlink(missing_ok=True)
                    last = fresh
                else:
                    run = await baseline_run(scene, last, settings.seconds)
                say(f"  round {n + 1} {who:8} {run['rps']:9,.0f} req/s  p50 {run['p50_ms']:6.2f} ms  "
                    f"p99 {run['p99_ms']:6.2f} ms  CPU: server {run['cpu']:.2f}, load core {run['load_core']:.2f}, "
                    f"other processes {run['others']:.2f}{disturbed(run)}")  # fmt: skip
                if not scene.retry_disturbed(run):
                    break
                say("    disturbed: measured again")
            runs[who].append(run)
    last.unlink(missing_ok=True)
    summary = {
        who: {key: _median(rs, key) for key in ("rps", "p50_ms", "p99_ms", "cpu", "load_core", "steal", "others")}
        for who, rs in runs.items()
    }
    return {
        "rounds": runs,
        "median": summary,
        "ratio": summary["daemon"]["rps"] / summary["baseline"]["rps"],
        "messages": sum(run["stored"] for run in runs["daemon"]),
    }
