"""Relay: customer messages at fixed offered rates, timed until they reach an agent.

Method: for each rate, Messenger customers (each assigned to one of the
logged-in agents) write at that rate, open loop (openloop.py, Python on the
load core). Each text carries a marker; the fake Graph API records when the
relay carrying it arrives, on the same monotonic clock, so each message's
end-to-end latency is ``arrival - sent``. The first ``warmup`` seconds of
each rate are sent but not counted. ``carebridge_outbox_depth`` is read
from ``/metrics`` every 100 ms meanwhile.

A rate is *sustained* when the generator kept its schedule (>= 97 % of the
offered rate, p99 lateness under 20 ms), the daemon answered every webhook
200, every relay arrived, and the outbox did not grow: the least-squares
slope of its depth over the counted window is at most 2 % of the rate per
second, and at the end of the sending it holds under a quarter second's
worth of messages. Rates run in increasing order; after the first one not
sustained the higher ones are skipped, and when not even the lowest was
sustained, lower rates are probed (halving, then once halfway back up).
"""

from __future__ import annotations

import asyncio
import math
import statistics
import time
from dataclasses import dataclass
from typing import Any

from .cpuwatch import disturbed
from .openloop import open_loop
from .scene import Scene, wait_arrivals
from .world import Daemon

SAMPLE_EVERY = 0.1
GRACE = 15.0  # seconds after the last send for stragglers to arrive
LATE_MS = 20.0  # a generator this late (p99) no longer offers the rate it was asked for


@dataclass(frozen=True, slots=True)
class RelaySettings:
    rates: tuple[int, ...]
    seconds: float
    warmup: float


def percentile(values: list[float], pct: float) -> float:
    """Nearest-rank percentile (``pct`` in 0..100); 0.0 for no values."""
    if not values:
        return 0.0
    ordered = sorted(values)
    rank = max(1, min(len(ordered), math.ceil(pct / 100 * len(ordered))))
    return ordered[rank - 1]


def slope(samples: list[tuple[float, float]]) -> float:
    """Least-squares slope of ``(t, value)`` samples, per second."""
    if len(samples) < 3:
        return 0.0
    ts = [t for t, _ in samples]
    vs = [v for _, v in samples]
    mt, mv = statistics.fmean(ts), statistics.fmean(vs)
    den = sum((t - mt) ** 2 for t in ts)
    return sum((t - mt) * (v - mv) for t, v in samples) / den if den else 0.0


async def sample_depth(
    daemon: Daemon, into: list[tuple[float, float]], stop: asyncio.Event, abort: asyncio.Event, cap: float
) -> None:
    """Read the outbox depth every 100 ms; set ``abort`` once it passes ``cap``."""
    while not stop.is_set():
        depth = await daemon.outbox_depth()
        into.append((time.monotonic(), depth))
        if depth > cap:
            abort.set()
        try:
            await asyncio.wait_for(stop.wait(), SAMPLE_EVERY)
        except TimeoutError:
            pass


def cap_for(rate: int) -> int:
    """Outbox depth at which a rate is stopped: half a second's worth, at least 200.

    A rate that gets there is not sustained (the verdict allows a quarter
    second's worth at the end), and past a few hundred deliveries to the
    same agents the outbox drains much slower (see ``--backlog``): letting it
    run on would only leave a backlog that takes minutes to clear and a
    longer history for the rates after it.
    """
    return max(200, rate // 2)


async def one_rate(scene: Scene, daemon: Daemon, rate: int, settings: RelaySettings) -> dict[str, Any]:
    """Offer ``rate`` messages/s for warm-up + seconds; return latency, throughput and the verdict."""
    await daemon.wait_outbox_empty(timeout=900)
    await scene.quiet()
    hooks = scene.relay_hooks(round(rate * (settings.warmup + settings.seconds)))
    depth: list[tuple[float, float]] = []
    stop, abort = asyncio.Event(), asyncio.Event()
    sampler = asyncio.create_task(sample_depth(daemon, depth, stop, abort, cap_for(rate)))
    cpu, before = daemon.proc.cpu_seconds(), scene.cpu.snapshot()
    try:
        sent = await open_loop(daemon.url, hooks, rate, abort=abort)
    finally:
        stop.set()
        await sampler
    span = max(1e-9, sent.finished - sent.started)
    daemon_cpu = (daemon.proc.cpu_seconds() - cpu) / span
    # The load core runs the fake Graph API and this driver (the generator): if it is full, the figures are its.
    load = scene.cpu.between(before, scene.cpu.snapshot())
    end_depth = await daemon.outbox_depth()
    arrived = await wait_arrivals(scene, set(sent.sent_at), timeout=GRACE)
    window_start = sent.started + settings.warmup
    if sent.finished - window_start < 0.5:  # stopped during the warm-up: count it all
        window_start = sent.started
    window = max(1e-9, sent.finished - window_start)
    counted = [seq for seq, at in sent.sent_at.items() if at >= window_start]
    latencies = [(arrived[seq] - sent.sent_at[seq]) * 1000 for seq in counted if seq in arrived]
    in_window = sum(1 for t in arrived.values() if window_start <= t <= sent.finished)
    growth = slope([(t, d) for t, d in depth if t >= window_start])
    missing = len(sent.sent_at) - len(arrived)
    reasons = []
    if sent.aborted:
        reasons.append(f"outbox passed {cap_for(rate)} after {span:.1f} s, stopped there")
    elif sent.achieved_rate < 0.97 * rate:
        reasons.append(f"generator reached only {sent.achieved_rate:.0f}/s")
    lag = percentile(sent.lag_ms, 99)
    if lag > LATE_MS:
        reasons.append(f"generator late (p99 {lag:.0f} ms behind schedule)")
    if sent.errors:
        reasons.append(f"{sent.errors} webhooks not answered 200")
    if missing:
        reasons.append(f"{missing} relays not arrived {GRACE:.0f} s after the last send")
    if growth > 0.02 * rate:
        reasons.append(f"outbox grew {growth:.0f}/s")
    if end_depth > 0.25 * rate:
        reasons.append(f"outbox held {end_depth:.0f} at the end")
    return {
        "offered": rate,
        "sent": len(sent.sent_at),
        "seconds": span,
        "achieved_rate": sent.achieved_rate,
        "relayed_per_s": in_window / window,
        "p50_ms": percentile(latencies, 50),
        "p99_ms": percentile(latencies, 99),
        "max_ms": max(latencies, default=0.0),
        "webhook_p99_ms": percentile(sent.answer_ms, 99),
        "generator_lag_p99_ms": lag,
        "outbox_slope_per_s": growth,
        "outbox_max": max((d for _, d in depth), default=0.0),
        "outbox_end": end_depth,
        "daemon_cpu": daemon_cpu,
        **load,
        "missing": missing,
        "sustained": not reasons,
        "why_not": "; ".join(reasons),
    }


def next_probe(results: list[dict[str, Any]]) -> tuple[int, str] | None:
    """The next rate to try below the requested ones when even the lowest was not sustained.

    Halve until a rate is sustained, then try once halfway between it and
    the failed rate above; at most four probes and never below 10/s, so the
    phase stays bounded. Returns ``(rate, "halved" | "midpoint")`` or None.
    """
    measured = [r for r in results if not r.get("skipped")]
    probed = [r for r in measured if r.get("probe")]
    if len(probed) >= 4:
        return None
    ok = [r["offered"] for r in measured if r["sustained"]]
    if not ok:
        rate = min(r["offered"] for r in measured) // 2
        return (rate, "halved") if rate >= 10 else None
    if probed and not any(r["probe"] == "midpoint" for r in probed):
        above = [r["offered"] for r in measured if not r["sustained"] and r["offered"] > max(ok)]
        middle = (max(ok) + min(above)) // 2 if above else max(ok)
        if middle not in (r["offered"] for r in measured):
            return middle, "midpoint"
    return None


def say_rate(say: Any, result: dict[str, Any]) -> None:
    verdict = "sustained" if result["sustained"] else f"NOT sustained ({result['why_not']})"
    say(f"  {result['offered']:5}/s offered: relayed {result['relayed_per_s']:7,.0f}/s  p50 {result['p50_ms']:7.1f} ms  "
        f"p99 {result['p99_ms']:7.1f} ms  outbox max {result['outbox_max']:.0f}  "
        f"CPU daemon {result['daemon_cpu']:.2f} load core {result['load_core']:.2f}  {verdict}{disturbed(result)}")  # fmt: skip


async def measured_rate(scene: Scene, rate: int, settings: RelaySettings, say: Any) -> dict[str, Any]:
    """One rate; a rate not sustained while disturbed is taken again while --wait-quiet leaves time."""
    while True:
        result = await one_rate(scene, scene.main, rate, settings)
        say_rate(say, result)
        if result["sustained"] or not scene.retry_disturbed(result):
            return result
        say("    disturbed: measured again")


async def run_relay(scene: Scene, settings: RelaySettings, baseline_rps: float, say: Any) -> dict[str, Any]:
    """The offered rates in increasing order up to the first not sustained; probes below if none was."""
    say(f"relay: open loop (Python asyncio + aiohttp on the load core), Messenger customers -> "
        f"{len(scene.agents)} Messenger agents, {settings.seconds:.0f} s per rate after {settings.warmup:.0f} s "
        f"warm-up")  # fmt: skip
    requested = tuple(sorted(settings.rates))
    results: list[dict[str, Any]] = []
    for rate in requested:
        if results and not results[-1]["sustained"]:
            results.append({"offered": rate, "skipped": True, "sustained": False,
                            "why_not": "not run: a lower rate was not sustained"})  # fmt: skip
            say(f"  {rate:5}/s offered: not run (a lower rate was not sustained)")
            continue
        results.append(await measured_rate(scene, rate, settings, say))
    while (probe := next_probe(results)) is not None:
        results.append({**await measured_rate(scene, probe[0], settings, say), "probe": probe[1]})
    await scene.main.wait_outbox_empty(timeout=900)
    results.sort(key=lambda r: r["offered"])
    sustained = [r for r in results if r["sustained"]]
    best = max(sustained, key=lambda r: r["offered"]) if sustained else None
    shown = best or min((r for r in results if not r.get("skipped")), key=lambda r: r["offered"])
    return {
        "rates": results,
        "sustained_rate": best["offered"] if best else 0,
        "sustained_relayed_per_s": best["relayed_per_s"] if best else 0.0,
        "p50_ms": shown["p50_ms"],
        "p99_ms": shown["p99_ms"],
        "ratio": (best["relayed_per_s"] if best else 0.0) / baseline_rps,
    }
