"""Plugin discovery and typed helpers for calling hooks.

Built-in and third-party plugins are found the same way: the ``carebridge``
entry-point group. There is no list of default plugins in the core.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from importlib import metadata

import pluggy

from bridge import hookspecs
from bridge.channel import Channel
from bridge.errors import PluginLoadError
from bridge.plugins.hooks import Hooks, call_impl, implementations

log = logging.getLogger(__name__)
ENTRY_POINT_GROUP = "carebridge"
#: The core's own distribution: its entry points (built-in commands, routing strategies) always load.
CORE_DISTRIBUTION = "carebridge"


@dataclass
class PluginInfo:
    """What we know of one discovered plugin, for ``carebridge plugins`` and /healthz."""

    name: str
    distribution: str | None = None
    version: str | None = None
    channels: list[str] = field(default_factory=list)
    error: str | None = None


@dataclass
class PluginRegistry:
    """The plugin manager, what it found, and the channel classes plugins registered."""

    pm: pluggy.PluginManager
    plugins: dict[str, PluginInfo] = field(default_factory=dict)
    channels: dict[str, type[Channel]] = field(default_factory=dict)

    @property
    def hooks(self) -> Hooks:
        """Typed calls of this manager's hooks (``bridge`` unset: outside the daemon)."""
        return Hooks(self.pm)

    @property
    def failures(self) -> dict[str, str]:
        """Plugins that failed to load, by name, with the reason."""
        return {name: info.error for name, info in self.plugins.items() if info.error}


def make_plugin_manager(
    *,
    load_entry_points: bool = True,
    plugins: Iterable[tuple[str, object]] = (),
    required: Iterable[str] = (),
) -> PluginRegistry:
    """Build the plugin manager, load entry points, collect channel classes.

    An installed plugin that fails to import, implements a hook that does not
    exist (a typo), or whose ``register_channels`` fails is unregistered and
    recorded with its reason (see ``PluginRegistry.failures``) instead of
    raising, so that the caller decides whether it matters (it does when its
    channel is enabled) and ``carebridge --help`` still works.

    :param load_entry_points: load every installed plugin. Without it only
        the core's own entry points load (``core-commands``, ``core-routing``:
        the core does not work without them), so a test chooses its plugins.
    :param plugins: extra ``(name, module_or_object)`` pairs to register
        (tests); their mistakes raise at once.
    :param required: plugin names that must load.
    :raises PluginLoadError: a required plugin is missing or failed, or an
        extra plugin has an unknown hook or registers a taken channel name.
    """
    pm = pluggy.PluginManager(ENTRY_POINT_GROUP)
    pm.add_hookspecs(hookspecs)
    registry = PluginRegistry(pm)
    _load_entry_points(registry, only=None if load_entry_points else CORE_DISTRIBUTION)
    for name, plugin in plugins:
        if pm.get_plugin(name) is plugin:  # a core entry point named again
            continue
        pm.register(plugin, name=name)
        registry.plugins.setdefault(name, PluginInfo(name=name))
    _check_hooks(registry)
    _collect_channels(registry)
    missing = sorted(set(required) - {n for n, info in registry.plugins.items() if not info.error})
    if missing:
        details = "; ".join(
            f"{n}: {registry.plugins[n].error}" if n in registry.plugins else f"{n}: not installed" for n in missing
        )
        raise PluginLoadError(f"required plugins not available: {details}")
    return registry


def _load_entry_points(registry: PluginRegistry, *, only: str | None) -> None:
    for ep in sorted(metadata.entry_points(group=ENTRY_POINT_GROUP), key=lambda e: e.name):
        dist = ep.dist.name if ep.dist is not None else None
        if only is not None and dist != only:
            continue
        version = ep.dist.version if ep.dist is not None else None
        info = PluginInfo(name=ep.name, distribution=dist, version=version)
        registry.plugins[ep.name] = info
        if registry.pm.get_plugin(ep.name) is not None:
            continue
        try:
            plugin = ep.load()
            registry.pm.register(plugin, name=ep.name)
        except Exception as err:  # boundary: a broken plugin is reported, not fatal by itself
            _fail(registry, ep.name, f"{type(err).__name__}: {err}")


def _fail(registry: PluginRegistry, name: str, reason: str) -> None:
    """Record an installed plugin as failed and unregister it; an extra (test) plugin raises."""
    info = registry.plugins.get(name)
    if info is None or info.distribution is None:
        raise PluginLoadError(f"plugin {name!r}: {reason}")
    info.error = reason
    plugin = registry.pm.get_plugin(name)
    if plugin is not None:
        registry.pm.unregister(plugin)
    for channel in info.channels:
        registry.channels.pop(channel, None)
    info.channels.clear()
    log.error("plugin %s (%s) failed to load: %s", name, info.distribution, reason)


def _check_hooks(registry: PluginRegistry) -> None:
    """Refuse hook implementations that match no hook (a misspelt name would never be called)."""
    while True:
        try:
            registry.pm.check_pending()
            return
        except pluggy.PluginValidationError as err:
            name = registry.pm.get_name(err.plugin) or repr(err.plugin)
            _fail(registry, name, str(err))  # "unknown hook 'x' in plugin <module ...>"


def _collect_channels(registry: PluginRegistry) -> None:
    for impl in implementations(registry.pm.hook.register_channels):
        owner = impl.plugin_name

        def register(cls: type[Channel], owner: str = owner) -> None:
            if not (isinstance(cls, type) and issubclass(cls, Channel)):
                raise PluginLoadError(f"register_channels: {cls!r} is not a Channel subclass")
            if cls.name in registry.channels:
                taken = f"channel {cls.name!r} is already registered by another plugin"
                raise PluginLoadError(f"register_channels: {taken}")
            registry.channels[cls.name] = cls
            registry.plugins.setdefault(owner, PluginInfo(name=owner)).channels.append(cls.name)

        try:
            call_impl(impl, register=register)
        except PluginLoadError as err:
            _fail(registry, owner, str(err))
        except Exception as err:  # boundary: a plugin's own bug is reported by name, not a traceback
            _fail(registry, owner, f"register_channels: {type(err).__name__}: {err}")
