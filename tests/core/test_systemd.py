"""config/carebridge.service: valid for systemd and carrying the hardening we promise."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
UNIT = ROOT / "config" / "carebridge.service"


def directives() -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for line in UNIT.read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if not line or line.startswith(("#", ";", "[")):
            continue
        key, _, value = line.partition("=")
        found.setdefault(key, []).append(value)
    return found


def test_unit_declares_notify_watchdog_credentials_and_hardening() -> None:
    d = directives()
    assert d["Type"] == ["notify"]
    assert d["Restart"] == ["on-failure"]
    assert d["WatchdogSec"] and d["StateDirectory"] == ["carebridge"]
    assert d.get("DynamicUser") == ["yes"] or "User" in d
    assert d["LoadCredential"] == ["master.key:/etc/carebridge/master.key"]
    assert d["ExecReload"] == ["/bin/kill -HUP $MAINPID"]
    for key in (
        "ProtectSystem",
        "ProtectHome",
        "PrivateTmp",
        "NoNewPrivileges",
        "MemoryDenyWriteExecute",
        "RestrictNamespaces",
        "LockPersonality",
    ):
        assert key in d, key
    assert d["ProtectSystem"] == ["strict"]
    assert d["RestrictAddressFamilies"] == ["AF_UNIX AF_INET AF_INET6"]
    assert "@system-service" in d["SystemCallFilter"]
    assert d["ExecStart"][0].endswith("carebridge run -c /etc/carebridge/bridge.toml")


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze is not installed")
def test_systemd_analyze_verify_accepts_the_unit(tmp_path: Path) -> None:
    carebridge = Path(sys.executable).with_name("carebridge")
    assert carebridge.exists(), "the carebridge console script is not installed in this environment"
    text = UNIT.read_text(encoding="utf-8")
    text = text.replace("ExecStart=/opt/carebridge/.venv/bin/carebridge", f"ExecStart={carebridge}")
    copy = tmp_path / "carebridge.service"
    copy.write_text(text, encoding="utf-8")
    done = subprocess.run(
        ["systemd-analyze", "verify", str(copy)], capture_output=True, text=True, timeout=60, check=False
    )
    # verify exits 0 even for ignored (mis-spelt) settings; it warns on stderr, so demand silence.
    assert done.returncode == 0, done.stderr
    assert done.stderr.strip() == "", done.stderr
