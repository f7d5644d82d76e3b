"""Relay core over a real store and real in-process channels."""

from __future__ import annotations

from pathlib import Path

import pyotp

from bridge import agents as agents_repo
from tests.e2e.harness import add_agent, make_bridge, wait_for


async def test_customer_message_reaches_online_agent_with_prefix(tmp_path: Path) -> None:
    bridge = await make_bridge(tmp_path)
    try:
        mem, second = bridge.channels["memory"], bridge.channels["second"]
        agent, secret = await add_agent(bridge, "alice", "second:alice-psid")
        await second.inbound("alice-psid", f"/login {pyotp.TOTP(secret).now()}")
        await mem.inbound("cust-1", "Hello, my order is late", sender_name="Jan")
        await wait_for(lambda: any("order is late" in t for t in second.texts_to("alice-psid")), what="relay")
        relayed = [t for t in second.texts_to("alice-psid") if "order is late" in t][0]
        assert relayed.startswith("[#1 Jan · Memory] Hello")
        await second.inbound("alice-psid", "We are on it!")
        await wait_for(lambda: mem.texts_to("cust-1") == ["We are on it!"], what="reply")
    finally:
        await bridge.close()
