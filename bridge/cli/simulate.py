"""``carebridge simulate CHANNEL --from ID --text TEXT``: play the platform.

The channel builds the webhook the platform would send (signed with the
configured secret, ``Channel.simulate``) and this command posts it to the
running daemon at ``server.host:port``, so an operator can test the whole
path — signature, storage, routing, an agent's phone buzzing — without the
platform.
"""

from __future__ import annotations

import argparse
import asyncio

import aiohttp

from bridge.channel import SimulatedRequest
from bridge.cli import add_config_option
from bridge.config import Config, load_config
from bridge.errors import BridgeError, ConfigError
from bridge.plugins import make_plugin_manager


def daemon_url(config: Config) -> str:
    """The base URL of the local daemon (wildcard listen addresses become loopback)."""
    host = config.server.host
    if host in ("", "0.0.0.0"):
        host = "127.0.0.1"
    elif host == "::":
        host = "::1"
    if ":" in host:
        host = f"[{host}]"
    scheme = "https" if config.server.tls_cert else "http"
    return f"{scheme}://{host}:{config.server.port}"


async def post(base: str, request: SimulatedRequest) -> tuple[int, str]:
    """Send ``request`` to the daemon; return its status and body text.

    Certificate checks are off: this talks to our own daemon, and its
    certificate names the public host, not the loopback address.
    """
    timeout = aiohttp.ClientTimeout(total=30)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        async with session.request(
            request.method, base + request.path, headers=dict(request.headers), data=request.body, ssl=False
        ) as response:
            return response.status, await response.text()


def run_simulate(args: argparse.Namespace) -> int:
    """Build, post, print the daemon's answer; exit 0 on 2xx."""
    config = load_config(args.config)
    registry = getattr(args, "plugin_registry", None) or make_plugin_manager()
    cls = registry.channels.get(args.channel)
    if cls is None:
        failure = registry.failures.get(args.channel)
        reason = f"plugin failed to load: {failure}" if failure else "no installed plugin provides it"
        raise BridgeError(f"channel {args.channel!r}: {reason}")
    section = config.channels.get(args.channel)
    if section is None or not section.get("enabled", True):
        raise ConfigError(f"channels.{args.channel}: not enabled in {config.describe()}")
    request = cls.simulate(section, args.sender, args.text)
    base = daemon_url(config)
    try:
        status, body = asyncio.run(post(base, request))
    except aiohttp.ClientConnectorError as err:
        reason = err.strerror or str(err)
        raise BridgeError(f"cannot reach the daemon at {base} (is `carebridge run` running?): {reason}") from err
    except (aiohttp.ClientError, TimeoutError) as err:
        raise BridgeError(f"request to {base}{request.path} failed: {err}") from err
    print(f"{request.method} {request.path}: HTTP {status} {body[:200]}")
    if not 200 <= status < 300:
        raise BridgeError(f"the daemon answered HTTP {status}")
    return 0


def add_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Register ``simulate``."""
    parser = sub.add_parser("simulate", help="post a correctly signed webhook to the running daemon")
    parser.add_argument("channel", metavar="CHANNEL")
    parser.add_argument("--from", dest="sender", required=True, metavar="ID", help="the sender's platform id")
    parser.add_argument("--text", required=True, help="the message text")
    add_config_option(parser)
    parser.set_defaults(func=run_simulate)
