"""bench/daemon.py runs end to end (--smoke) and cleans up after itself.

Speed is measured by the benchmark, never here: these tests check that it
runs, prints every figure of its last line, writes its JSON, and stops
every process it started, also when interrupted. The benchmark needs wrk
(Debian's package); without it these tests fail, naming the package.
"""

from __future__ import annotations

import json
import math
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.bench.processes import processes_under

ROOT = Path(__file__).resolve().parents[2]
BENCH = ROOT / "bench" / "daemon.py"
KEYS = ("ingest_ratio", "ingest_rps", "ingest_p99_ms", "relay_ratio", "relay_p99_ms", "rss_mb")


@pytest.fixture
def wrk() -> str:
    found = shutil.which("wrk")
    if found is None:
        pytest.fail("wrk is not installed: bench/daemon.py needs it as its load generator (apt-get install -y wrk)")
    return found


@pytest.mark.timeout(300)
def test_smoke_run_prints_every_figure_writes_json_and_leaves_nothing_running(wrk: str, tmp_path: Path) -> None:
    figures = tmp_path / "figures.json"
    done = subprocess.run(
        [sys.executable, str(BENCH), "--smoke", "--soak", "--backlog", "30", "--json", str(figures),
         "--dir", str(tmp_path)],
        capture_output=True, text=True, timeout=280, check=False, cwd=ROOT,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    last = done.stdout.strip().splitlines()[-1]
    pairs = dict(item.split("=", 1) for item in last.split())
    assert tuple(pairs) == KEYS, last
    assert all(math.isfinite(float(value)) for value in pairs.values()), last
    data = json.loads(figures.read_text())
    assert {"ingest", "relay", "memory", "soak", "backlog", "environment"} <= set(data)
    assert data["daemon_exit"] == 0
    assert "error" not in data["backlog"], data["backlog"]
    assert f"JSON: {figures}" in done.stdout
    assert sorted(p.name for p in tmp_path.iterdir()) == ["figures.json"]  # its temporary directory is gone
    assert processes_under(tmp_path) == []


@pytest.mark.timeout(120)
def test_interrupted_run_stops_every_process_and_removes_its_directory(wrk: str, tmp_path: Path) -> None:
    proc = subprocess.Popen(
        [sys.executable, str(BENCH), "--smoke", "--dir", str(tmp_path), "--json", str(tmp_path / "never.json")],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT,
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        seen = []
        for line in proc.stdout:  # interrupt once the daemon, the fake and the baseline all run
            seen.append(line)
            if line.startswith("ingest:"):
                break
        assert processes_under(tmp_path), "".join(seen)
        proc.send_signal(signal.SIGINT)
        _out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 130, err
    assert "interrupted" in err
    deadline = time.monotonic() + 5
    while processes_under(tmp_path) and time.monotonic() < deadline:
        time.sleep(0.05)  # an exited child may take a moment to be reaped
    assert processes_under(tmp_path) == []
    assert list(tmp_path.iterdir()) == []
