"""The plugin authors' kit: what a channel plugin's tests need, installed with the core.

- ``RecordingCore``: the ``ChannelContext`` a channel is built on in its own
  tests, recording what it hands the core.
- ``MemoryChannel`` and ``channels_plugin``: an in-memory platform registered
  like a real plugin, for tests of what the core does with messages.
- ``make_test_bridge``, ``serve_bridge``, ``BridgeFactory``: a real Bridge
  (store, relay, worker) in the test's event loop, optionally served over
  HTTP; ``add_agent`` and ``login_code`` enrol an agent and log them in.
- ``DaemonProcess``, ``write_config``, ``free_port``, ``run_cli``,
  ``run_cli_sync``: the real daemon and CLI as subprocesses.
- ``FakePlatform``, ``ScriptedAnswer``, ``RecordedRequest``, ``start_server``:
  the base of a fake platform API on loopback.
- ``ChannelContract``, ``ContractEnv``, ``Outcome``: the contract suite a
  channel plugin runs against itself.

Its pytest fixtures (``free_port``, ``recording_core``, ``http_session``,
``serve_app``, ``bridge_factory``, ``daemon_factory``) are registered through
the ``pytest11`` entry point: installing carebridge is enough. Async fixtures
and the contract suite need pytest-asyncio (``pip install carebridge[testing]``).
"""

from __future__ import annotations

from bridge.testing.bridges import BridgeFactory, add_agent, login_code, make_test_bridge, serve_bridge
from bridge.testing.contract import ChannelContract, ContractEnv, Outcome
from bridge.testing.fakes import FakePlatform, RecordedRequest, ScriptedAnswer, start_server
from bridge.testing.memory import MemoryChannel, channels_plugin
from bridge.testing.processes import (
    DaemonProcess,
    cli_env,
    config_port,
    free_port,
    run_cli,
    run_cli_sync,
    write_config,
)
from bridge.testing.recorder import RecordingCore

__all__ = [
    "BridgeFactory",
    "ChannelContract",
    "ContractEnv",
    "DaemonProcess",
    "FakePlatform",
    "MemoryChannel",
    "Outcome",
    "RecordedRequest",
    "RecordingCore",
    "ScriptedAnswer",
    "add_agent",
    "channels_plugin",
    "cli_env",
    "config_port",
    "free_port",
    "login_code",
    "make_test_bridge",
    "run_cli",
    "run_cli_sync",
    "serve_bridge",
    "start_server",
    "write_config",
]
