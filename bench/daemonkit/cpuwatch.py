"""Who used the CPUs during a measurement: our processes, the pinned cores, and everybody else.

Why: a load generator whose core is full measures itself, a virtual
machine whose host takes cycles ("steal") measures its neighbours, and on
a shared machine other workloads (a test suite, a build) take cycles from
the server's core. The benchmark cannot prevent these; it measures them
beside every figure so a disturbed run is seen, not guessed at:
``load_core`` / ``server_core`` are how busy each pinned core was (0..1),
``steal`` the largest steal share, and ``others`` the CPU (in cores) used
by processes that are not the benchmark's, from /proc/stat minus the CPU
time of this driver, its children and wrk.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass

from .procs import TICKS, Children, Cores

#: More than this many cores used by other processes (or stolen) marks a measurement as disturbed.
DISTURBED = 0.1


@dataclass(frozen=True, slots=True)
class Ticks:
    """One CPU's counters from /proc/stat."""

    work: int  # user + nice + system: time in processes
    busy: int  # everything but idle, iowait and steal
    steal: int
    total: int


@dataclass(frozen=True, slots=True)
class Snapshot:
    at: float
    cpus: dict[int, Ticks]
    ours: float  # CPU seconds of the benchmark's own processes


def read_ticks() -> dict[int, Ticks]:
    out = {}
    with open("/proc/stat") as stat:
        for line in stat:
            name, *fields = line.split()
            if not name.startswith("cpu") or name == "cpu":
                continue
            t = [int(x) for x in fields[:8]]  # user nice system idle iowait irq softirq steal
            out[int(name[3:])] = Ticks(work=t[0] + t[1] + t[2], busy=sum(t) - t[3] - t[4] - t[7], steal=t[7],
                                       total=sum(t))  # fmt: skip
    return out


class CpuWatch:
    """Snapshots of the machine's CPU use and of the benchmark's share of it."""

    def __init__(self, children: Children, cores: Cores) -> None:
        self.children = children
        self.cores = cores

    def snapshot(self) -> Snapshot:
        own = os.times()
        return Snapshot(time.monotonic(), read_ticks(), own.user + own.system + self.children.cpu_seconds())

    def between(self, before: Snapshot, after: Snapshot, extra_ours: float = 0.0) -> dict[str, float]:
        """Shares between two snapshots; ``extra_ours``: CPU seconds of our processes not running any more."""
        wall = max(1e-9, after.at - before.at)

        def share(cpu: int | None, attr: str) -> float:
            cpus = list(after.cpus) if cpu is None else [cpu]
            values = []
            for n in cpus:
                a, b = after.cpus.get(n), before.cpus.get(n)
                if a is not None and b is not None:
                    values.append((getattr(a, attr) - getattr(b, attr)) / max(1, a.total - b.total))
            return max(values, default=0.0)

        work = sum(a.work - before.cpus[n].work for n, a in after.cpus.items() if n in before.cpus) / TICKS
        others = max(0.0, work - (after.ours - before.ours) - extra_ours) / wall
        return {
            "load_core": share(self.cores.load, "busy"),
            "server_core": share(self.cores.server, "busy"),
            "steal": share(None, "steal"),
            "others": others,
        }


def disturbed(figures: dict[str, object]) -> str:
    """A warning to print beside a measurement that other processes or the VM host took CPU from."""
    others, steal = float(str(figures.get("others", 0.0))), float(str(figures.get("steal", 0.0)))
    if others > DISTURBED or steal > DISTURBED:
        return f"  [disturbed: other processes {others:.2f} cores, steal {steal:.2f}]"
    return ""
