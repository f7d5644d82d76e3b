"""The real daemon (``python -m bridge run -c FILE``) and CLI as subprocesses, and test configs.

Why a subprocess: signals, sd_notify, exit codes and start-up failures are
only real in a real process. The helpers are async so a test can serve fake
platform APIs on the same event loop while the daemon talks to them::

    config = write_config(tmp_path, "[channels.acme]\\n...")
    async with DaemonProcess(config) as daemon:      # waits for /healthz
        async with aiohttp.ClientSession() as s:
            await s.get(daemon.url("/healthz"))
    # leaving the block sends SIGTERM and waits; daemon.returncode, daemon.stderr

The daemon finds plugins the way it does in production: through the
``carebridge`` entry points of the Python environment it runs in. A plugin
under test that is not installed reaches it through ``pythonpath`` (a folder
holding the package and a ``*.dist-info`` with its entry point).
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
import tomllib
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType

import aiohttp


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def write_config(
    directory: Path, extra: str = "", *, port: int | None = None, server: str = "", name: str = "bridge.toml"
) -> Path:
    """Write a bridge.toml for a test: loopback, a free port, store and key under ``directory``.

    The store uses ``synchronous = "normal"``: durability across power loss
    is not what a test measures, and it keeps tests fast.

    :param extra: appended verbatim (more sections such as ``[channels.x]``).
    :param server: extra ``key = value`` lines for the ``[server]`` table.
    """
    port = free_port() if port is None else port
    text = (
        "[server]\n"
        'host = "127.0.0.1"\n'
        f"port = {port}\n"
        + ("" if "shutdown_timeout" in server else 'shutdown_timeout = "5s"\n')
        + (server.rstrip("\n") + "\n" if server else "")
        + "[store]\n"
        'path = "var/carebridge.db"\n'
        'key = "file:var/master.key"\n'
        'synchronous = "normal"\n'
    ) + extra
    path = directory / name
    path.write_text(text, encoding="utf-8")
    return path


def config_port(path: Path) -> int:
    """Read ``server.port`` back from a config file."""
    return int(tomllib.loads(path.read_text(encoding="utf-8"))["server"]["port"])


def cli_env(env: dict[str, str] | None = None, *, pythonpath: Sequence[str | Path] = ()) -> dict[str, str]:
    """The environment for a subprocess: ours without ``$CAREBRIDGE_CONFIG``, plus ``env`` and ``pythonpath``."""
    full = {**os.environ}
    full.pop("CAREBRIDGE_CONFIG", None)
    full.update(env or {})
    paths = [str(p) for p in pythonpath] + ([full["PYTHONPATH"]] if full.get("PYTHONPATH") else [])
    if paths:
        full["PYTHONPATH"] = os.pathsep.join(paths)
    return full


class DaemonProcess:
    """A ``carebridge run`` subprocess: start, wait until healthy, signal, collect output.

    :param config: the bridge.toml to run (``None``: no ``-c``, embedded defaults in ``cwd``).
    :param env: extra environment variables (``NOTIFY_SOCKET``, secrets, ...).
    :param cwd: working directory (default: the config's directory).
    :param port: where /healthz answers (default: read from ``config``).
    :param args: more arguments after ``run``.
    :param pythonpath: folders put first on the daemon's ``PYTHONPATH``.
    """

    def __init__(
        self,
        config: Path | None,
        *,
        env: dict[str, str] | None = None,
        cwd: Path | None = None,
        port: int | None = None,
        args: tuple[str, ...] = (),
        pythonpath: Sequence[str | Path] = (),
    ) -> None:
        self.config = config
        self.cwd = cwd or (config.parent if config else Path.cwd())
        self.port = port if port is not None else (config_port(config) if config else 8080)
        self.env = cli_env({"PYTHONUNBUFFERED": "1", **(env or {})}, pythonpath=pythonpath)
        self.args = args
        self.proc: asyncio.subprocess.Process | None = None
        self._stderr = bytearray()
        self._stdout = bytearray()
        self._readers: list[asyncio.Task[None]] = []

    @property
    def stderr(self) -> str:
        """Everything the daemon wrote to stderr so far (its log)."""
        return self._stderr.decode(errors="replace")

    @property
    def stdout(self) -> str:
        """Everything the daemon wrote to stdout so far."""
        return self._stdout.decode(errors="replace")

    @property
    def returncode(self) -> int | None:
        """The exit status once the process ended."""
        return self.proc.returncode if self.proc else None

    def url(self, path: str = "/") -> str:
        """The daemon's URL for ``path``."""
        return f"http://127.0.0.1:{self.port}{path}"

    async def spawn(self) -> None:
        """Start the process without waiting for it to become healthy."""
        argv = [sys.executable, "-m", "bridge", "run", *self.args]
        if self.config is not None:
            argv += ["-c", str(self.config)]
        self.proc = await asyncio.create_subprocess_exec(
            *argv,
            cwd=self.cwd,
            env=self.env,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        if self.proc.stdout is None or self.proc.stderr is None:
            raise RuntimeError("the daemon's output pipes were not opened")
        self._readers = [
            asyncio.create_task(self._drain(self.proc.stdout, self._stdout)),
            asyncio.create_task(self._drain(self.proc.stderr, self._stderr)),
        ]

    @staticmethod
    async def _drain(stream: asyncio.StreamReader, into: bytearray) -> None:
        while chunk := await stream.read(65536):
            into.extend(chunk)

    async def start(self, timeout: float = 30.0) -> DaemonProcess:
        """Start and wait until ``/healthz`` answers 200 or 503.

        :raises RuntimeError: with the daemon's stderr if it exits or never answers.
        """
        await self.spawn()
        deadline = time.monotonic() + timeout
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=2)) as session:
            while time.monotonic() < deadline:
                if self.proc is not None and self.proc.returncode is not None:
                    await self.wait()
                    raise RuntimeError(f"daemon exited with {self.proc.returncode}:\n{self.stderr}")
                try:
                    async with session.get(self.url("/healthz")) as response:
                        if response.status in (200, 503):
                            return self
                except (TimeoutError, aiohttp.ClientError):
                    pass
                await asyncio.sleep(0.05)
        await self.stop(signal.SIGKILL)
        raise RuntimeError(f"daemon did not answer /healthz within {timeout}s:\n{self.stderr}")

    def send_signal(self, sig: int) -> None:
        """Send ``sig`` to the daemon."""
        self._running().send_signal(sig)

    async def wait(self, timeout: float = 30.0) -> int:
        """Wait for the process to exit (SIGKILL after ``timeout``); return its status."""
        proc = self._running()
        try:
            await asyncio.wait_for(proc.wait(), timeout)
        except TimeoutError:
            proc.kill()
            await proc.wait()
        await asyncio.gather(*self._readers, return_exceptions=True)
        return proc.returncode if proc.returncode is not None else -1

    async def stop(self, sig: int = signal.SIGTERM, timeout: float = 30.0) -> int:
        """Send ``sig`` (if still running) and return the exit status."""
        proc = self._running()
        if proc.returncode is None:
            proc.send_signal(sig)
        return await self.wait(timeout)

    def _running(self) -> asyncio.subprocess.Process:
        if self.proc is None:
            raise RuntimeError("daemon was never started")
        return self.proc

    async def __aenter__(self) -> DaemonProcess:
        return await self.start()

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self.proc is not None and self.proc.returncode is None:
            await self.stop()


async def run_cli(
    *args: str,
    env: dict[str, str] | None = None,
    cwd: Path | None = None,
    stdin: bytes | None = None,
    timeout: float = 60.0,
    pythonpath: Sequence[str | Path] = (),
) -> tuple[int, str, str]:
    """Run ``python -m bridge ARGS`` to completion; return (status, stdout, stderr)."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bridge",
        *args,
        cwd=cwd,
        env=cli_env(env, pythonpath=pythonpath),
        stdin=asyncio.subprocess.PIPE if stdin is not None else asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        out, err = await asyncio.wait_for(proc.communicate(stdin), timeout)
    except TimeoutError:
        proc.kill()
        out, err = await proc.communicate()
    status = proc.returncode if proc.returncode is not None else -1
    return status, out.decode(errors="replace"), err.decode(errors="replace")


def run_cli_sync(
    *args: str,
    env: dict[str, str] | None = None,
    cwd: Path | None = None,
    stdin: bytes | None = None,
    timeout: float = 60.0,
    pythonpath: Sequence[str | Path] = (),
) -> tuple[int, str, str]:
    """Blocking variant of ``run_cli`` for plain (non-async) tests."""
    done = subprocess.run(
        [sys.executable, "-m", "bridge", *args],
        cwd=cwd,
        env=cli_env(env, pythonpath=pythonpath),
        input=stdin,
        capture_output=True,
        timeout=timeout,
        check=False,
    )
    return done.returncode, done.stdout.decode(errors="replace"), done.stderr.decode(errors="replace")
