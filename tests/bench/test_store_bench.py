"""bench/store.py runs end to end on tiny counts and removes its directory.

Speed is measured by the benchmark, never here: this checks that every
section of its report is printed, not what the figures are.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.timeout(120)
def test_tiny_run_reports_every_section_and_cleans_up(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "store.py"), "--writes", "256", "--concurrency", "8", "--rounds", "2",
         "--messages", "2000", "--samples", "50", "--dir", str(tmp_path)],
        capture_output=True, text=True, timeout=110, check=False, cwd=ROOT,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    for expected in ("A raw sqlite3", "B raw rows through store.write()", "C encrypted store", "C / A",
                     "store size per message", "history: newest 50", "p99", "growth:", "RSS with the 2,000-message"):  # fmt: skip
        assert expected in done.stdout, expected
    assert list(tmp_path.iterdir()) == []
