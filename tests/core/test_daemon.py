"""``carebridge run`` as a real subprocess: health, signals, sd_notify, reload, failures."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest

from tests.daemon import DaemonProcess, free_port, run_cli, write_config

ROOT = Path(__file__).resolve().parents[2]


async def get_json(url: str) -> tuple[int, dict]:  # type: ignore[type-arg]
    async with aiohttp.ClientSession() as session, session.get(url) as response:
        return response.status, await response.json()


class NotifySocket:
    """A unix datagram socket in the abstract namespace, as systemd would bind it."""

    def __init__(self) -> None:
        self.name = f"@carebridge-test-{os.getpid()}-{time.monotonic_ns()}"
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind("\0" + self.name[1:])
        self.sock.setblocking(False)
        self.seen: list[list[str]] = []

    async def expect(self, field: str, timeout: float = 20.0) -> list[str]:
        """Wait for a datagram holding ``field``; return it (others are kept in ``seen``)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise AssertionError(f"no {field} within {timeout}s; seen {self.seen}")
            data = await asyncio.wait_for(loop.sock_recv(self.sock, 65536), remaining)
            fields = data.decode().split("\n")
            self.seen.append(fields)
            if field in fields:
                return fields


@pytest.fixture
def notify_socket() -> Iterator[NotifySocket]:
    ns = NotifySocket()
    try:
        yield ns
    finally:
        ns.sock.close()


async def test_embedded_defaults_answer_healthz_and_sigterm_exits_0(tmp_path: Path) -> None:
    # No config file at all: the quick-start path, on the default port 8080.
    with socket.socket() as probe:
        try:
            probe.bind(("127.0.0.1", 8080))
        except OSError:
            pytest.skip("port 8080 is in use on this machine")
    daemon = DaemonProcess(None, cwd=tmp_path, port=8080)
    async with daemon:
        status, body = await get_json(daemon.url("/healthz"))
        assert status == 200
        assert body["status"] == "ok" and body["store"]["status"] == "ok"
    assert daemon.returncode == 0, daemon.stderr
    first_lines = daemon.stderr.splitlines()[:2]
    assert "starting with embedded defaults" in first_lines[0]
    assert f"store {tmp_path / 'var' / 'carebridge.db'}" in first_lines[1]
    assert (tmp_path / "var" / "master.key").exists()


async def test_healthz_then_sigterm_exits_0_within_the_grace_period(tmp_path: Path) -> None:
    config = write_config(tmp_path, server='shutdown_timeout = "10s"')
    daemon = await DaemonProcess(config).start()
    status, body = await get_json(daemon.url("/healthz"))
    assert status == 200 and body["status"] == "ok"
    assert body["scheduler"]["running"] is True and body["outbox"]["running"] is True
    # The helper SIGKILLs (status -9) a daemon still running after the grace period.
    assert await daemon.stop(signal.SIGTERM, timeout=10) == 0, daemon.stderr
    assert f"starting with config file {config}" in daemon.stderr.splitlines()[0]
    assert "stopped" in daemon.stderr.splitlines()[-1]
    assert "Traceback" not in daemon.stderr


async def test_sigint_also_stops_cleanly(tmp_path: Path) -> None:
    daemon = await DaemonProcess(write_config(tmp_path)).start()
    assert await daemon.stop(signal.SIGINT) == 0, daemon.stderr


async def post_slow_webhook(daemon: DaemonProcess, delay: float) -> asyncio.Task[tuple[int, str]]:
    """Start an acme webhook whose handler takes ``delay`` s; return once the handler is inside it."""
    body = b'{"from": "ann", "text": "slow one", "id": "slow-1"}'
    headers = {"X-Acme-Token": "tok-123456", "X-Acme-Delay": str(delay)}

    async def post() -> tuple[int, str]:
        async with (
            aiohttp.ClientSession() as session,
            session.post(daemon.url("/webhooks/acme"), data=body, headers=headers) as response,
        ):
            return response.status, await response.text()

    request = asyncio.create_task(post())
    async with aiohttp.ClientSession() as session:
        while True:
            async with session.get(daemon.url("/webhooks/acme/in-flight")) as response:
                if (await response.json())["in_flight"]:
                    return request
            assert not request.done(), request.result()


async def test_in_flight_request_finishes_before_exit(tmp_path: Path, plugin_site: Path) -> None:
    """A webhook whose handler is still working when SIGTERM arrives gets its answer and is stored."""
    config = write_config(tmp_path, "[channels.acme]\ntoken = 'tok-123456'\n", server='shutdown_timeout = "10s"')
    daemon = await DaemonProcess(config, env={"PYTHONPATH": str(plugin_site)}).start()
    request = await post_slow_webhook(daemon, 1.0)
    daemon.send_signal(signal.SIGTERM)
    assert await request == (200, '{"ok": true}')
    assert await daemon.wait() == 0, daemon.stderr
    assert "POST /webhooks/acme 200" in daemon.stderr


async def test_a_hanging_request_does_not_hold_the_exit_past_the_grace_period(
    tmp_path: Path, plugin_site: Path
) -> None:
    config = write_config(tmp_path, "[channels.acme]\ntoken = 'tok-123456'\n", server='shutdown_timeout = "1s"')
    daemon = await DaemonProcess(config, env={"PYTHONPATH": str(plugin_site)}).start()
    request = await post_slow_webhook(daemon, 3600)
    daemon.send_signal(signal.SIGTERM)
    # Well past the 1 s grace period the helper would SIGKILL (status -9).
    assert await daemon.wait(timeout=15) == 0, daemon.stderr
    with pytest.raises(aiohttp.ClientError):
        await request  # the connection was closed without an answer: the platform will retry
    assert "Traceback" not in daemon.stderr


async def test_sd_notify_ready_watchdog_reload_stopping(tmp_path: Path, notify_socket: NotifySocket) -> None:
    config = write_config(tmp_path, "[logging]\nlevel = 'info'\n")
    daemon = DaemonProcess(config, env={"NOTIFY_SOCKET": notify_socket.name, "WATCHDOG_USEC": "400000"})
    await daemon.spawn()
    try:
        ready = await notify_socket.expect("READY=1")
        assert any(f.startswith("STATUS=listening on 127.0.0.1:") for f in ready)
        await notify_socket.expect("WATCHDOG=1")
        status, _ = await get_json(daemon.url("/healthz"))
        assert status == 200
        # SIGHUP: a changed restart-only key is logged; the level change is applied.
        config.write_text(
            config.read_text()
            .replace("level = 'info'", "level = 'debug'")
            .replace('synchronous = "normal"', 'synchronous = "full"')
        )
        daemon.send_signal(signal.SIGHUP)
        reloading = await notify_socket.expect("RELOADING=1")
        assert any(f.startswith("MONOTONIC_USEC=") for f in reloading)
        await notify_socket.expect("READY=1")
        daemon.send_signal(signal.SIGTERM)
        await notify_socket.expect("STOPPING=1")
    finally:
        code = await daemon.stop()
    assert code == 0, daemon.stderr
    assert "logging.level changed: applied" in daemon.stderr
    assert "store.synchronous changed: needs a restart to take effect" in daemon.stderr
    assert "reload complete" in daemon.stderr


async def test_reload_with_a_broken_file_keeps_running(tmp_path: Path, notify_socket: NotifySocket) -> None:
    config = write_config(tmp_path)
    daemon = DaemonProcess(config, env={"NOTIFY_SOCKET": notify_socket.name})
    await daemon.spawn()
    try:
        await notify_socket.expect("READY=1")
        original = config.read_text()
        config.write_text(original + "[routing]\nstrategy = 5\n")
        daemon.send_signal(signal.SIGHUP)
        await notify_socket.expect("RELOADING=1")
        await notify_socket.expect("READY=1")
        config.write_text(original + "[routing]\nstrategy = 'least_bussy'\n")
        daemon.send_signal(signal.SIGHUP)
        await notify_socket.expect("RELOADING=1")
        await notify_socket.expect("READY=1")
        status, _ = await get_json(daemon.url("/healthz"))
        assert status == 200
    finally:
        assert await daemon.stop() == 0, daemon.stderr
    assert "reload failed, keeping the running configuration: routing.strategy: expected a string" in daemon.stderr
    assert "routing.strategy: no installed plugin provides strategy 'least_bussy'" in daemon.stderr
    assert "routing.strategy changed" not in daemon.stderr


async def test_broken_config_exits_1_naming_the_key(tmp_path: Path) -> None:
    config = write_config(tmp_path)
    config.write_text(config.read_text().replace("port =", "prot ="))
    daemon = DaemonProcess(config, port=1)
    await daemon.spawn()
    code = await daemon.wait()
    assert code == 1
    assert daemon.stderr.strip().splitlines()[-1].startswith("carebridge: server.prot: unknown key (expected one of:")
    assert "Traceback" not in daemon.stderr


async def test_enabled_channel_of_a_broken_plugin_exits_1_naming_it(tmp_path: Path, plugin_site: Path) -> None:
    config = write_config(tmp_path, "[channels.broken]\n")
    daemon = DaemonProcess(config, env={"PYTHONPATH": str(plugin_site)})
    await daemon.spawn()
    assert await daemon.wait() == 1
    assert "carebridge: channels.broken: enabled, but plugin 'broken' failed to load: ImportError: needs libbroken" in (
        daemon.stderr
    )


async def test_broken_plugin_not_enabled_starts_and_is_listed(tmp_path: Path, plugin_site: Path) -> None:
    config = write_config(tmp_path, "[channels.acme]\ntoken = 'tok-123456'\n")
    async with DaemonProcess(config, env={"PYTHONPATH": str(plugin_site)}) as daemon:
        status, body = await get_json(daemon.url("/healthz"))
        assert status == 200 and body["status"] == "degraded"
        assert body["plugins"]["broken"]["error"].startswith("ImportError: needs libbroken")
        assert body["plugins"]["acme"] == {"version": "1.2.3", "channels": ["acme"], "error": None}
        assert body["channels"]["acme"]["state"] == "connected"
    assert daemon.returncode == 0
    assert "plugin broken failed to load" in daemon.stderr


async def test_refused_credentials_stop_start_up(tmp_path: Path, plugin_site: Path) -> None:
    config = write_config(tmp_path, "[channels.acme]\ntoken = 'tok-123456'\nfail_start = 'auth'\n")
    daemon = DaemonProcess(config, env={"PYTHONPATH": str(plugin_site)})
    await daemon.spawn()
    assert await daemon.wait() == 1
    assert "carebridge: channel acme: the platform refused the credentials: token rejected by Acme" in daemon.stderr


async def test_port_in_use_exits_1(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        daemon = DaemonProcess(write_config(tmp_path, port=port))
        await daemon.spawn()
        assert await daemon.wait() == 1
    assert f"carebridge: server.port: cannot listen on 127.0.0.1:{port}" in daemon.stderr


async def test_wrong_master_key_exits_1(tmp_path: Path) -> None:
    config = write_config(tmp_path)
    async with DaemonProcess(config):
        pass
    key = tmp_path / "var" / "master.key"
    key.write_text("A" * 43 + "=\n")
    daemon = DaemonProcess(config)
    await daemon.spawn()
    assert await daemon.wait() == 1
    assert "master key does not match" in daemon.stderr


async def test_simulate_posts_a_signed_webhook_to_the_daemon(tmp_path: Path, plugin_site: Path) -> None:
    config = write_config(tmp_path, "[channels.acme]\ntoken = 'env:ACME_TOKEN'\n")
    env = {"PYTHONPATH": str(plugin_site), "ACME_TOKEN": "tok-123456"}
    async with DaemonProcess(config, env=env) as daemon:
        code, out, err = await run_cli(
            "simulate", "acme", "--from", "ann", "--text", "hello from sim", "-c", str(config), env=env
        )
        assert code == 0, err
        assert out.startswith("POST /webhooks/acme: HTTP 200")
    assert daemon.returncode == 0
    # The daemon never logs the message text or the token.
    assert "hello from sim" not in daemon.stderr and "tok-123456" not in daemon.stderr
    assert "POST /webhooks/acme 200" in daemon.stderr


async def test_init_output_runs_as_is(tmp_path: Path) -> None:
    code, _, err = await run_cli("init", str(tmp_path / "etc"))
    assert code == 0, err
    config = tmp_path / "etc" / "bridge.toml"
    port = free_port()
    config.write_text(config.read_text().replace("port = 8080", f"port = {port}"))
    async with DaemonProcess(config) as daemon:
        status, body = await get_json(daemon.url("/healthz"))
        assert status == 200 and body["channels"] == {"webchat": {"state": "connected", "reason": None}}
    assert daemon.returncode == 0, daemon.stderr


async def test_tls_serves_https(tmp_path: Path) -> None:
    trustme = pytest.importorskip("trustme")
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1")
    cert.private_key_and_cert_chain_pem.write_to_path(str(tmp_path / "server.pem"))
    cert.private_key_pem.write_to_path(str(tmp_path / "server.key"))
    config = write_config(tmp_path, server='tls_cert = "server.pem"\ntls_key = "server.key"')
    daemon = DaemonProcess(config)
    await daemon.spawn()
    try:
        import ssl

        context = ssl.create_default_context()
        ca.configure_trust(context)
        url = daemon.url("/healthz").replace("http://", "https://")
        async with aiohttp.ClientSession() as session:
            for _ in range(200):
                try:
                    async with session.get(url, ssl=context) as response:
                        assert response.status == 200
                        break
                except aiohttp.ClientConnectorError:
                    await asyncio.sleep(0.05)
            else:
                raise AssertionError(daemon.stderr)
    finally:
        assert await daemon.stop() == 0, daemon.stderr
    assert "listening on https://127.0.0.1:" in daemon.stderr


async def test_reload_with_a_broken_rules_file_keeps_the_previous_rules(
    tmp_path: Path, notify_socket: NotifySocket
) -> None:
    config = write_config(tmp_path)
    daemon = DaemonProcess(config, env={"NOTIFY_SOCKET": notify_socket.name})
    await daemon.spawn()
    try:
        await notify_socket.expect("READY=1")
        (tmp_path / "rules.yaml").write_text("queues: [unclosed\n")
        config.write_text(config.read_text() + "[routing]\nrules_file = 'rules.yaml'\n[logging]\nlevel = 'debug'\n")
        daemon.send_signal(signal.SIGHUP)
        await notify_socket.expect("RELOADING=1")
        await notify_socket.expect("READY=1")
        status, body = await get_json(daemon.url("/healthz"))
        assert status == 200 and body["outbox"]["running"] is True
        # Fixed, the same change applies on the next SIGHUP.
        (tmp_path / "rules.yaml").write_text("queues:\n  billing: Invoices\n")
        daemon.send_signal(signal.SIGHUP)
        await notify_socket.expect("RELOADING=1")
        await notify_socket.expect("READY=1")
    finally:
        assert await daemon.stop() == 0, daemon.stderr
    log = daemon.stderr.split("reload failed, keeping the running configuration: ", 1)[1]
    first, second = log.split("reloading", 1)
    assert first.startswith(f"{tmp_path / 'rules.yaml'}:2:")
    assert "changed: applied" not in first and "DEBUG" not in first  # nothing of that reload was applied
    assert "routing.rules_file changed: applied" in second and "logging.level changed: applied" in second
    assert f"relay: reloaded rules ({tmp_path / 'rules.yaml'})" in second
