"""Agents repository against the real encrypted store: enrolment, identities, shifts, candidates."""

from __future__ import annotations

from pathlib import Path

import pytest

from bridge import agents
from bridge.agents import Addresses, AgentError, directory
from bridge.models import Address
from tests.core.agentkit import (
    INSTALLED,
    Clock,
    add_agent,
    db_bytes,
    make_conversation,
    open_store,
)


async def test_create_agent_seals_everything_and_reads_it_back(tmp_path: Path) -> None:
    store = await open_store(tmp_path)
    try:
        agent, secret = await store.write(
            lambda tx: add_agent(
                tx,
                "alice",
                "whatsapp:31612345678",
                queues=("billing", "billing", "vip"),
                capacity=3,
                role="admin",
                email="Alice.Care@Example.ORG",
            )  # fmt: skip
        )
        assert agent.name == "alice" and agent.role == "admin"
        assert agent.preferred == Address("whatsapp", "+31612345678")
        assert agent.email == "alice.care@example.org"
        assert agent.queues == ("billing", "vip") and agent.capacity == 3
        assert not agent.disabled and agent.current_conversation_id is None
        assert await store.read(lambda tx: tx.agents.totp_secret(agent.id)) == secret
        assert await store.read(lambda tx: tx.agents.get_by_name("alice")) == agent
        assert await store.read(lambda tx: tx.agents.get(agent.id + 99)) is None
    finally:
        await store.close()
    raw = db_bytes(tmp_path / "var" / "carebridge.db")
    for plaintext in (b"31612345678", b"alice.care", b"Alice.Care", secret.encode()):
        assert plaintext not in raw
    assert b"alice" in raw  # the username is a plaintext, unique login name


async def test_agent_without_queue_serves_default(tmp_path: Path) -> None:
    store = await open_store(tmp_path)
    try:
        agent, _ = await store.write(lambda tx: add_agent(tx, "bob", "console"))
        assert agent.queues == ("default",) and agent.preferred == Address("console", "")
        assert await store.read(lambda tx: agents.find_agent_by_identity(tx, "console", "")) is None
    finally:
        await store.close()


async def test_duplicate_name_and_taken_address_are_refused(tmp_path: Path) -> None:
    store = await open_store(tmp_path)
    try:
        await store.write(lambda tx: add_agent(tx, "alice", "whatsapp:+31612345678"))
        with pytest.raises(AgentError, match="already exists"):
            await store.write(lambda tx: add_agent(tx, "alice", "messenger:1234"))
        with pytest.raises(AgentError, match="already belongs to agent 'alice'"):
            await store.write(lambda tx: add_agent(tx, "carol", "whatsapp:31612345678"))
        assert [a.name for a in await store.read(lambda tx: tx.agents.all())] == ["alice"]
    finally:
        await store.close()


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"name": "bad name"}, "invalid agent name"),
        ({"name": "42"}, "start with a letter"),
        ({"role": "root"}, "invalid role"),
        ({"capacity": 0}, "invalid capacity"),
        ({"queues": ("ok", "not ok")}, "invalid queue name"),
        ({"email": "nope"}, "not an email address"),
    ],
)
async def test_bad_enrolment_values_are_refused(tmp_path: Path, kwargs: dict[str, object], message: str) -> None:
    store = await open_store(tmp_path)
    args: dict[str, object] = {"name": "dave", "address": Address("messenger", "42"), "totp_secret": "A" * 32}
    args.update(kwargs)
    try:
        with pytest.raises(AgentError, match=message):
            await store.write(lambda tx: agents.create_agent(tx, **args))  # type: ignore[arg-type]
        assert await store.read(lambda tx: tx.agents.all()) == []
    finally:
        await store.close()


@pytest.mark.parametrize(
    ("text", "known", "message"),
    [
        ("whatsapp:12", None, "E.164"),
        ("whatsapp", None, "CHANNEL:ADDRESS"),
        ("messenger:abc", None, "PSID"),
        ("telegram:5", ("whatsapp", "messenger"), "unknown channel 'telegram'"),
        ("email:x", None, "not an email"),
    ],
)
def test_parse_address_explains_what_is_wrong(text: str, known: tuple[str, ...] | None, message: str) -> None:
    installed = {name: cls for name, cls in INSTALLED.items() if known is None or name in known}
    with pytest.raises(AgentError, match=message):
        Addresses(installed).parse(text)


def WA(number: str) -> str:  # noqa: N802 - reads like the channel's rule it applies
    """A WhatsApp number as the relay hands it over: normalized by the WhatsApp channel."""
    return Addresses(INSTALLED).normalize("whatsapp", number)


def test_parse_address_accepts_known_forms() -> None:
    addresses = Addresses(INSTALLED)
    assert addresses.parse("whatsapp:+1 555 123 4567") == Address("whatsapp", "+15551234567")
    assert addresses.parse("console") == Address("console", "")
    assert addresses.parse("messenger:123456") == Address("messenger", "123456")


async def test_identity_lookup_normalizes_and_records_last_inbound(tmp_path: Path) -> None:
    store = await open_store(tmp_path)
    try:
        alice, _ = await store.write(lambda tx: add_agent(tx, "alice", "whatsapp:+31612345678"))
        found = await store.read(lambda tx: agents.find_agent_by_identity(tx, "whatsapp", WA("31612345678")))
        assert found is not None and found.id == alice.id
        assert await store.read(lambda tx: agents.find_agent_by_identity(tx, "messenger", "31612345678")) is None
        assert await store.read(lambda tx: tx.agents.last_inbound_at(alice.id, "whatsapp")) is None
        await store.write(lambda tx: agents.touch_identity(tx, alice.id, "whatsapp", WA("31612345678"), 500.0))
        await store.write(lambda tx: agents.touch_identity(tx, alice.id, "whatsapp", WA("+31612345678"), 400.0))
        assert await store.read(lambda tx: tx.agents.last_inbound_at(alice.id, "whatsapp")) == 500.0
    finally:
        await store.close()


async def test_set_channel_moves_preference_and_retires_the_old_address(tmp_path: Path) -> None:
    store = await open_store(tmp_path)
    try:
        alice, _ = await store.write(lambda tx: add_agent(tx, "alice", "whatsapp:+31612345678"))
        await store.write(lambda tx: add_agent(tx, "bob", "messenger:777"))
        moved = await store.write(lambda tx: agents.set_channel(tx, alice.id, Address("email", "a@example.org")))
        assert moved.preferred == Address("email", "a@example.org")
        # Her old WhatsApp is retired: it no longer acts as her (it could be someone else's number now).
        assert await store.read(lambda tx: agents.find_agent_by_identity(tx, "whatsapp", WA("+31612345678"))) is None
        found = await store.read(lambda tx: agents.find_agent_by_identity(tx, "email", "A@Example.org"))
        assert found is not None and found.id == alice.id
        # An identity an admin added stays when she moves again.
        await store.write(lambda tx: directory.add_identity(tx, alice.id, Address("whatsapp", "+31611111111")))
        await store.write(lambda tx: agents.set_channel(tx, alice.id, Address("whatsapp", "+31687654321")))
        assert await store.read(lambda tx: directory.identities(tx, alice.id)) == [
            Address("whatsapp", "+31611111111"), Address("whatsapp", "+31687654321"),
        ]  # fmt: skip
        with pytest.raises(AgentError, match="already belongs to agent 'bob'"):
            await store.write(lambda tx: agents.set_channel(tx, alice.id, Address("messenger", "777")))
        assert (await store.read(lambda tx: tx.agents.get(alice.id))).channel == "whatsapp"  # type: ignore[union-attr]
    finally:
        await store.close()


async def test_shift_makes_agent_online_until_ttl_or_logout(tmp_path: Path) -> None:
    store = await open_store(tmp_path)
    try:
        alice, _ = await store.write(lambda tx: add_agent(tx, "alice", "console"))
        online = lambda now: store.read(lambda tx: agents.is_online(tx, alice.id, now))  # noqa: E731
        assert not await online(1000.0)
        await store.write(lambda tx: agents.start_shift(tx, alice.id, 1000.0, 100.0))
        assert await online(1000.0) and await online(1099.0)
        assert not await online(1100.0) and not await online(999.0)
        await store.write(lambda tx: agents.start_shift(tx, alice.id, 1050.0, 100.0))  # second login extends
        assert await online(1149.0)
        (count,) = await store.read(lambda tx: tx._session.conn.execute("SELECT COUNT(*) FROM shifts").fetchone())
        assert count == 1
        assert await store.write(lambda tx: agents.end_shift(tx, alice.id, 1060.0))
        assert not await online(1061.0)
        assert not await store.write(lambda tx: agents.end_shift(tx, alice.id, 1062.0))
    finally:
        await store.close()


async def test_disable_ends_the_shift_and_takes_agent_offline(tmp_path: Path) -> None:
    clock = Clock(5000.0)
    store = await open_store(tmp_path, clock)
    try:
        alice, _ = await store.write(lambda tx: add_agent(tx, "alice", "console"))
        await store.write(lambda tx: agents.start_shift(tx, alice.id, 5000.0, 3600.0))
        await store.write(lambda tx: agents.disable(tx, alice.id))
        assert not await store.read(lambda tx: agents.is_online(tx, alice.id, 5001.0))
        assert (await store.read(lambda tx: tx.agents.get(alice.id))).disabled  # type: ignore[union-attr]
        await store.write(lambda tx: agents.start_shift(tx, alice.id, 5002.0, 3600.0))
        assert not await store.read(lambda tx: agents.is_online(tx, alice.id, 5003.0))
    finally:
        await store.close()


async def test_online_candidates_filter_queue_capacity_shift_and_disabled(tmp_path: Path) -> None:
    clock = Clock(10_000.0)
    store = await open_store(tmp_path, clock)
    try:

        def setup(tx: object) -> dict[str, int]:
            ids = {}
            for name, queues, capacity in (("ann", (), 1), ("ben", ("default", "vip"), 2), ("cat", ("vip",), 2),
                                           ("dan", (), 2), ("eve", (), 2)):  # fmt: skip
                agent, _ = add_agent(tx, name, f"messenger:{len(ids) + 100}", queues=queues, capacity=capacity)
                ids[name] = agent.id
                if name != "dan":  # dan is offline
                    agents.start_shift(tx, agent.id, 9_000.0, 3600.0)
            agents.disable(tx, ids["eve"])
            make_conversation(tx, name="Jan", channel="whatsapp", address="+31600000001", agent_id=ids["ann"])
            return ids

        ids = await store.write(setup)
        default = await store.read(lambda tx: agents.online_candidates(tx, "default", 10_000.0))
        assert [c.agent.name for c in default] == ["ben"]  # ann is full, cat serves vip only
        vip = await store.read(lambda tx: agents.online_candidates(tx, "vip", 10_000.0))
        assert sorted(c.agent.name for c in vip) == ["ben", "cat"]
        ben = default[0]
        assert ben.open_conversations == 0 and ben.idle_since == 9_000.0
        assert await store.read(lambda tx: agents.online_candidates(tx, "default", 12_601.0)) == []  # shifts expired
        assert await store.read(lambda tx: tx.conversations.count_assigned(ids["ann"])) == 1
    finally:
        await store.close()


async def test_current_conversation_is_stored(tmp_path: Path) -> None:
    store = await open_store(tmp_path)
    try:
        alice, _ = await store.write(lambda tx: add_agent(tx, "alice", "console"))
        conv = await store.write(
            lambda tx: make_conversation(tx, name="Jan", channel="whatsapp", address="+31600000001", agent_id=alice.id)
        )
        await store.write(lambda tx: tx.agents.set_current_conversation(alice.id, conv))
        assert (await store.read(lambda tx: tx.agents.get(alice.id))).current_conversation_id == conv  # type: ignore[union-attr]
        await store.write(lambda tx: tx.agents.set_current_conversation(alice.id, None))
        assert (await store.read(lambda tx: tx.agents.get(alice.id))).current_conversation_id is None  # type: ignore[union-attr]
    finally:
        await store.close()


@pytest.mark.parametrize(
    ("address", "masked"),
    [
        (Address("whatsapp", "+31612345678"), "whatsapp:+3161****78"),
        (Address("messenger", "1234567890123"), "messenger:12345****23"),
        (Address("email", "alice@example.org"), "email:a***@example.org"),
        (Address("messenger", "12345"), "messenger:*****"),
        (Address("console", ""), "console"),
    ],
)
def test_mask_address_hides_the_middle(address: Address, masked: str) -> None:
    assert agents.mask_address(address) == masked
