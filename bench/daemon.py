"""Daemon benchmark: the whole ``carebridge run`` process, webhook to agent, beside bare aiohttp.

Run: ``.venv/bin/python bench/daemon.py [--seconds S] [--rounds R] [--rates 250,500,1000]
[--messages M] [--soak] [--backlog N] [--json FILE] [--wait-quiet S] [--smoke]``

The daemon is measured from outside, as a black box: its own process
(``carebridge run -c <tmp>/bridge.toml``, a fresh store, synchronous FULL,
WhatsApp and Messenger enabled with test secrets), agents enrolled with the
``carebridge`` CLI and logged in over Messenger, signed webhooks in, and a
fake Graph API process (bench/daemonkit/fake_graph.py) answering the sends
as Meta does. All traffic stays on 127.0.0.1. The server under test has
one core to itself; load generators, the fake and this driver share the other.

Phases (details in each bench/daemonkit module):

1. ingest: signed single-message WhatsApp webhooks, wrk closed loop at 64
   connections, warm-up, then R interleaved rounds against a bare aiohttp
   server (the baseline, its own process) and the daemon; medians of
   req/s, p50, p99 and the ratio daemon/baseline.
2. relay: open loop at fixed offered rates; end-to-end p50/p99 from the
   webhook's send to its relay's arrival at the fake; the highest rate
   sustained with the outbox not growing. relay_ratio = relayed msg/s
   sustained / bare aiohttp req/s.
3. memory: daemon RSS at start, after M messages, with C open conversations;
   ``--soak``: a 5-minute steady load, RSS every 30 s.
4. ``--backlog N``: N relays queued behind a slow platform, drain rate with
   history vs a fresh store, WAL size maximum.

Beside every figure it shows how busy each core was and how much CPU other
processes took (bench/daemonkit/cpuwatch.py); ``--wait-quiet`` waits for a
shared machine to be idle before each measurement. It prints a table,
writes every figure as JSON (``--json``; by default a
file in the system temp directory, path printed) and ends with one line:
``ingest_ratio=... ingest_rps=... ingest_p99_ms=... relay_ratio=...
relay_p99_ms=... rss_mb=...``. Every process it started is stopped and its
temporary directory removed, also on Ctrl-C and on errors.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import signal
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parent))

from daemonkit.backlog import run_backlog
from daemonkit.cpuwatch import DISTURBED
from daemonkit.ingest import IngestSettings, run_ingest
from daemonkit.loadgen import WrkMissing, kill_running, wrk_binary
from daemonkit.memory import SoakSettings, run_memory, run_soak
from daemonkit.procs import Children, Cores, pin_self
from daemonkit.relay import RelaySettings, run_relay
from daemonkit.report import environment, last_line, say, table, write_json
from daemonkit.scene import (
    Scene,
    Sizes,
    set_scene,
    start_baseline,
    start_daemon,
    start_fake,
)


@dataclass(frozen=True, slots=True)
class Plan:
    """Every knob of one run, after ``--smoke`` applied its small values."""

    ingest: IngestSettings
    relay: RelaySettings
    sizes: Sizes
    messages: int
    conversations: int
    soak: SoakSettings | None
    backlog: int
    quiet_check: float = 3.0
    wait_quiet: float = 0.0


def rates(text: str) -> tuple[int, ...]:
    try:
        values = tuple(int(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected rates like 250,500,1000, got {text!r}") from None
    if not values or min(values) <= 0:
        raise argparse.ArgumentTypeError("expected positive rates")
    return values


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    doc = __doc__ or ""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0], formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--seconds", type=float, default=10.0, help="timed seconds per ingest run and per relay rate")
    parser.add_argument("--warmup", type=float, default=3.0, help="ingest warm-up seconds per server")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved ingest rounds (medians)")
    parser.add_argument("--rates", type=rates, default=(250, 500, 1000), help="relay offered rates, msg/s")
    parser.add_argument("--messages", type=int, default=100_000, help="inbound messages before the 2nd RSS")
    parser.add_argument("--conversations", type=int, default=10_000, help="open conversations for the 3rd RSS")
    parser.add_argument("--agents", type=int, default=8, help="agents on Messenger (CLI enrolment + /login)")
    parser.add_argument("--customers-per-agent", type=int, default=25, help="Messenger customers each agent serves")
    parser.add_argument("--senders", type=int, default=1000, help="WhatsApp customers the ingest webhooks come from")
    parser.add_argument("--soak", action="store_true", help="also a steady load for --soak-seconds, RSS sampled")
    parser.add_argument("--soak-seconds", type=float, default=300.0)
    parser.add_argument("--soak-every", type=float, default=30.0)
    parser.add_argument("--soak-rate", type=int, default=0, help="default: half the highest sustained relay rate")
    parser.add_argument("--backlog", type=int, default=0, metavar="N", help="queue N relays and time the drain")
    parser.add_argument(
        "--wait-quiet",
        type=float,
        default=0.0,
        metavar="S",
        help="on a shared machine: wait up to S seconds in all for other processes to go idle\n"
        "before each measurement; take again a disturbed ingest round or failed relay rate",
    )
    parser.add_argument("--json", type=Path, default=None, metavar="FILE", help="where to write every figure")
    parser.add_argument("--smoke", action="store_true", help="tiny counts, about a second per phase")
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory (logs, store)")
    parser.add_argument("--dir", type=Path, default=None, help="parent of the temporary directory")
    return parser.parse_args(argv)


def plan(args: argparse.Namespace) -> Plan:
    if args.smoke:
        return Plan(
            ingest=IngestSettings(seconds=1, warmup=1, rounds=1),
            relay=RelaySettings(rates=(50,), seconds=1, warmup=0.2),
            sizes=Sizes(agents=2, customers_per_agent=3, ingest_senders=20),
            messages=500, conversations=60,
            soak=SoakSettings(seconds=2, every=1, rate=args.soak_rate or 20) if args.soak else None,
            backlog=args.backlog, quiet_check=0.5, wait_quiet=args.wait_quiet,
        )  # fmt: skip
    return Plan(
        ingest=IngestSettings(seconds=args.seconds, warmup=args.warmup, rounds=args.rounds),
        relay=RelaySettings(rates=args.rates, seconds=args.seconds, warmup=min(2.0, args.seconds / 5)),
        sizes=Sizes(agents=args.agents, customers_per_agent=args.customers_per_agent, ingest_senders=args.senders),
        messages=args.messages, conversations=args.conversations,
        soak=SoakSettings(seconds=args.soak_seconds, every=args.soak_every, rate=args.soak_rate) if args.soak else None,
        backlog=args.backlog, wait_quiet=args.wait_quiet,
    )  # fmt: skip


async def track_wal(scene: Scene, stop: asyncio.Event) -> int:
    """The main daemon's largest WAL file over the whole run (sampled every 250 ms)."""
    largest = 0
    while not stop.is_set():
        if scene.daemon is not None:
            largest = max(largest, scene.daemon.wal_bytes())
        try:
            await asyncio.wait_for(stop.wait(), 0.25)
        except TimeoutError:
            pass
    return largest


async def machine_load(scene: Scene, seconds: float) -> dict[str, float]:
    """CPU use of the machine over ``seconds`` while the benchmark itself is idle."""
    before = scene.cpu.snapshot()
    await asyncio.sleep(seconds)
    return scene.cpu.between(before, scene.cpu.snapshot())


async def measure(scene: Scene, settings: Plan) -> dict[str, Any]:
    figures: dict[str, Any] = {"environment": environment(), "pinning": scene.cores.describe()}
    say(f"setting up in {scene.directory} ({scene.cores.describe()})")
    scene.quiet_until = time.monotonic() + settings.wait_quiet if settings.wait_quiet else 0.0
    machine = await machine_load(scene, settings.quiet_check)
    if machine["others"] > DISTURBED and settings.wait_quiet:
        say(f"waiting up to {settings.wait_quiet:.0f} s in all for a quiet machine: other processes use "
            f"{machine['others']:.2f} cores")  # fmt: skip
        machine = await scene.quiet()
    figures["machine_before"] = machine
    busy = "quiet" if machine["others"] <= DISTURBED else "BUSY: the figures will be disturbed"
    say(f"machine before the run: other processes use {machine['others']:.2f} cores, steal {machine['steal']:.2f} "
        f"({busy})")  # fmt: skip
    await start_fake(scene)
    await start_baseline(scene)
    scene.daemon = await start_daemon(scene, "main")
    await asyncio.sleep(1.0)
    rss_start = scene.main.proc.rss_mib()
    stop = asyncio.Event()
    wal = asyncio.create_task(track_wal(scene, stop))
    try:
        started = time.monotonic()
        await set_scene(scene)
        say(f"scene: {len(scene.agents)} agents logged in, {len(scene.customers)} Messenger customers assigned, "
            f"{len(scene.senders)} WhatsApp customers queued ({time.monotonic() - started:.1f} s)")  # fmt: skip
        figures["ingest"] = await run_ingest(scene, settings.ingest, say)
        baseline_rps = figures["ingest"]["median"]["baseline"]["rps"]
        figures["relay"] = await run_relay(scene, settings.relay, baseline_rps, say)
        memory = await run_memory(scene, settings.messages, settings.conversations, say)
        figures["memory"] = {"rss_start_mib": rss_start, **memory}
        if settings.soak is not None:
            soak = settings.soak
            if not soak.rate:
                soak = SoakSettings(soak.seconds, soak.every, max(10, figures["relay"]["sustained_rate"] // 2 or 50))
            figures["soak"] = await run_soak(scene, soak, say)
        if settings.backlog:
            try:
                figures["backlog"] = await run_backlog(scene, settings.backlog, say)
            except RuntimeError as err:  # e.g. the soak left a backlog that does not drain: report the rest
                say(f"backlog: failed: {err}")
                figures["backlog"] = {"error": str(err)}
    finally:
        stop.set()
        figures["wal_max_bytes"] = await wal
    figures["daemon_exit"] = scene.main.stop()
    return figures


async def run(args: argparse.Namespace) -> int:
    task = asyncio.current_task()
    if task is not None:
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, task.cancel)
    settings = plan(args)
    wrk_binary()  # fail before starting anything
    cores = Cores.detect()
    pin_self(cores.load)
    directory = Path(tempfile.mkdtemp(prefix="carebridge-bench-daemon-", dir=args.dir))
    env = {k: v for k, v in os.environ.items() if k != "CAREBRIDGE_CONFIG"}
    env["PYTHONUNBUFFERED"] = "1"
    children = Children(directory, env)
    json_path = args.json or Path(tempfile.gettempdir()) / time.strftime("carebridge-bench-daemon-%Y%m%d-%H%M%S.json")
    try:
        timeout = aiohttp.ClientTimeout(total=60)
        async with aiohttp.ClientSession(timeout=timeout) as session:
            scene = Scene(directory, children, session, cores, settings.sizes)
            figures = await measure(scene, settings)
        figures["options"] = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()}
        write_json(json_path, figures)
        print()
        print(table(figures))
        print(f"JSON: {json_path}")
        print(last_line(figures), flush=True)
        return 0
    finally:
        kill_running()
        children.stop_all()
        if args.keep:
            print(f"kept {directory}", file=sys.stderr)
        else:
            shutil.rmtree(directory, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        return asyncio.run(run(args))
    except WrkMissing as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    except (KeyboardInterrupt, asyncio.CancelledError):
        print("interrupted: every process the benchmark started was stopped", file=sys.stderr)
        return 130
    except RuntimeError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
