"""Checks of a configuration against the installed plugins, before anything starts.

Why a module of its own: ``carebridge check-config``, start-up and SIGHUP
must say exactly the same thing about the same configuration, so they share
these functions instead of each re-deriving the rules.
"""

from __future__ import annotations

import logging
from types import SimpleNamespace

from bridge.config import Config
from bridge.errors import BridgeError, ConfigError, PluginLoadError
from bridge.plugins import PluginRegistry

log = logging.getLogger(__name__)


def channel_problems(config: Config, registry: PluginRegistry) -> list[BridgeError]:
    """Check required plugins, every enabled channel and the routing strategy.

    Returns one error per problem (empty when all is well): ``PluginLoadError``
    for a missing or broken plugin, ``ConfigError`` for a bad channel section
    or a strategy no plugin provides.
    """
    problems: list[BridgeError] = []
    loaded = {name for name, info in registry.plugins.items() if not info.error}
    for name in config.plugins.required:
        if name not in loaded:
            reason = registry.plugins[name].error if name in registry.plugins else "not installed"
            problems.append(PluginLoadError(f"plugins.required: plugin {name!r} is not available: {reason}"))
    for name in config.enabled_channels():
        cls = registry.channels.get(name)
        if cls is None:
            problems.append(PluginLoadError(_no_channel(name, registry)))
            continue
        try:
            cls.check_config(config.channels[name])
        except ConfigError as err:
            problems.append(err)
    problem = strategy_problem(config, registry)
    if problem is not None:
        problems.append(problem)
    return problems


def _no_channel(name: str, registry: PluginRegistry) -> str:
    """Say why no plugin provides channel ``name``, naming the plugin expected.

    A channel comes from the plugin whose entry point has the channel's name
    (``[project.entry-points.carebridge] acme = "carebridge_acme"``).
    """
    failure = registry.failures.get(name)
    if failure:
        return f"channels.{name}: enabled, but plugin {name!r} failed to load: {failure}"
    expected = f"expected plugin {name!r} (an entry point {name!r} in the 'carebridge' group)"
    info = registry.plugins.get(name)
    if info is not None:
        offered = ", ".join(repr(c) for c in sorted(info.channels)) or "none"
        hint = f"{expected}; plugin {name!r} is installed but registers channels: {offered}"
    else:
        others = "; ".join(f"plugin {n!r} failed: {e}" for n, e in sorted(registry.failures.items()))
        hint = f"{expected}, which is not installed" + (f"; {others}" if others else "; see `carebridge plugins`")
    return f"channels.{name}: enabled, but no installed plugin provides this channel: {hint}"


def strategy_problem(config: Config, registry: PluginRegistry) -> ConfigError | None:
    """Refuse a ``[routing] strategy`` that no installed plugin answers to.

    Strategies are ``choose_agent`` implementations that answer only to their
    own name, so a misspelt name would leave every conversation waiting
    forever. The check asks the hook to choose between one idle probe agent
    for a probe conversation: a strategy that exists picks it. A strategy
    that raises on the probe is given the benefit of the doubt.
    """
    name = config.routing.strategy
    agent = SimpleNamespace(id=0, name="probe", role="agent", channel="console", queues=("default",), capacity=1)
    candidate = SimpleNamespace(agent=agent, open_conversations=0, idle_since=0.0, last_assigned_at=None)
    conversation = SimpleNamespace(id=0, queue="default", channel="console", status="queued", language=None)
    try:
        chosen = registry.pm.hook.choose_agent(strategy=name, conversation=conversation, candidates=[candidate])
    except Exception as err:  # boundary: a third-party strategy's bug shows at routing time, logged there
        log.debug("routing strategy %r raised on the probe: %r", name, err)
        return None
    if chosen is not None:
        return None
    return ConfigError(
        f"routing.strategy: no installed plugin provides strategy {name!r}"
        " (built in: least_busy, round_robin; see `carebridge plugins`)"
    )
