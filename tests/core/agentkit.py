"""Shared set-up for the agent, command and transfer tests: a real store in tmp_path.

Nothing here replaces our own code: the store is H2's real encrypted SQLite
store, the relay context is H5's, the command table is the real one.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pyotp

from bridge.agents import Addresses, Agent, create_agent
from bridge.config import Config, RoutingConfig, StoreConfig
from bridge.models import Address
from bridge.plugins import make_plugin_manager
from bridge.store import Store

#: The channels installed in the test environment (the built-in plugins), for their address rules.
INSTALLED = make_plugin_manager().channels


def parse_address(text: str) -> Address:
    """``CHANNEL:ADDRESS`` normalized as the daemon would: by the installed channel (test channels as given)."""
    address = Address.parse(text)
    if address.channel in INSTALLED or address.channel == "console":
        return Addresses(INSTALLED).parse(text)
    return address


class Clock:
    """A settable clock shared by the store and the relay context."""

    def __init__(self, now: float = 1_800_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def store_config(tmp_path: Path) -> StoreConfig:
    return StoreConfig(path=tmp_path / "var" / "carebridge.db", key=f"file:{tmp_path / 'var' / 'master.key'}")


async def open_store(tmp_path: Path, clock: Callable[[], float] | None = None) -> Store:
    (tmp_path / "var").mkdir(exist_ok=True)
    return await Store.open(store_config(tmp_path), clock=clock)


def config_for(tmp_path: Path, **routing: Any) -> Config:
    return Config(path=None, base_dir=tmp_path, store=store_config(tmp_path), routing=RoutingConfig(**routing))


def add_agent(tx: Any, name: str, address: str, *, queues: tuple[str, ...] = (), capacity: int = 5,
              role: str = "agent", email: str | None = None) -> tuple[Agent, str]:  # fmt: skip
    """Create an agent; return it and its TOTP secret."""
    secret = pyotp.random_base32()
    agent = create_agent(
        tx, name=name, address=parse_address(address), role=role, email=email, queues=queues,
        capacity=capacity, totp_secret=secret, password_hash=None,
    )  # fmt: skip
    return agent, secret


def make_conversation(tx: Any, *, name: str, channel: str, address: str, queue: str = "default",
                      agent_id: int | None = None) -> int:  # fmt: skip
    """A customer with one conversation (assigned to ``agent_id`` when given)."""
    identity, _ = tx.contacts.get_or_create_identity(channel, address, name=name, inbound_at=tx.now())
    conv = tx.conversations.create(identity.contact_id, identity.id, channel, queue=queue)
    conv_id = conv if isinstance(conv, int) else conv.id
    if agent_id is not None:
        tx.conversations.update(conv_id, status="assigned", agent_id=agent_id)
    return int(conv_id)


def db_bytes(path: Path) -> bytes:
    """The database file with its -wal and -shm, as an attacker holding the disk sees them."""
    out = b""
    for suffix in ("", "-wal", "-shm", "-journal"):
        part = Path(str(path) + suffix)
        if part.exists():
            out += part.read_bytes()
    return out


class Desk:
    """A real store plus H5's relay context, driven through the relay's real ingest path.

    Customers and agents "write" by handing InboundMessages to ``ingest_batch``
    inside ``store.write``, exactly as the channels' deliver callback does;
    what the bridge would send is read back, decrypted, from the outbox.
    """

    def __init__(self, store: Store, rctx: Any, clock: Clock) -> None:
        self.store = store
        self.rctx = rctx
        self.clock = clock
        self._seen: dict[str | None, int] = {}
        self._n = 0
        self.secrets: dict[str, str] = {}

    @classmethod
    async def open(cls, tmp_path: Path, *, pm_plugins: tuple[tuple[str, object], ...] = (), **routing: Any) -> Desk:
        from bridge.relay.commands import CommandTable
        from bridge.relay.context import RelayContext
        from bridge.relay.rules import load_rules
        from bridge.relay.templates import load_templates

        clock = Clock()
        store = await open_store(tmp_path, clock)
        registry = make_plugin_manager(load_entry_points=False, plugins=pm_plugins)
        config = config_for(tmp_path, **routing)
        rctx = RelayContext(
            config=config, hooks=registry.hooks, templates=load_templates(None), rules=load_rules(None),
            addresses=Addresses(INSTALLED), channels=frozenset({"console", "whatsapp", "messenger", "email"}),
            first_line=frozenset({"email"}), clock=clock, commands=CommandTable.build(registry.hooks),
        )  # fmt: skip
        return cls(store, rctx, clock)

    async def close(self) -> None:
        await self.store.close()

    async def add_agent(self, name: str, address: str, **kwargs: Any) -> Agent:
        agent, secret = await self.store.write(lambda tx: add_agent(tx, name, address, **kwargs))
        self.secrets[name] = secret
        return agent

    async def agent(self, name: str) -> Agent:
        found = await self.store.read(lambda tx: tx.agents.get_by_name(name))
        assert found is not None
        return found

    def _message(self, channel: str, sender: str, text: str, name: str | None = None,
                 reply_to: str | None = None) -> Any:  # fmt: skip
        from bridge.models import InboundMessage

        self._n += 1
        return InboundMessage(channel=channel, sender=sender, external_id=f"m{self._n}", text=text,
                              timestamp=self.clock.now, sender_name=name, reply_to=reply_to)  # fmt: skip

    async def deliver(self, message: Any) -> Any:
        from bridge.relay.ingest import ingest_batch

        return await self.store.write(lambda tx: ingest_batch(tx, self.rctx, message.channel, [message]))

    async def customer(self, address: str, text: str, name: str = "Jan") -> int:
        """A customer writes (``whatsapp:+31…``); return their conversation id."""
        channel, _, sender = address.partition(":")
        result = await self.deliver(self._message(channel, sender, text, name))
        return int(result.customer[-1][1])

    async def say(self, name: str, text: str) -> None:
        """Agent ``name`` writes ``text`` from their preferred channel."""
        agent = await self.agent(name)
        await self.deliver(self._message(agent.channel, agent.address, text))

    def code(self, name: str, at: float | None = None) -> str:
        return pyotp.TOTP(self.secrets[name]).at(self.clock.now if at is None else at)

    async def login(self, name: str) -> list[str]:
        await self.say(name, f"/login {self.code(name)}")
        # The next code's time step: a second login in the same 30 s would be a replay.
        self.clock.advance(30)
        return await self.sent_to(name)

    async def sent_to(self, name: str | None = None) -> list[str]:
        """Texts enqueued since the last call (to agent ``name``, or to everyone when None)."""
        agent = await self.agent(name) if name is not None else None

        def read(tx: Any) -> list[Any]:
            since = self._seen.get(name, 0)
            rows = tx._session.conn.execute("SELECT id FROM outbox WHERE id > ? ORDER BY id", (since,)).fetchall()
            return [tx.outbox.load(r[0]) for r in rows]

        rows = await self.store.read(read)
        if rows:
            self._seen[name] = rows[-1].id
        if agent is None:
            return [r.text for r in rows]
        return [r.text for r in rows if r.recipient_kind == "agent" and r.recipient_id == agent.id]

    async def deliveries(self) -> list[Any]:
        """Every outbox row, decrypted."""

        def read(tx: Any) -> list[Any]:
            return [
                tx.outbox.load(r[0]) for r in tx._session.conn.execute("SELECT id FROM outbox ORDER BY id").fetchall()
            ]

        return list(await self.store.read(read))

    async def conversation(self, conversation_id: int) -> Any:
        return await self.store.read(lambda tx: tx.conversations.get(conversation_id))
