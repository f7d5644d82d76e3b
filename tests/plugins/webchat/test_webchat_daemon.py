"""The chat in the real daemon: served, stored, streamed, and open streams do not hold up a stop."""

from __future__ import annotations

import signal
import time
from pathlib import Path

import aiohttp

from tests.daemon import DaemonProcess, write_config
from tests.plugins.webchat.conftest import BASE, Events


async def test_the_daemon_serves_the_chat_and_stops_promptly_with_a_stream_open(tmp_path: Path) -> None:
    config = write_config(tmp_path, "[channels.webchat]\n", server='shutdown_timeout = "20s"')
    daemon = await DaemonProcess(config).start()
    try:
        async with aiohttp.ClientSession() as http:
            async with http.get(daemon.url("/chat")) as page:
                assert page.status == 200 and "Content-Security-Policy" in page.headers
            async with http.post(daemon.url(f"{BASE}/session"), json={"name": "Ann"}) as response:
                token = (await response.json())["token"]
            async with http.post(
                daemon.url(f"{BASE}/messages"), json={"text": "hello"}, headers={"Authorization": f"Bearer {token}"}
            ) as response:
                assert response.status == 201
            stream = await http.get(daemon.url(f"{BASE}/events"), params={"token": token})
            assert (await Events(stream).next())[2]["text"] == "hello"
            started = time.monotonic()
            daemon.send_signal(signal.SIGTERM)
            assert await daemon.wait(timeout=30) == 0, daemon.stderr
            # The stream was ended at shutdown, not waited for until the grace period ran out.
            assert time.monotonic() - started < 10
            stream.close()
    finally:
        if daemon.returncode is None:
            await daemon.stop()
    assert token not in daemon.stderr and "hello" not in daemon.stderr
