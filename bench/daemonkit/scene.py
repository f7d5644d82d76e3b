"""Setting the scene: the processes, the agents on shift and the customers already talking.

A benchmark of an empty daemon measures a cold cache and first-message
paths (new contact, new conversation, routing, a queued notice). Before
anything is timed, the scene holds what a working day has: N agents on
Messenger, enrolled with the CLI and logged in with ``/login CODE`` (TOTP
from the URI the CLI printed, confirmation awaited at the fake Graph API),
Messenger customers each assigned to one of them, and a pool of WhatsApp
customers whose conversations wait in the queue no agent serves.
"""

from __future__ import annotations

import asyncio
import itertools
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

from .cpuwatch import DISTURBED, CpuWatch, disturbed
from .openloop import closed_loop
from .payloads import (
    TEXT,
    Ids,
    MetaApp,
    Webhook,
    marked,
    messenger_text,
    psid,
    wa_number,
    whatsapp_text,
)
from .procs import Child, Children, Cores, free_port, wait_http
from .world import Agent, Daemon, FakeGraphHandle

KIT = Path(__file__).resolve().parent
AGENT_POOL, CUSTOMER_POOL = 1, 2  # Messenger PSID pools
INGEST_POOL, CONVERSATION_POOL = 555, 666  # WhatsApp number pools


@dataclass(frozen=True, slots=True)
class Sizes:
    """How big the scene is."""

    agents: int
    customers_per_agent: int
    ingest_senders: int


@dataclass
class Scene:
    """Everything the phases share."""

    directory: Path
    children: Children
    session: aiohttp.ClientSession
    cores: Cores
    sizes: Sizes
    app: MetaApp = field(default_factory=MetaApp)
    ids: Ids = field(default_factory=Ids)
    seqs: Iterator[int] = field(default_factory=lambda: itertools.count(1))
    cpu: CpuWatch = field(init=False)
    quiet_until: float = 0.0  # monotonic deadline of --wait-quiet: measurements wait for quiet until then
    fake: FakeGraphHandle | None = None
    baseline: Child | None = None
    baseline_url: str = ""
    daemon: Daemon | None = None
    agents: list[Agent] = field(default_factory=list)
    customers: list[str] = field(default_factory=list)
    senders: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.cpu = CpuWatch(self.children, self.cores)

    async def quiet(self) -> dict[str, float]:
        """Wait (until ``quiet_until``) for a 2-second window in which other processes stay idle.

        Returns the machine's load over the last window; with no time left,
        one window is measured and returned whatever it shows.
        """
        while True:
            before = self.cpu.snapshot()
            await asyncio.sleep(2.0 if self.quiet_until else 0.0)
            load = self.cpu.between(before, self.cpu.snapshot())
            if load["others"] <= DISTURBED or time.monotonic() >= self.quiet_until:
                return load

    def retry_disturbed(self, figures: dict[str, Any]) -> bool:
        """True when a measurement was disturbed and --wait-quiet leaves time to take it again."""
        return bool(disturbed(figures)) and time.monotonic() < self.quiet_until

    @property
    def graph(self) -> FakeGraphHandle:
        if self.fake is None:
            raise RuntimeError("the fake Graph API is not running")
        return self.fake

    @property
    def main(self) -> Daemon:
        if self.daemon is None:
            raise RuntimeError("the daemon is not running")
        return self.daemon

    def relay_hooks(self, count: int, customers: list[str] | None = None) -> list[tuple[int, Webhook]]:
        """``count`` Messenger customer messages, round-robin over the customers, each with its marker."""
        pool = customers or self.customers
        out = []
        for i in range(count):
            seq = next(self.seqs)
            out.append((seq, messenger_text(self.app, pool[i % len(pool)], self.ids.mid(), marked(seq))))
        return out

    def ingest_hooks(self, count: int) -> Iterator[Webhook]:
        """``count`` WhatsApp messages from the ingest pool, each with a new message id."""
        for i in range(count):
            yield whatsapp_text(self.app, self.senders[i % len(self.senders)], self.ids.wamid(), TEXT)


async def start_fake(scene: Scene) -> None:
    port = free_port()
    app = scene.app
    argv = [sys.executable, str(KIT / "fake_graph.py"), "--port", str(port), "--phone-number-id",
            app.phone_number_id, "--wa-token", app.wa_token, "--page-id", app.page_id, "--page-token", app.page_token]  # fmt: skip
    child = scene.children.start("fake-graph", argv, cpu=scene.cores.load)
    await wait_http(child, f"http://127.0.0.1:{port}/_bench/stats")
    scene.fake = FakeGraphHandle(child, port, scene.session)


async def start_baseline(scene: Scene) -> None:
    port = free_port()
    argv = [sys.executable, str(KIT / "baseline.py"), "--port", str(port)]
    scene.baseline = scene.children.start("baseline", argv, cpu=scene.cores.server)
    scene.baseline_url = f"http://127.0.0.1:{port}"
    await wait_http(scene.baseline, f"{scene.baseline_url}/healthz")


async def start_daemon(scene: Scene, name: str) -> Daemon:
    daemon = Daemon(scene.directory / name, scene.children, scene.app, scene.session, scene.graph.graph_url,
                    scene.cores.server)  # fmt: skip
    await daemon.start()
    return daemon


async def staff(scene: Scene, daemon: Daemon) -> list[Agent]:
    """Enrol the agents with the CLI and log each in over Messenger."""
    agents = []
    for n in range(scene.sizes.agents):
        agent = await daemon.add_agent(f"agent{n + 1}", psid(AGENT_POOL, n + 1))
        await daemon.login(agent, scene.ids.mid(), scene.graph)
        agents.append(agent)
    return agents


async def wait_arrivals(scene: Scene, seqs: set[int], timeout: float) -> dict[int, float]:
    """Collect arrivals at the fake until every ``seq`` came (or ``timeout``); return them."""
    got: dict[int, float] = {}
    deadline = time.monotonic() + timeout
    while True:
        got.update({k: v for k, v in (await scene.graph.take_arrivals()).items() if k in seqs})
        if len(got) >= len(seqs) or time.monotonic() > deadline:
            return got
        await asyncio.sleep(0.05)


async def open_customers(scene: Scene, daemon: Daemon) -> list[str]:
    """Each Messenger customer writes once; wait until every first message reached its agent."""
    customers = [psid(CUSTOMER_POOL, i + 1) for i in range(scene.sizes.agents * scene.sizes.customers_per_agent)]
    hooks = scene.relay_hooks(len(customers), customers)
    if await closed_loop(daemon.url, [hook for _, hook in hooks]):
        raise RuntimeError("the daemon refused a customer's first message")
    arrived = await wait_arrivals(scene, {seq for seq, _ in hooks}, timeout=120)
    if len(arrived) != len(hooks):
        raise RuntimeError(f"only {len(arrived)} of {len(hooks)} first messages reached an agent")
    await daemon.wait_outbox_empty(timeout=120)
    return customers


async def open_waiting(scene: Scene, daemon: Daemon, pool: int, count: int) -> list[str]:
    """``count`` new WhatsApp customers write once: conversations queued, one notice each (awaited)."""
    numbers = [wa_number(pool, i + 1) for i in range(count)]
    for start in range(0, count, 10_000):  # bounded memory for large counts
        chunk = [whatsapp_text(scene.app, n, scene.ids.wamid(), TEXT) for n in numbers[start : start + 10_000]]
        if await closed_loop(daemon.url, chunk, concurrency=64):
            raise RuntimeError("the daemon refused a WhatsApp customer's first message")
    await daemon.wait_outbox_empty(timeout=max(120.0, count / 20))
    return numbers


async def set_scene(scene: Scene) -> None:
    """Agents on shift, their customers assigned, the ingest pool waiting in the queue."""
    daemon = scene.main
    scene.agents = await staff(scene, daemon)
    scene.customers = await open_customers(scene, daemon)
    scene.senders = await open_waiting(scene, daemon, INGEST_POOL, scene.sizes.ingest_senders)
