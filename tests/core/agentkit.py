"""Shared set-up for the agent, command and transfer tests: a real store in tmp_path.

Nothing here replaces our own code: the store is H2's real encrypted SQLite
store, the relay context is H5's, the command table is the real one.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pyotp

from bridge.agents import Agent, create_agent
from bridge.config import Config, RoutingConfig, StoreConfig
from bridge.models import Address
from bridge.store import Store


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
        tx, name=name, address=Address.parse(address), role=role, email=email, queues=queues,
        capacity=capacity, totp_secret=secret, password_hash=None,
    )  # fmt: skip
    return agent, secret


def make_conversation(tx: Any, *, name: str, channel: str, address: str, queue: str = "default",
                      agent_id: int | None = None) -> int:  # fmt: skip
    """A customer with one conversation (assigned to ``agent_id`` when given)."""
    identity, _ = tx.get_or_create_identity(channel, address, name=name, inbound_at=tx.now())
    conv = tx.create_conversation(identity.contact_id, identity.id, channel, queue=queue)
    conv_id = conv if isinstance(conv, int) else conv.id
    if agent_id is not None:
        tx.update_conversation(conv_id, status="assigned", agent_id=agent_id)
    return int(conv_id)


def db_bytes(path: Path) -> bytes:
    """The database file with its -wal and -shm, as an attacker holding the disk sees them."""
    out = b""
    for suffix in ("", "-wal", "-shm", "-journal"):
        part = Path(str(path) + suffix)
        if part.exists():
            out += part.read_bytes()
    return out
