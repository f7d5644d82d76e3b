"""An agent's identities through the relay: a moved agent's old address is nobody's agent any more."""

from __future__ import annotations

from pathlib import Path

from bridge import agents
from bridge.agents import AgentError, directory
from bridge.models import Address
from tests.e2e.harness import add_agent, login, make_bridge, wait_for

OLD = "+15550000100"
NEW = "+15550000200"
EXTRA = "+15550000300"


async def test_a_moved_agents_old_address_is_refused_as_the_agent(tmp_path: Path) -> None:
    bridge = await make_bridge(tmp_path)
    try:
        mem, second = bridge.channels["memory"], bridge.channels["second"]
        alice, secret = await add_agent(bridge, "alice", f"memory:{OLD}")
        await bridge.store.write(lambda tx: agents.set_channel(tx, alice.id, Address("second", NEW)))
        # the old address writes a command: it is a customer now, the command is not run
        await mem.inbound(OLD, "/help")  # type: ignore[attr-defined]
        await wait_for(lambda: len(mem.texts_to(OLD)) == 1, timeout=15, what="the queued notice")  # type: ignore[attr-defined]
        assert "busy" in mem.texts_to(OLD)[0]  # type: ignore[attr-defined]
        assert not any("Commands:" in m.text for m in [*mem.sent, *second.sent])  # type: ignore[attr-defined]
        conv = await bridge.store.read(lambda tx: tx.conversations.get(1))
        assert conv is not None and conv.channel == "memory"
        assert await bridge.store.read(lambda tx: agents.find_agent_by_identity(tx, "memory", OLD)) is None
        # the new address is hers, and gets the old address's message as a customer's
        await login(bridge, "second", NEW, secret)
        await wait_for(lambda: any("[#1 " in t and "/help" in t for t in second.texts_to(NEW)), what="relay")  # type: ignore[attr-defined]
    finally:
        await bridge.close()


async def test_identities_are_listed_added_and_removed(tmp_path: Path) -> None:
    bridge = await make_bridge(tmp_path)
    try:
        alice, _ = await add_agent(bridge, "alice", f"memory:{OLD}")
        bob, _ = await add_agent(bridge, "bob", f"memory:{NEW}")
        store = bridge.store
        await store.write(lambda tx: directory.add_identity(tx, alice.id, Address("second", EXTRA)))
        listed = await store.read(lambda tx: directory.identities(tx, alice.id))
        assert listed == [Address("memory", OLD), Address("second", EXTRA)]
        for refused, message in (
            (lambda tx: directory.add_identity(tx, alice.id, Address("memory", NEW)), "already belongs to agent 'bob'"),
            (lambda tx: directory.remove_identity(tx, alice.id, Address("memory", OLD)), "where alice receives"),
            (lambda tx: directory.remove_identity(tx, alice.id, Address("memory", NEW)), "not an identity of alice"),
        ):
            try:
                await store.write(refused)
            except AgentError as err:
                assert message in str(err)
            else:
                raise AssertionError(f"not refused: {message}")
        await store.write(lambda tx: directory.remove_identity(tx, alice.id, Address("second", EXTRA)))
        await bridge.channels["second"].inbound(EXTRA, "/help")  # type: ignore[attr-defined]
        conv = await store.read(lambda tx: tx.conversations.get(1))
        assert conv is not None and conv.channel == "second"  # a customer, not alice
        assert await store.read(lambda tx: directory.identities(tx, bob.id)) == [Address("memory", NEW)]
    finally:
        await bridge.close()
