"""The HTTP edge of the real daemon: slow clients, connection caps, memory, the admin listener.

Each test runs ``carebridge run`` as a subprocess (tests/daemon.py) and talks
to it over raw loopback sockets where a well-behaved HTTP client could not
misbehave the way an attacker does.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from pathlib import Path

import aiohttp
import pytest

from tests.daemon import DaemonProcess, config_port, free_port, write_config

ACME = "[channels.acme]\ntoken = 'tok-123456'\n"
TOKEN_HEADER = "X-Acme-Token: tok-123456\r\n"
WEBHOOK = json.dumps({"from": "ann", "id": "m-1", "text": "hello"}).encode()


def head(path: str, length: int, extra: str = TOKEN_HEADER) -> bytes:
    return (
        f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        f"{extra}Content-Length: {length}\r\n\r\n"
    ).encode()


async def post_webhook(daemon: DaemonProcess, message_id: str) -> int:
    body = json.dumps({"from": "bob", "id": message_id, "text": "served meanwhile"}).encode()
    async with (
        aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as session,
        session.post(daemon.url("/webhooks/acme"), data=body, headers={"X-Acme-Token": "tok-123456"}) as response,
    ):
        return response.status


async def trickle(
    writer: asyncio.StreamWriter, data: bytes, every: float, until: asyncio.Future[object] | None = None
) -> None:
    """Send ``data`` one byte at a time, ``every`` seconds apart, until the peer hangs up or ``until`` is done.

    Stopping once the answer is in keeps the test from writing into a closed
    connection, whose reset would make the answer unreadable.
    """
    with contextlib.suppress(ConnectionError):
        for byte in data:
            if until is not None and until.done():
                return
            writer.write(bytes([byte]))
            await writer.drain()
            await asyncio.sleep(every)


async def read_answer(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    """One HTTP/1.1 answer off a raw connection: its status and body (by Content-Length)."""
    status = int((await reader.readline()).split()[1])
    length = 0
    while line := (await reader.readline()).strip():
        name, _, value = line.decode().partition(":")
        if name.strip().lower() == "content-length":
            length = int(value)
    return status, await reader.readexactly(length)


async def read_to_close(reader: asyncio.StreamReader) -> bytes:
    """Everything the server sends until it closes (a reset counts as a close)."""
    try:
        return await reader.read()
    except ConnectionError:
        return b""


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS in /proc status")


async def test_a_slow_body_is_cut_off_with_408_while_other_requests_are_served(
    tmp_path: Path, plugin_site: Path
) -> None:
    config = write_config(tmp_path, ACME, server='body_timeout = "1s"')
    async with DaemonProcess(config, env={"PYTHONPATH": str(plugin_site)}) as daemon:
        loop = asyncio.get_running_loop()
        reader, writer = await asyncio.open_connection("127.0.0.1", daemon.port)
        writer.write(head("/webhooks/acme", len(WEBHOOK)))
        started = loop.time()
        answer = asyncio.ensure_future(read_answer(reader))
        sender = asyncio.create_task(trickle(writer, WEBHOOK, every=0.25, until=answer))
        # While that body crawls in, the daemon serves everyone else at once.
        assert await post_webhook(daemon, "m-fast") == 200
        status, body = await asyncio.wait_for(answer, timeout=10)
        elapsed = loop.time() - started
        await sender
        writer.close()
    assert status == 408, body
    assert json.loads(body)["error"]["code"] == "request_timeout"
    assert elapsed < 5, f"the slow body held its connection for {elapsed:.1f}s"
    assert "POST /webhooks/acme 408" in daemon.stderr


async def test_a_slow_request_head_is_closed_after_header_timeout(tmp_path: Path) -> None:
    config = write_config(tmp_path, server='header_timeout = "1s"')
    async with DaemonProcess(config) as daemon:
        loop = asyncio.get_running_loop()
        reader, writer = await asyncio.open_connection("127.0.0.1", daemon.port)
        started = loop.time()
        closed = asyncio.ensure_future(read_to_close(reader))
        partial = b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: " + b"a" * 80
        sender = asyncio.create_task(trickle(writer, partial, 0.2, until=closed))
        async with aiohttp.ClientSession() as session, session.get(daemon.url("/healthz")) as response:
            assert response.status == 200, "others are served meanwhile"
        assert await asyncio.wait_for(closed, timeout=10) == b"", "closed without an answer"
        elapsed = loop.time() - started
        await sender
        writer.close()
    assert elapsed < 5, f"the slow head held its connection for {elapsed:.1f}s"


async def _hold(port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """A keep-alive connection that has been served once (so it is surely counted), held open."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 5
    while True:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        status = await asyncio.wait_for(reader.readline(), 5)
        if status.startswith(b"HTTP/1.1 200"):
            while (await asyncio.wait_for(reader.readline(), 5)).strip():
                pass  # headers; the short JSON body stays unread in the buffer
            return reader, writer
        # The start-up probe's connections may not be released yet: try again.
        writer.close()
        assert loop.time() < deadline, status


async def test_connections_beyond_the_per_address_cap_get_429(tmp_path: Path) -> None:
    config = write_config(tmp_path, server='max_connections_per_address = 3\nheader_timeout = "30s"')
    async with DaemonProcess(config) as daemon:
        held = [await _hold(daemon.port) for _ in range(3)]
        reader, writer = await asyncio.open_connection("127.0.0.1", daemon.port)
        writer.write(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        refused = await asyncio.wait_for(reader.read(), timeout=5)
        writer.close()
        assert refused.startswith(b"HTTP/1.1 429"), refused[:200]
        assert json.loads(refused.split(b"\r\n\r\n", 1)[1])["error"]["code"] == "too_many_connections"
        # A held connection still works, and closing one makes room for another.
        _, first_writer = held[0]
        first_writer.close()
        await first_writer.wait_closed()
        deadline = asyncio.get_running_loop().time() + 5
        while True:
            async with aiohttp.ClientSession() as session:
                try:
                    async with session.get(daemon.url("/healthz")) as response:
                        if response.status == 200:
                            break
                except aiohttp.ClientError:
                    pass
            assert asyncio.get_running_loop().time() < deadline, "the freed slot was never given back"
            await asyncio.sleep(0.05)
        for _, w in held[1:]:
            w.close()
    assert "connection refused: 3 connections already open from one address" in daemon.stderr
    assert "127.0.0.1 " not in daemon.stderr.split("listening on", 1)[1], "client addresses are not logged"


async def test_many_slow_large_bodies_keep_the_daemons_memory_bounded(tmp_path: Path, plugin_site: Path) -> None:
    """200 clients each send 2 MiB minus one byte of a 2 MiB webhook and wait: memory stays near the cap."""
    clients, size = 200, 2 * 1024 * 1024
    server = (
        "max_connections_per_address = 0\n"
        f"max_inflight_body_bytes = {16 * size}\n"
        f"max_inflight_body_bytes_per_address = {32 * size}\n"  # all clients share 127.0.0.1: the total binds
        'body_timeout = "60s"\nheader_timeout = "60s"\n'
    )
    config = write_config(tmp_path, ACME, server=server)
    body = b"x" * (size - 1)
    async with DaemonProcess(config, env={"PYTHONPATH": str(plugin_site)}) as daemon:
        assert daemon.proc is not None
        assert await post_webhook(daemon, "m-warm") == 200
        before = rss_kib(daemon.proc.pid)
        writers: list[asyncio.StreamWriter] = []

        async def client() -> None:
            _, writer = await asyncio.open_connection("127.0.0.1", daemon.port)
            writers.append(writer)
            writer.write(head("/webhooks/acme", size))
            with contextlib.suppress(ConnectionError):  # a refused request's connection is closed under us
                for start in range(0, len(body), 256 * 1024):
                    writer.write(body[start : start + 256 * 1024])
                    await writer.drain()

        await asyncio.wait_for(asyncio.gather(*(client() for _ in range(clients))), timeout=45)
        peak = 0
        for _ in range(40):  # the daemon may still be reading what the kernel buffered for it
            peak = max(peak, rss_kib(daemon.proc.pid))
            await asyncio.sleep(0.05)
        for writer in writers:
            writer.close()
        assert await post_webhook(daemon, "m-after") == 200, "the daemon still serves after the flood"
    growth_mib = (peak - before) / 1024
    # Unbounded, the daemon buffers every body: about 500 MiB here. With the cap, the 16 bodies
    # it may hold plus what each connection's read buffer takes: about 100 MiB.
    assert growth_mib < 200, f"RSS grew by {growth_mib:.0f} MiB for {clients} slow 2 MiB bodies"
    refused = daemon.stderr.count("POST /webhooks/acme 503 ")
    assert refused >= clients - 16, "beyond the cap, requests are refused before their bodies are read"
    assert "request refused (503): " in daemon.stderr


async def test_admin_listen_serves_healthz_and_metrics_and_the_main_listener_does_not(tmp_path: Path) -> None:
    admin_port = free_port()
    config = write_config(tmp_path, server=f'admin_listen = "127.0.0.1:{admin_port}"')
    main_port = config_port(config)
    async with DaemonProcess(config, port=admin_port) as daemon, aiohttp.ClientSession() as session:
        for path in ("/healthz", "/metrics"):
            async with session.get(f"http://127.0.0.1:{main_port}{path}") as response:
                assert response.status == 404
                assert (await response.json())["error"]["code"] == "not_found"
        async with session.get(daemon.url("/healthz")) as response:
            assert response.status == 200 and (await response.json())["status"] == "ok"
        async with session.get(daemon.url("/metrics")) as response:
            assert response.status == 200 and "carebridge_http_requests_total" in await response.text()
        async with session.get(daemon.url("/webhooks/acme")) as response:
            assert response.status == 404, "the admin listener serves nothing else"
    assert f"admin endpoints (/healthz, /metrics) on http://127.0.0.1:{admin_port}" in daemon.stderr


@pytest.mark.parametrize("separate", [False, True], ids=["main-listener", "admin-listener"])
async def test_admin_token_is_required_for_healthz_and_metrics(tmp_path: Path, separate: bool) -> None:
    token = "admin-token-7f3a9c"
    admin_port = free_port()
    server = 'admin_token = "env:CB_TEST_ADMIN_TOKEN"\n' + (
        f'admin_listen = "127.0.0.1:{admin_port}"\n' if separate else ""
    )
    config = write_config(tmp_path, server=server)
    port = admin_port if separate else config_port(config)
    daemon = DaemonProcess(config, port=port, env={"CB_TEST_ADMIN_TOKEN": token})
    await daemon.spawn()
    try:
        async with aiohttp.ClientSession() as session:
            good = {"Authorization": f"Bearer {token}"}
            deadline = asyncio.get_running_loop().time() + 30
            while True:  # tests/daemon.py waits for 200/503; with a token the probe must carry it
                with contextlib.suppress(aiohttp.ClientError):
                    async with session.get(daemon.url("/healthz"), headers=good) as response:
                        if response.status == 200:
                            break
                assert daemon.returncode is None, daemon.stderr
                assert asyncio.get_running_loop().time() < deadline, daemon.stderr
                await asyncio.sleep(0.05)
            for path in ("/healthz", "/metrics"):
                for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": token}):
                    async with session.get(daemon.url(path), headers=headers) as response:
                        assert response.status == 401, (path, headers)
                        assert (await response.json())["error"]["code"] == "unauthorized"
                        assert response.headers["WWW-Authenticate"].startswith("Bearer")
                async with session.get(daemon.url(path), headers=good) as response:
                    assert response.status == 200
    finally:
        await daemon.stop()
    assert token not in daemon.stderr
