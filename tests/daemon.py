"""Run the real daemon and CLI as subprocesses in tests: the kit's runners with this repository on the path.

The runners themselves ship with the core (``bridge.testing``); these thin
wrappers put the repository first on the subprocess's ``PYTHONPATH``, so the
daemon runs this source tree and can import the test suite's own modules.

    config = write_config(tmp_path, extra="[channels.messenger]\\n...")
    async with DaemonProcess(config) as daemon:      # waits for /healthz
        async with aiohttp.ClientSession() as s:
            await s.get(daemon.url("/healthz"))
    # leaving the block sends SIGTERM and waits; daemon.returncode, daemon.stderr
"""

from __future__ import annotations

from pathlib import Path

from bridge import testing as kit
from bridge.testing import config_port, free_port, write_config

__all__ = ["ROOT", "DaemonProcess", "cli_env", "config_port", "free_port", "run_cli", "run_cli_sync", "write_config"]

ROOT = Path(__file__).resolve().parent.parent


class DaemonProcess(kit.DaemonProcess):
    """``bridge.testing.DaemonProcess`` running this source tree (see its docstring)."""

    def __init__(
        self,
        config: Path | None,
        *,
        env: dict[str, str] | None = None,
        cwd: Path | None = None,
        port: int | None = None,
        args: tuple[str, ...] = (),
    ) -> None:
        super().__init__(config, env=env, cwd=cwd, port=port, args=args, pythonpath=(ROOT,))


def cli_env(env: dict[str, str] | None) -> dict[str, str]:
    """The environment for a CLI subprocess: ours without $CAREBRIDGE_CONFIG, plus ``env``, the repo on PYTHONPATH."""
    return kit.cli_env(env, pythonpath=(ROOT,))


async def run_cli(
    *args: str,
    env: dict[str, str] | None = None,
    cwd: Path | None = None,
    stdin: bytes | None = None,
    timeout: float = 60.0,
) -> tuple[int, str, str]:
    """Run ``python -m bridge ARGS`` to completion; return (status, stdout, stderr)."""
    return await kit.run_cli(*args, env=env, cwd=cwd, stdin=stdin, timeout=timeout, pythonpath=(ROOT,))


def run_cli_sync(
    *args: str,
    env: dict[str, str] | None = None,
    cwd: Path | None = None,
    stdin: bytes | None = None,
    timeout: float = 60.0,
) -> tuple[int, str, str]:
    """Blocking variant of ``run_cli`` for plain (non-async) tests."""
    return kit.run_cli_sync(*args, env=env, cwd=cwd, stdin=stdin, timeout=timeout, pythonpath=(ROOT,))
