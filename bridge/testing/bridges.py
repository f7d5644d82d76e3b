"""A real Bridge in the test's own event loop: a real store in a temporary folder, the real relay.

Why in-process: a test then sees the channels' objects and the store
directly, and runs in milliseconds; the daemon subprocess
(``DaemonProcess``) is for what only a process has (signals, exit codes).
Only the plugins are chosen by the test: the installed ones are not loaded
unless asked for, so a test's bridge does not depend on what else is
installed (the core's own entry points, built-in commands and routing
strategies, always load)::

    bridge = await make_test_bridge(tmp_path, "[channels.acme]\\ntoken = 'x'\\n", plugins=[("acme", carebridge_acme)])
    try:
        ...                                   # bridge.channels["acme"], bridge.store, ...
    finally:
        await bridge.close()

To receive webhooks over HTTP, build it with ``start=False`` and serve it:
``server = await serve_bridge(bridge)`` starts the bridge with its web app
(``/webhooks/<name>``, ``/healthz``) on a loopback port; ``await
server.close()`` stops it. The ``bridge_factory`` fixture does the
bookkeeping for both.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pyotp
from aiohttp.test_utils import TestServer

from bridge.agents import Addresses, Agent, create_agent
from bridge.app import Bridge
from bridge.config import load_config
from bridge.plugins import make_plugin_manager
from bridge.testing.processes import write_config
from bridge.web import make_app


async def make_test_bridge(
    tmp_path: Path,
    config_text: str = "",
    *,
    plugins: Iterable[tuple[str, object]] = (),
    entry_points: bool = False,
    server: str = "",
    start: bool = True,
) -> Bridge:
    """Build (and start) a Bridge from config text on the store under ``tmp_path``.

    A second bridge on the same ``tmp_path`` opens the same store, as a
    restarted daemon would.

    :param config_text: sections after ``[server]`` and ``[store]`` (see ``write_config``).
    :param plugins: ``(name, module_or_object)`` pairs to register, e.g.
        ``("acme", carebridge_acme)`` or ``channels_plugin(MemoryChannel)``.
    :param entry_points: load every installed plugin too.
    :param server: extra ``[server]`` lines (``max_body = 100``).
    :param start: start the relay, lifespans and channels (False: only opened,
        for ``serve_bridge``, whose app starts it).
    :raises BridgeError: what start-up raises (bad config, missing plugin, refused credentials).
    """
    config = load_config(write_config(tmp_path, config_text, server=server))
    registry = make_plugin_manager(load_entry_points=entry_points, plugins=list(plugins))
    bridge = await Bridge.create(config, registry)
    if start:
        try:
            await bridge.start()
        except BaseException:
            await bridge.close()
            raise
    return bridge


async def serve_bridge(bridge: Bridge) -> TestServer:
    """Serve ``bridge``'s web app on a loopback port; starting it starts the bridge.

    Close the server to stop the bridge, then ``bridge.close()`` releases its store.
    """
    server = TestServer(make_app(bridge), host="127.0.0.1")
    await server.start_server()
    return server


async def add_agent(bridge: Bridge, name: str, address: str, **options: Any) -> tuple[Agent, str]:
    """Enrol an agent as ``carebridge agent add NAME --channel ADDRESS`` does; return it and its TOTP secret.

    The address is checked and normalized by its channel, as the CLI does.
    The agent starts a shift by sending ``/login <login_code(secret)>`` from it.

    :param options: ``role``, ``email``, ``queues``, ``capacity``.
    :raises AgentError: the address is not one of its channel's.
    """
    parsed = Addresses(bridge.registry.channels).parse(address)
    secret = pyotp.random_base32(32)
    agent = await bridge.store.write(
        lambda tx: create_agent(tx, name=name, address=parsed, totp_secret=secret, **options)
    )
    return agent, secret


def login_code(secret: str) -> str:
    """The current TOTP code for an agent's secret (what their authenticator app shows)."""
    return pyotp.TOTP(secret).now()


class BridgeFactory:
    """Builds test bridges and closes everything it built (the ``bridge_factory`` fixture).

    ``await factory(config_text, plugins=[...])`` is ``make_test_bridge`` on
    the test's ``tmp_path``; ``await factory.serve(bridge)`` is
    ``serve_bridge``. ``close()`` stops the servers, then closes the bridges.
    """

    def __init__(self, tmp_path: Path) -> None:
        self.tmp_path = tmp_path
        self.bridges: list[Bridge] = []
        self.servers: list[TestServer] = []

    async def __call__(
        self,
        config_text: str = "",
        *,
        plugins: Iterable[tuple[str, object]] = (),
        entry_points: bool = False,
        server: str = "",
        start: bool = True,
    ) -> Bridge:
        bridge = await make_test_bridge(
            self.tmp_path, config_text, plugins=plugins, entry_points=entry_points, server=server, start=start
        )
        self.bridges.append(bridge)
        return bridge

    async def serve(self, bridge: Bridge) -> TestServer:
        """Serve ``bridge`` over HTTP on a loopback port (see ``serve_bridge``)."""
        server = await serve_bridge(bridge)
        self.servers.append(server)
        return server

    async def close(self) -> None:
        """Stop every server, then close every bridge (newest first)."""
        for server in reversed(self.servers):
            await server.close()
        for bridge in reversed(self.bridges):
            await bridge.close()
