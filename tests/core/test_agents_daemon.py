"""``carebridge agent`` against a RUNNING daemon: the daemon sees each change at once.

The daemon is the real subprocess; the agent writes over the real WhatsApp
webhook path from the fake Cloud API, and the daemon's answers are what the
fake accepted for the agent's number.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pyotp

from tests.daemon import DaemonProcess, run_cli, write_config
from tests.e2e.harness import wait_for
from tests.e2e.world import (
    PAGE_ID,
    PAGE_TOKEN,
    WA_NUMBER_ID,
    WA_SECRET,
    WA_TEMPLATE,
    WA_TOKEN,
    World,
    channel_sections,
)
from tests.fakes.messenger_graph import FakeMessengerGraph
from tests.fakes.whatsapp_cloud import FakeWhatsAppCloud

ALICE = "+15550001111"


async def test_agent_added_and_disabled_while_the_daemon_runs(
    tmp_path: Path, aiohttp_server: Callable[..., Any]
) -> None:
    wa = FakeWhatsAppCloud(token=WA_TOKEN, phone_number_id=WA_NUMBER_ID, app_secret=WA_SECRET, templates=(WA_TEMPLATE,))
    graph = FakeMessengerGraph(page_id=PAGE_ID, token=PAGE_TOKEN)
    world = World(wa, graph)
    wa_server = await aiohttp_server(wa.app)
    graph_server = await aiohttp_server(graph.app)
    config = write_config(tmp_path, channel_sections(wa.graph_url(wa_server), str(graph_server.make_url("/v25.0"))))

    async with DaemonProcess(config) as daemon:
        world.point_at(daemon.url("/"))
        status, out, err = await run_cli(
            "agent", "add", "alice", "--channel", f"whatsapp:{ALICE}", "--password-stdin", "-c", str(config),
            stdin=b"correct horse battery staple\n",
        )  # fmt: skip
        assert status == 0, err
        found = re.search(r"secret=([A-Z2-7]{32})", out)
        assert found, out
        await world.whatsapp(ALICE, f"/login {pyotp.TOTP(found.group(1)).now()}")
        await wait_for(
            lambda: any(t.startswith("You are logged in") for t in world.wa_texts(ALICE)), what="login answer"
        )

        status, out, err = await run_cli("agent", "list", "-c", str(config))
        assert status == 0, err
        assert re.search(
            r"^alice\s+agent\s+whatsapp:\+1555\*\*\*\*11\s+default\s+5\s+yes\s+no\s+whatsapp:\+1555\*\*\*\*11$",
            out,
            re.M,
        ), out

        status, out, err = await run_cli("agent", "disable", "alice", "-c", str(config))
        assert status == 0, err
        await world.whatsapp(ALICE, "/list")
        disabled = "Your agent account is disabled. Ask an administrator."
        await wait_for(lambda: disabled in world.wa_texts(ALICE), what="the daemon seeing the disable")
    assert daemon.returncode == 0, daemon.stderr
    assert ALICE.lstrip("+") not in daemon.stderr and ALICE not in daemon.stderr
