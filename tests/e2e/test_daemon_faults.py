"""The real daemon under faults: SIGTERM during slow sends, and a disk that refuses writes.

Issue 17 item 7 and issue 18 item 4: after a SIGTERM under load, and after a
full or read-only disk, the restarted daemon delivered relays twice; and
/healthz said ``ok`` while the store could not write. Here the daemon is a
real subprocess, the platforms are the fake Graph APIs on loopback, and the
disk fault is a real kernel limit on the daemon process (``RLIMIT_FSIZE``
set with ``prlimit``: every write that would extend a file fails with EFBIG,
which SQLite reports as an I/O error, as it does for ENOSPC or EROFS).
"""

from __future__ import annotations

import asyncio
import re
import resource
import signal
import time
from pathlib import Path
from typing import Any

import aiohttp
import pyotp
import pytest

from tests.daemon import DaemonProcess, run_cli, write_config
from tests.e2e.harness import wait_for
from tests.e2e.world import World, channel_sections, store_rows

ALICE = "7000000000000001"  # the agent, on Messenger
CUSTOMERS = ("+15550002221", "+15550002222", "+15550002223")


async def _setup(world: World, tmp_path: Path, delivery: str, server: str = "") -> tuple[Path, str]:
    wa_url, graph_url = world.graph_urls()
    config = write_config(tmp_path, channel_sections(wa_url, graph_url) + delivery, server=server)
    status, out, err = await run_cli(
        "agent", "add", "alice", "--channel", f"messenger:{ALICE}", "--password-stdin", "-c", str(config),
        stdin=b"correct horse battery staple\n",
    )  # fmt: skip
    assert status == 0, err
    found = re.search(r"secret=([A-Z2-7]+)", out)
    assert found, out
    return config, found.group(1)


async def _conversations(world: World, secret: str, customers: tuple[str, ...]) -> None:
    """Alice logs in; each customer writes and is relayed to her."""
    await world.messenger(ALICE, f"/login {pyotp.TOTP(secret).now()}")
    await wait_for(lambda: any("logged in" in t for t in world.fb_texts(ALICE)), what="alice's login")
    for number, customer in enumerate(customers, start=1):
        await world.whatsapp(customer, f"question {number}", name=f"Customer {number}")
        await wait_for(lambda n=number: any(f"question {n}" in t for t in world.fb_texts(ALICE)), what="relay")


async def _get(daemon: DaemonProcess, path: str) -> tuple[int, Any]:
    async with aiohttp.ClientSession() as session, session.get(daemon.url(path)) as resp:
        body = await resp.json() if path == "/healthz" else await resp.text()
        return resp.status, body


def _metric(text: str, name: str) -> float:
    found = re.search(rf"^{re.escape(name)} (\S+)$", text, re.M)
    return float(found.group(1)) if found else 0.0


def _replies(db: Path) -> list[tuple[Any, ...]]:
    return store_rows(db, "SELECT status FROM outbox WHERE recipient_kind = 'contact' ORDER BY id")


async def test_sigterm_during_slow_sends_then_restart_sends_nothing_twice(world: World, tmp_path: Path) -> None:
    """Issue: a SIGTERM while sends took 20 s cancelled them at the worker's grace; 4 went out again after restart."""
    config, secret = await _setup(
        world, tmp_path, '[delivery]\nconfirm_wait = "1h"\n', server='shutdown_timeout = "3s"\n'
    )
    db = tmp_path / "var" / "carebridge.db"
    daemon = DaemonProcess(config)
    await daemon.start()
    try:
        world.point_at(daemon.url("/"))
        await _conversations(world, secret, CUSTOMERS)
        # WhatsApp takes each reply at once but answers only after 20 s; its statuses (naming our
        # delivery) come later still, and Meta retries them while nobody listens.
        world.wa.answer_delay = 20.0
        world.wa.status_webhooks = True
        world.wa.status_delay = 6.0
        world.wa.webhook_retries = 60
        world.wa.webhook_retry_every = 0.5
        for number in range(1, len(CUSTOMERS) + 1):
            await world.messenger(ALICE, f"/switch {number}")
            await world.messenger(ALICE, f"answer {number}")
        await wait_for(lambda: len(world.wa.sent) == len(CUSTOMERS), what="three replies taken by WhatsApp")
        started = time.monotonic()
    finally:
        await daemon.stop(signal.SIGTERM)
    assert daemon.returncode == 0, daemon.stderr
    assert time.monotonic() - started < 5.0, "the stop kept to the 3 s grace"
    assert "cut off" in daemon.stderr
    assert _replies(db) == [("pending",)] * 3  # cut off: uncertain, not given up and not sent again blindly

    world.wa.answer_delay = 0.0
    restarted = DaemonProcess(config)
    await restarted.start()
    try:
        world.point_at(restarted.url("/"))
        await wait_for(lambda: _replies(db) == [("sent",)] * 3, what="the statuses settle all three")
        await world.wa.drain()
        _status, metrics = await _get(restarted, "/metrics")
    finally:
        await restarted.stop()
    for number, customer in enumerate(CUSTOMERS, start=1):
        assert world.wa_texts(customer) == [f"answer {number}"], "each reply sent exactly once"
    assert _metric(metrics, 'carebridge_deliveries_total{channel="whatsapp",outcome="confirmed"}') == 3
    assert _metric(metrics, 'carebridge_deliveries_possible_duplicates_total{channel="whatsapp"}') == 0


def _refuse_writes(pid: int) -> None:
    """From now on the daemon cannot extend any file: its store's commits fail as on a full disk."""
    _soft, hard = resource.prlimit(pid, resource.RLIMIT_FSIZE)
    resource.prlimit(pid, resource.RLIMIT_FSIZE, (1, hard))


def _allow_writes(pid: int) -> None:
    _soft, hard = resource.prlimit(pid, resource.RLIMIT_FSIZE)
    resource.prlimit(pid, resource.RLIMIT_FSIZE, (hard, hard))


async def test_a_disk_that_refuses_writes_is_reported_and_the_outbox_resumes_at_once(
    world: World, tmp_path: Path
) -> None:
    """Issue: /healthz said ok with the disk full; 1,500 waiting relays took 10 minutes to drain afterwards."""
    # Retries an hour apart: only the store's recovery can bring anything forward.
    config, secret = await _setup(world, tmp_path, '[delivery]\nretry_base = "1h"\nretry_max = "1h"\n')
    db = tmp_path / "var" / "carebridge.db"
    daemon = DaemonProcess(config)
    await daemon.start()
    assert daemon.proc is not None
    pid = daemon.proc.pid
    try:
        world.point_at(daemon.url("/"))
        await _conversations(world, secret, CUSTOMERS[:1])
        world.wa.answer_delay = 1.0
        await world.messenger(ALICE, "answer while the disk fills")
        await wait_for(lambda: len(world.wa.sent) == 1, what="the reply taken by WhatsApp")
        _refuse_writes(pid)
        try:
            # WhatsApp answers; the daemon cannot commit that: it keeps the outcome and sends nothing new.
            async def reported() -> bool:
                status, health = await _get(daemon, "/healthz")
                return status == 503 and health["store"]["writable"] is False

            await wait_for(reported, what="/healthz 503 with the store not writable")
            status, health = await _get(daemon, "/healthz")
            assert health["status"] == "degraded" and "commit failed" in health["store"]["write_error"]
            _status, metrics = await _get(daemon, "/metrics")
            assert _metric(metrics, "carebridge_store_failed_commits_total") >= 1
            assert _metric(metrics, "carebridge_store_writable") == 0
            # A customer's webhook is refused (Meta retries it later), never acknowledged unstored.
            with pytest.raises(AssertionError, match="answered 500"):
                await world.wa.send_inbound(CUSTOMERS[0], "are you there?")
            await asyncio.sleep(2.0)
            assert len(world.wa.sent) == 1
        finally:
            _allow_writes(pid)
        recovered = time.monotonic()
        await wait_for(lambda: _replies(db) == [("sent",)], what="the kept outcome committed after the recovery")
        assert time.monotonic() - recovered < 15, "woken by the recovery, not by the 1 h retry"

        async def healthy() -> bool:
            status, health = await _get(daemon, "/healthz")
            return status == 200 and health["store"]["writable"] is True

        await wait_for(healthy, what="/healthz 200 again")
        # Meta delivers the refused message again: it is stored and relayed now.
        await world.whatsapp(CUSTOMERS[0], "are you there?")
        await wait_for(lambda: any("are you there?" in t for t in world.fb_texts(ALICE)), what="relay after recovery")
    finally:
        await daemon.stop()
    assert daemon.returncode == 0, daemon.stderr
    restarted = DaemonProcess(config)
    await restarted.start()
    try:
        await asyncio.sleep(1.0)
        assert _replies(db) == [("sent",)]
    finally:
        await restarted.stop()
    assert world.wa_texts(CUSTOMERS[0]) == ["answer while the disk fills"], "sent once, before and after the restart"
