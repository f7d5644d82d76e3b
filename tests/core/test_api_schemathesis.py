"""Property test: every operation of the OpenAPI document, called with what it allows, never answers 5xx.

schemathesis generates the requests from the document the real daemon serves
(a subprocess on loopback), logged in as an admin with a session cookie and
its CSRF token, so the calls get past authentication into the handlers.
The event stream (endless by design) and the logout (it would end the
session the other calls use) are left out here and tested on their own.
"""

from __future__ import annotations

import re
import subprocess
import sys
import time
from pathlib import Path

import pyotp
import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from schemathesis.checks import not_a_server_error

from tests.daemon import ROOT, cli_env, config_port, run_cli_sync, write_config

PASSWORD = "correct horse battery staple"
SKIPPED = ("/api/events", "/api/logout")


def _start(config: Path, log: Path) -> subprocess.Popen[bytes]:
    handle = log.open("wb")
    env = cli_env({"PYTHONPATH": str(ROOT)})
    process = subprocess.Popen(
        [sys.executable, "-m", "bridge", "run", "-c", str(config)], cwd=config.parent, env=env,
        stdin=subprocess.DEVNULL, stdout=handle, stderr=handle,
    )  # fmt: skip
    handle.close()
    url = f"http://127.0.0.1:{config_port(config)}/healthz"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"daemon exited:\n{log.read_text()}")
        try:
            if requests.get(url, timeout=2).status_code in (200, 503):
                return process
        except requests.RequestException:
            pass
        time.sleep(0.05)
    process.kill()
    raise RuntimeError(f"daemon never answered:\n{log.read_text()}")


@pytest.mark.timeout(300)
def test_no_operation_answers_a_server_error(tmp_path: Path) -> None:
    config = write_config(tmp_path, "[security]\nlogin_max_attempts_per_address = 1000\n")
    status, out, err = run_cli_sync(
        "agent", "add", "root", "--channel", "console", "--role", "admin", "--password-stdin", "-c", str(config),
        stdin=f"{PASSWORD}\n".encode(),
    )  # fmt: skip
    assert status == 0, err
    found = re.search(r"secret=([A-Z2-7]{32})", out)
    assert found, out
    process = _start(config, tmp_path / "daemon.log")
    base = f"http://127.0.0.1:{config_port(config)}"
    try:
        session = requests.Session()
        answer = session.post(
            f"{base}/api/login",
            json={"username": "root", "password": PASSWORD, "totp": pyotp.TOTP(found.group(1)).now()},
            timeout=10,
        )
        assert answer.status_code == 200, answer.text
        csrf = answer.json()["csrf_token"]
        cookies = {"carebridge_session": session.cookies["carebridge_session"]}
        document = session.get(f"{base}/api/openapi.json", timeout=10).json()
        schema = schemathesis.openapi.from_dict(document)
        operations = [result.ok() for result in schema.get_all_operations()]
        assert len(operations) >= 15
        checked = 0
        for operation in operations:
            if operation.path in SKIPPED:
                continue

            @given(case=operation.as_strategy())
            @settings(
                max_examples=25, deadline=None, database=None, suppress_health_check=list(HealthCheck),
                phases=[Phase.explicit, Phase.generate],
            )  # fmt: skip
            def call(case: schemathesis.Case) -> None:
                response = case.call(
                    base_url=base, session=session, headers={"X-CSRF-Token": csrf}, cookies=cookies, timeout=30
                )
                case.validate_response(response, checks=[not_a_server_error])

            call()
            checked += 1
        assert checked == len(operations) - len(SKIPPED)
        still = session.get(f"{base}/api/me", timeout=10)
        assert still.status_code == 200, "the session survived every generated call"
    finally:
        process.terminate()
        process.wait(30)
    log = (tmp_path / "daemon.log").read_text()
    assert "Traceback" not in log, log[-5000:]
