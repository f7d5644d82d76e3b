"""Two real daemons on one PostgreSQL database: one SIGKILLed mid-burst, nothing lost, nothing doubled.

Customers write on WhatsApp, their webhooks alternating between the two
daemons; every message is relayed to an agent on Messenger. Mid-burst one
daemon is killed with SIGKILL while its sends are on the wire (the fake
holds them, so the platform never has them), later restarted. Every
acknowledged message must be stored once, relayed once, and in the order the
customer wrote it.
"""

from __future__ import annotations

import asyncio
import re
import signal
import time
from pathlib import Path

import psycopg
import pyotp

from bridge.store.keyfile import generate_key, write_key_file
from tests.daemon import DaemonProcess, free_port, run_cli, write_config
from tests.e2e.harness import wait_for
from tests.e2e.world import World, channel_sections

ALICE = "7000000000000042"
CUSTOMERS = ("+15550003001", "+15550003002", "+15550003003", "+15550003004")
_RELAYED = re.compile(r"^\[#\d+ [^\]]*\] (c\d-m\d+)$")


def _relayed(world: World) -> list[str]:
    """The burst's texts as the agent received them, in order."""
    return [m.group(1) for t in world.fb_texts(ALICE) if (m := _RELAYED.match(t))]


async def _post_round(world: World, nodes: list[DaemonProcess], live: list[int], n: int, acked: list[str]) -> None:
    """Round ``n``: each customer writes once, the webhooks alternating between the live daemons."""
    for c, number in enumerate(CUSTOMERS):
        world.point_at(nodes[live[c % len(live)]].url("/"))
        text = f"c{c}-m{n}"
        await world.whatsapp(number, text, name=f"Customer {c}")  # returns once answered 200: committed
        acked.append(text)


async def _kill_while_sending(world: World, nodes: list[DaemonProcess], dsn: str, n: int, acked: list[str]) -> int:
    """SIGKILL node b while its send to the agent waits at the platform; return the next round's number.

    Each try holds the platform, lets a round of webhooks in through node a
    (so the idle node b is likely to claim the relay, woken by NOTIFY) and
    looks at who leased the delivery now on the wire; node a's turn is let
    through and the next round tried.
    """
    for _attempt in range(12):
        await wait_for(lambda: len(_relayed(world)) == len(acked), what="the backlog delivered")
        world.graph.hold()
        await _post_round(world, nodes, [0], n, acked)  # node a busy taking them: node b's worker is idle
        n += 1
        await wait_for(lambda: world.graph.held > 0, what="a send on the wire")
        if _sending(dsn, nodes[1]):
            await nodes[1].stop(signal.SIGKILL)
            await asyncio.sleep(0.5)  # the fake sees the connection gone
            world.graph.release()
            return n
        world.graph.release()
    raise AssertionError("node b never held the send on the wire")


def _sending(dsn: str, node: DaemonProcess) -> bool:
    """Whether ``node`` holds the lease of a delivery not yet recorded as sent."""
    assert node.proc is not None
    with psycopg.connect(dsn) as conn:
        row = conn.execute(
            "SELECT count(*) FROM outbox WHERE status = 'pending' AND lease_owner LIKE %s AND lease_until > %s",
            (f"%:{node.proc.pid}:%", time.time()),
        ).fetchone()
    return bool(row and row[0])


async def test_two_daemons_share_the_work_and_survive_a_sigkill(world: World, tmp_path: Path, pg_dsn: str) -> None:
    wa_url, graph_url = world.graph_urls()
    (tmp_path / "var").mkdir()
    write_key_file(tmp_path / "var" / "master.key", generate_key())  # one key, one media directory, for both
    extra = f'backend = "postgresql"\ndsn = "{pg_dsn}"\n' + channel_sections(wa_url, graph_url)
    extra += '[delivery]\nlease = "3s"\nretry_base = "1s"\nretry_max = "2s"\n'
    configs = [write_config(tmp_path, extra, port=free_port(), name=f"{node}.toml") for node in ("a", "b")]
    status, out, err = await run_cli(
        "agent", "add", "alice", "--channel", f"messenger:{ALICE}", "--password-stdin", "-c", str(configs[0]),
        stdin=b"correct horse battery staple\n",
    )  # fmt: skip
    assert status == 0, err
    found = re.search(r"secret=([A-Z2-7]+)", out)
    assert found, out

    nodes = [DaemonProcess(configs[0]), DaemonProcess(configs[1])]
    await asyncio.gather(*(node.start() for node in nodes))
    acknowledged: list[str] = []
    try:
        world.point_at(nodes[1].url("/"))
        await world.messenger(ALICE, f"/login {pyotp.TOTP(found.group(1)).now()}")  # the shift is in the database
        await wait_for(lambda: any("shift" in t.lower() or "logged in" in t.lower() for t in world.fb_texts(ALICE)),
                       what="the login confirmed")  # fmt: skip
        for n in range(5):  # both daemons take webhooks
            await _post_round(world, nodes, [0, 1], n, acknowledged)
        after_kill = await _kill_while_sending(world, nodes, pg_dsn, 5, acknowledged)
        for n in range(after_kill, after_kill + 2):  # only node a is left
            await _post_round(world, nodes, [0], n, acknowledged)
        nodes[1] = DaemonProcess(configs[1])  # node b comes back
        await nodes[1].start()
        rounds = after_kill + 5
        for n in range(after_kill + 2, rounds):
            await _post_round(world, nodes, [0, 1], n, acknowledged)

        expected = len(CUSTOMERS) * rounds
        await wait_for(lambda: len(set(_relayed(world))) >= expected, timeout=90, what="every message relayed")
        await asyncio.sleep(1.0)  # room for a late duplicate to show up
        relayed = _relayed(world)
        assert sorted(relayed) == sorted(acknowledged), "each acknowledged message relayed exactly once"
        for c in range(len(CUSTOMERS)):
            mine = [t for t in relayed if t.startswith(f"c{c}-")]
            assert mine == [f"c{c}-m{n}" for n in range(rounds)], f"customer {c} out of order: {mine}"
        with psycopg.connect(pg_dsn) as conn:
            stored = conn.execute("SELECT count(*) FROM messages WHERE direction = 'in'").fetchone()
            pending = conn.execute("SELECT count(*) FROM outbox WHERE status = 'pending'").fetchone()
            senders = conn.execute("SELECT count(DISTINCT lease_owner) FROM outbox WHERE status = 'sent'").fetchone()
        assert stored == (expected,)  # stored once: webhooks on either node, none doubled
        assert pending == (0,)
        assert senders[0] >= 2, "both daemons delivered"
        assert len(world.graph.dropped) == 1, "the killed daemon's send never reached the platform"
    finally:
        for node in nodes:
            if node.returncode is None:
                await node.stop()
    assert nodes[0].returncode == 0, nodes[0].stderr
    assert nodes[1].returncode == 0, nodes[1].stderr
    for node in nodes:
        assert " ERROR " not in node.stderr, node.stderr
