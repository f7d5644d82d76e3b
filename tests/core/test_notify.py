"""bridge.daemon.notify against a real unix datagram socket bound by the test."""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from bridge.daemon.notify import Notifier


@pytest.fixture
def abstract_socket() -> Iterator[tuple[str, socket.socket]]:
    name = f"@carebridge-test-{os.getpid()}-{time.monotonic_ns()}"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind("\0" + name[1:])
    sock.settimeout(5)
    try:
        yield name, sock
    finally:
        sock.close()


def receive(sock: socket.socket) -> list[str]:
    return sock.recv(4096).decode().split("\n")


def test_inactive_without_notify_socket() -> None:
    notifier = Notifier({})
    assert not notifier.enabled
    assert notifier.ready() is False
    assert notifier.watchdog_interval() is None


def test_abstract_socket_ready_status_reloading_stopping(abstract_socket: tuple[str, socket.socket]) -> None:
    name, sock = abstract_socket
    notifier = Notifier({"NOTIFY_SOCKET": name})
    assert notifier.ready("listening on 127.0.0.1:8080") is True
    assert receive(sock) == ["READY=1", "STATUS=listening on 127.0.0.1:8080"]
    before = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
    notifier.reloading()
    fields = receive(sock)
    assert fields[0] == "RELOADING=1"
    assert fields[1].startswith("MONOTONIC_USEC=") and int(fields[1].split("=")[1]) >= before
    notifier.stopping()
    assert receive(sock)[0] == "STOPPING=1"
    notifier.close()


def test_path_socket(tmp_path: Path) -> None:
    path = tmp_path / "notify.sock"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(path))
    sock.settimeout(5)
    try:
        notifier = Notifier({"NOTIFY_SOCKET": str(path)})
        notifier.status("warming up")
        assert receive(sock) == ["STATUS=warming up"]
        notifier.close()
    finally:
        sock.close()


def test_missing_socket_is_logged_not_raised(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    notifier = Notifier({"NOTIFY_SOCKET": str(tmp_path / "gone.sock")})
    assert notifier.ready() is False
    assert "sd_notify failed" in caplog.text
    notifier.close()


def test_watchdog_interval_is_half_of_watchdog_usec() -> None:
    notifier = Notifier({"NOTIFY_SOCKET": "@x", "WATCHDOG_USEC": "4000000"})
    assert notifier.watchdog_interval() == 2.0
    mine = Notifier({"NOTIFY_SOCKET": "@x", "WATCHDOG_USEC": "4000000", "WATCHDOG_PID": str(os.getpid())})
    assert mine.watchdog_interval() == 2.0
    other = Notifier({"NOTIFY_SOCKET": "@x", "WATCHDOG_USEC": "4000000", "WATCHDOG_PID": str(os.getpid() + 1)})
    assert other.watchdog_interval() is None


async def test_watchdog_sends_keepalives(abstract_socket: tuple[str, socket.socket]) -> None:
    import asyncio

    name, sock = abstract_socket
    notifier = Notifier({"NOTIFY_SOCKET": name, "WATCHDOG_USEC": "20000"})
    task = asyncio.create_task(notifier.watchdog())
    try:
        sock.setblocking(False)
        loop = asyncio.get_running_loop()
        got = [await asyncio.wait_for(loop.sock_recv(sock, 4096), 5) for _ in range(3)]
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        notifier.close()
    assert got == [b"WATCHDOG=1"] * 3
