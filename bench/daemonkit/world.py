"""The daemon under test as a black box: its config file, its process, its CLI, its HTTP.

Everything goes through what an operator has: ``carebridge run -c FILE``
(own process, pinned), ``carebridge agent add`` (prints the otpauth URI),
signed webhooks, ``GET /healthz`` and ``GET /metrics``. Nothing of
``bridge.*`` is imported, so the benchmark keeps measuring whatever the
daemon's internals become.

The store is fresh in a temporary directory, ``synchronous = "full"``.
Routing: Messenger customers go to the queue ``live``, which the
benchmark's agents serve; WhatsApp customers go to ``default``, which no
agent serves, so their conversations stay queued (open) and the ingest
phase measures webhook -> signature -> store -> routing without relays
competing for the core (relays have their own phase).
"""

from __future__ import annotations

import asyncio
import os
import re
import secrets
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pyotp

from .payloads import MetaApp, Webhook, messenger_text
from .procs import Child, Children, free_port, wait_http

LIVE_QUEUE = "live"
ROUTING = f"""\
# Messenger customers are served by the benchmark's agents; WhatsApp
# customers wait in "default", which nobody serves.
queues:
  {LIVE_QUEUE}: Messenger customers
rules:
  - queue: {LIVE_QUEUE}
    channel: messenger
"""
_METRIC = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})?\s+(\S+)$")


def carebridge_binary() -> str:
    """The ``carebridge`` console script of the interpreter running the benchmark."""
    beside = Path(sys.executable).with_name("carebridge")
    return str(beside) if beside.exists() else "carebridge"


def config_text(port: int, graph_url: str, app: MetaApp) -> str:
    """bridge.toml for a benchmark daemon: loopback, fresh store, synchronous FULL, both Meta channels."""
    return f"""\
[server]
host = "127.0.0.1"
port = {port}
shutdown_timeout = "5s"

[plugins]
required = ["messenger", "whatsapp"]

[store]
path = "var/carebridge.db"
key = "file:var/master.key"
synchronous = "full"

[routing]
rules_file = "routing.yaml"

[channels.whatsapp]
phone_number_id = "{app.phone_number_id}"
access_token = "{app.wa_token}"
app_secret = "{app.wa_secret}"
verify_token = "{app.verify_token}"
graph_url = "{graph_url}"

[channels.messenger]
page_id = "{app.page_id}"
page_access_token = "{app.page_token}"
app_secret = "{app.page_secret}"
verify_token = "{app.verify_token}"
graph_url = "{graph_url}"
"""


def parse_metrics(text: str) -> dict[str, float]:
    """Prometheus text exposition -> ``{"name{labels}": value}`` (comments skipped)."""
    out: dict[str, float] = {}
    for line in text.splitlines():
        found = _METRIC.match(line)
        if found:
            out[found.group(1) + (found.group(2) or "")] = float(found.group(3))
    return out


class FakeGraphHandle:
    """The benchmark's side of the fake Graph API process (its ``/_bench/`` routes)."""

    def __init__(self, child: Child, port: int, session: aiohttp.ClientSession) -> None:
        self.child = child
        self.base = f"http://127.0.0.1:{port}"
        self.graph_url = f"{self.base}/v25.0"
        self.session = session

    async def _get(self, path: str, **params: str) -> Any:
        async with self.session.get(f"{self.base}/_bench/{path}", params=params) as response:
            response.raise_for_status()
            return await response.json()

    async def take_arrivals(self) -> dict[int, float]:
        """Relays with a marker that arrived since the last call: ``seq -> monotonic time``."""
        return {int(k): float(v) for k, v in (await self._get("arrivals")).items()}

    async def texts_to(self, recipient: str) -> list[str]:
        return list(await self._get("texts", to=recipient))

    async def stats(self) -> dict[str, int]:
        return dict(await self._get("stats"))

    async def set_delay(self, seconds: float) -> None:
        async with self.session.post(f"{self.base}/_bench/delay", params={"seconds": str(seconds)}) as response:
            response.raise_for_status()


@dataclass
class Agent:
    """An enrolled agent: their Messenger PSID and TOTP secret."""

    name: str
    psid: str
    totp: pyotp.TOTP


@dataclass
class Daemon:
    """One ``carebridge run`` process with its own directory, store and config."""

    directory: Path
    children: Children
    app: MetaApp
    session: aiohttp.ClientSession
    graph_url: str
    cpu: int | None
    port: int = field(default_factory=free_port)
    child: Child | None = None

    @property
    def config(self) -> Path:
        return self.directory / "bridge.toml"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def db(self) -> Path:
        return self.directory / "var" / "carebridge.db"

    @property
    def proc(self) -> Child:
        if self.child is None:
            raise RuntimeError("the daemon is not running")
        return self.child

    async def start(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        (self.directory / "routing.yaml").write_text(ROUTING, encoding="utf-8")
        self.config.write_text(config_text(self.port, self.graph_url, self.app), encoding="utf-8")
        argv = [carebridge_binary(), "run", "-c", str(self.config)]
        self.child = self.children.start(f"daemon-{self.directory.name}", argv, cpu=self.cpu, cwd=self.directory)
        await wait_http(self.child, f"{self.url}/healthz")
        health = await self.get_json("/healthz")
        states = {name: info.get("state") for name, info in health.get("channels", {}).items()}
        if states.get("whatsapp") != "connected" or states.get("messenger") != "connected":
            raise RuntimeError(f"daemon channels not connected: {states}\n{self.child.tail()}")

    def stop(self) -> int:
        """SIGTERM and wait: the daemon must exit 0 (a benchmark that leaves it broken fails)."""
        status = self.children.stop(self.proc)
        if status != 0:
            raise RuntimeError(f"daemon exited with {status}:\n{self.proc.tail()}")
        return status

    async def get_json(self, path: str) -> Any:
        async with self.session.get(self.url + path) as response:
            return await response.json()

    async def metrics(self) -> dict[str, float]:
        async with self.session.get(f"{self.url}/metrics") as response:
            response.raise_for_status()
            return parse_metrics(await response.text())

    async def outbox_depth(self) -> float:
        return (await self.metrics()).get("carebridge_outbox_depth", 0.0)

    async def stored_in(self) -> int:
        """Inbound messages committed so far (``carebridge_messages_stored_total``, direction in)."""
        return int(sum(v for k, v in (await self.metrics()).items()
                       if k.startswith("carebridge_messages_stored_total{") and 'direction="in"' in k))  # fmt: skip

    async def wait_outbox_empty(self, timeout: float) -> float:
        """Wait until the outbox is empty; return how long it took."""
        start = time.monotonic()
        while (await self.outbox_depth()) > 0:
            if time.monotonic() - start > timeout:
                raise RuntimeError(
                    f"outbox still holds {await self.outbox_depth():.0f} deliveries after {timeout:.0f} s"
                )
            await asyncio.sleep(0.1)
        return time.monotonic() - start

    def wal_bytes(self) -> int:
        try:
            return os.stat(f"{self.db}-wal").st_size
        except FileNotFoundError:
            return 0

    # -- the CLI and the agents ----------------------------------------------

    async def add_agent(self, name: str, psid: str) -> Agent:
        """``carebridge agent add NAME --channel messenger:PSID --password-stdin``; read the otpauth URI."""
        argv = [carebridge_binary(), "agent", "add", name, "--channel", f"messenger:{psid}", "--queue", LIVE_QUEUE,
                "--capacity", "1000", "--password-stdin", "-c", str(self.config)]  # fmt: skip
        password = secrets.token_urlsafe(18) + "\n"
        done = await asyncio.to_thread(
            subprocess.run, argv, input=password.encode(), capture_output=True, env=self.children.env, check=False,
            timeout=120,
        )  # fmt: skip
        uri = re.search(r"otpauth://\S+", done.stdout.decode(errors="replace"))
        if done.returncode != 0 or uri is None:
            raise RuntimeError(f"agent add {name} failed ({done.returncode}): {done.stderr.decode(errors='replace')}")
        totp = pyotp.parse_uri(uri.group(0))
        if not isinstance(totp, pyotp.TOTP):
            raise TypeError(f"agent add {name} printed an enrolment that is not TOTP: {uri.group(0)[:30]}...")
        return Agent(name, psid, totp)

    async def post(self, hook: Webhook) -> int:
        headers = {"Content-Type": "application/json", "X-Hub-Signature-256": hook.signature}
        async with self.session.post(self.url + hook.path, data=hook.body, headers=headers) as response:
            await response.read()
            return response.status

    async def login(self, agent: Agent, mid: str, fake: FakeGraphHandle, timeout: float = 30.0) -> None:
        """Post ``/login CODE`` from the agent's PSID; wait for the confirmation at the fake Graph API."""
        before = len(await fake.texts_to(agent.psid))  # the same PSID may have logged in to another daemon
        status = await self.post(messenger_text(self.app, agent.psid, mid, f"/login {agent.totp.now()}"))
        if status != 200:
            raise RuntimeError(f"the daemon answered {status} to {agent.name}'s /login webhook")
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            texts = (await fake.texts_to(agent.psid))[before:]
            if any("logged in" in text for text in texts):
                return
            if texts:
                raise RuntimeError(f"{agent.name}'s /login was answered: {texts[-1]!r}")
            await asyncio.sleep(0.05)
        raise RuntimeError(f"no login confirmation for {agent.name} within {timeout:.0f} s")
