"""The benchmark's output: the summary table, the last line, and the JSON file.

The last line (``ingest_ratio=... rss_mb=...``) is meant for scripts and
for comparing commits at a glance; the JSON holds every figure, every
round and the conditions of the run (commit, versions, CPU, pinning).
"""

from __future__ import annotations

import json
import platform
import subprocess
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

from .cpuwatch import disturbed

ROOT = Path(__file__).resolve().parents[2]
KEYS = ("ingest_ratio", "ingest_rps", "ingest_p99_ms", "relay_ratio", "relay_p99_ms", "rss_mb")


def environment() -> dict[str, Any]:
    """What the figures depend on besides the code."""
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True,
                                check=False).stdout.strip()  # fmt: skip
    except OSError:
        commit = ""
    cpu = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "commit": commit or "unknown",
        "python": platform.python_version(),
        "aiohttp": metadata.version("aiohttp"),
        "carebridge": metadata.version("carebridge"),
        "cpu": cpu,
        "platform": platform.platform(),
    }


def last_line(figures: dict[str, Any]) -> str:
    ingest, relay, memory = figures["ingest"], figures["relay"], figures["memory"]
    values = {
        "ingest_ratio": f"{ingest['ratio']:.3f}",
        "ingest_rps": f"{ingest['median']['daemon']['rps']:.0f}",
        "ingest_p99_ms": f"{ingest['median']['daemon']['p99_ms']:.1f}",
        "relay_ratio": f"{relay['ratio']:.3f}",
        "relay_p99_ms": f"{relay['p99_ms']:.1f}",
        "rss_mb": f"{memory['rss_with_conversations_mib']:.1f}",
    }
    return " ".join(f"{key}={values[key]}" for key in KEYS)


def table(figures: dict[str, Any]) -> str:
    env, ingest, relay, memory = figures["environment"], figures["ingest"], figures["relay"], figures["memory"]
    base, dmn = ingest["median"]["baseline"], ingest["median"]["daemon"]
    rows = [
        (
            f"carebridge {env['carebridge']} @ {env['commit']}, Python {env['python']}, aiohttp {env['aiohttp']}, "
            f"{env['cpu'] or 'unknown CPU'}"
        ),
        f"pinning: {figures['pinning']}",
        (
            f"machine before the run: other processes {figures['machine_before']['others']:.2f} cores, "
            f"steal {figures['machine_before']['steal']:.2f}"
        ),
        "",
        (
            f"ingest (wrk -t1 -c64, median of {len(ingest['rounds']['daemon'])} interleaved rounds)"
            "        bare aiohttp       daemon   daemon/bare"
        ),
        (
            f"  req/s                                                      {base['rps']:12,.0f} {dmn['rps']:12,.0f}"
            f"   {ingest['ratio']:10.1%}"
        ),
        f"  p50 ms                                                     {base['p50_ms']:12.2f} {dmn['p50_ms']:12.2f}",
        f"  p99 ms                                                     {base['p99_ms']:12.2f} {dmn['p99_ms']:12.2f}",
        f"  server process CPU (cores)                                 {base['cpu']:12.2f} {dmn['cpu']:12.2f}",
        f"  load core busy (wrk)                                       {base['load_core']:12.2f} {dmn['load_core']:12.2f}",
        f"  other processes (cores)                                    {base['others']:12.2f} {dmn['others']:12.2f}",
        f"  CPU steal (VM host)                                        {base['steal']:12.2f} {dmn['steal']:12.2f}",
        "",
        "relay (open loop, Python)  offered/s  relayed/s    p50 ms    p99 ms  outbox max  verdict",
    ]
    for r in relay["rates"]:
        label = f"probe ({r['probe']})" if r.get("probe") else ""
        if r.get("skipped"):
            rows.append(f"  {label:24} {r['offered']:9,} {'-':>10} {'-':>9} {'-':>9} {'-':>11}  {r['why_not']}")
            continue
        verdict = ("sustained" if r["sustained"] else "NOT sustained: " + r["why_not"]) + disturbed(r)
        rows.append(f"  {label:24} {r['offered']:9,} {r['relayed_per_s']:10,.0f} {r['p50_ms']:9.1f} {r['p99_ms']:9.1f}"
                    f" {r['outbox_max']:11,.0f}  {verdict}")  # fmt: skip
    rows.append(f"  highest sustained: {relay['sustained_rate']:,}/s offered, {relay['sustained_relayed_per_s']:,.0f} "
                f"relayed/s = {relay['ratio']:.1%} of bare aiohttp req/s")  # fmt: skip
    rows += [
        "",
        (
            f"memory (daemon RSS)  start {memory['rss_start_mib']:.1f} MiB; after {memory['messages']:,} messages "
            f"{memory['rss_after_messages_mib']:.1f} MiB; with {memory['open_conversations']:,} open conversations "
            f"{memory['rss_with_conversations_mib']:.1f} MiB"
        ),
    ]
    soak = figures.get("soak")
    if soak:
        rss = ", ".join(f"{s['rss_mib']:.0f}" for s in soak["samples"])
        depth = ", ".join(f"{s['outbox']:.0f}" for s in soak["samples"])
        every = soak["seconds"] / max(1, len(soak["samples"]) - 1)
        verdict = "flat" if soak["flat"] else "NOT flat"
        refused = f", {soak['errors']:,} webhooks refused" if soak["errors"] else ""
        rows.append(f"soak {soak['rate']}/s for {soak['seconds']:.0f} s, RSS MiB every {every:.0f} s: {rss}"
                    f"  -> {soak['slope_mib_per_min']:+.2f} MiB/min, {verdict}")  # fmt: skip
        rows.append(f"     outbox: {depth}; {soak['late']:,} of {soak['sent']:,} relays not arrived 30 s after the end"
                    f"{refused}")  # fmt: skip
    backlog = figures.get("backlog")
    if backlog and "error" in backlog:
        rows.append(f"backlog: failed: {backlog['error']}")
    elif backlog:
        h, f = backlog["history"], backlog["fresh"]
        rows.append(f"backlog {h['relays']:,} relays: drain {h['drain_per_s']:,.0f}/s with history, "
                    f"{f['drain_per_s']:,.0f}/s fresh ({backlog['ratio']:.0%}); WAL max "
                    f"{h['wal_max_bytes'] / 2**20:.1f} / {f['wal_max_bytes'] / 2**20:.1f} MiB")  # fmt: skip
    rows.append(f"WAL max over the whole run: {figures['wal_max_bytes'] / 2**20:.1f} MiB; "
                f"daemon exit status {figures['daemon_exit']}")  # fmt: skip
    return "\n".join(rows)


def write_json(path: Path, figures: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(figures, indent=2, sort_keys=True) + "\n", encoding="utf-8")


def say(text: str) -> None:
    """Progress lines, flushed at once (the run takes minutes)."""
    print(text, flush=True)
    sys.stdout.flush()
