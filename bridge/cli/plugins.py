"""``carebridge plugins``: what the ``carebridge`` entry-point group offers.

Works with no configuration at all, because it is the first thing to run
when a plugin seems missing; a configuration found the usual way (``-c``,
``$CAREBRIDGE_CONFIG``, ``./bridge.toml``) marks the enabled channels. A
plugin that failed to import is listed with its reason and makes the exit
status 1.

``--check`` is for plugin authors: it lists the hooks each plugin
implements and reports the mistakes that otherwise only show as a channel
that never appears: a plugin implementing no hook at all (the entry point
names the wrong module, or ``@hookimpl`` is missing) and a channel whose
name is not its plugin's entry-point name (``[channels.<name>]`` then asks
for a plugin that does not exist).
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from bridge.cli import add_config_option
from bridge.config import Config, find_config_file, load_config
from bridge.errors import ConfigError
from bridge.plugins import PluginRegistry, make_plugin_manager


def _config(args: argparse.Namespace) -> Config | None:
    """The configuration, if there is one; only a file named with ``-c`` must be valid."""
    try:
        return load_config(args.config) if find_config_file(args.config) is not None else None
    except ConfigError as err:
        if args.config:
            raise
        print(f"carebridge: {err} (listing plugins without it)", file=sys.stderr)
        return None


def hooks_of(registry: PluginRegistry, name: str) -> list[str]:
    """The hooks plugin ``name`` implements, sorted (none when it failed to load)."""
    plugin = registry.pm.get_plugin(name)
    if plugin is None:
        return []
    return sorted(caller.name for caller in registry.pm.get_hookcallers(plugin) or [])


def plugin_problems(registry: PluginRegistry) -> list[str]:
    """What ``--check`` reports about the installed plugins, one line each (empty: all is well)."""
    problems: list[str] = []
    for name, info in sorted(registry.plugins.items()):
        where = f"plugin {name!r}" + (f" ({info.distribution})" if info.distribution else "")
        if info.error:
            problems.append(f"{where}: failed to load: {info.error}")
            continue
        if not hooks_of(registry, name):
            problems.append(
                f"{where}: implements no hooks (does its entry point name the module with the "
                "@hookimpl functions, and are they marked with `from bridge import hookimpl`?)"
            )
        for channel in sorted(info.channels):
            if channel != name:
                problems.append(
                    f"{where}: registers channel {channel!r}, but its entry point is named {name!r}: "
                    f"[channels.{channel}] would ask for a plugin {channel!r}; name the entry point {channel!r}"
                )
    return problems


def run_plugins(args: argparse.Namespace) -> int:
    """Print one line per plugin (or JSON with ``--json``); with ``--check``, hooks and problems too."""
    registry = getattr(args, "plugin_registry", None) or make_plugin_manager()
    config = _config(args)
    enabled = set(config.enabled_channels()) if config else set()
    required = config.plugins.required if config else ()
    check = getattr(args, "check", False)
    rows: list[dict[str, Any]] = []
    for name, info in sorted(registry.plugins.items()):
        row: dict[str, Any] = {
            "name": name,
            "distribution": info.distribution,
            "version": info.version,
            "channels": sorted(info.channels),
            "error": info.error,
        }
        if check:
            row["hooks"] = hooks_of(registry, name)
        rows.append(row)
    missing = [name for name in required if name not in registry.plugins]
    problems = plugin_problems(registry) if check else []
    if args.json:
        document: dict[str, Any] = {"plugins": rows, "missing_required": missing}
        if check:
            document["problems"] = problems
        print(json.dumps(document, indent=2))
    else:
        _print_rows(rows, enabled, check)
        for name in missing:
            print(f"{name}: required by the configuration but not installed")
        if check:
            for problem in problems:
                print(f"problem: {problem}")
            print(f"{len(problems)} problem(s) found" if problems else "no problems found")
    return 1 if registry.failures or missing or problems else 0


def _print_rows(rows: list[dict[str, Any]], enabled: set[str], check: bool) -> None:
    if not rows:
        print("no plugins installed")
    for row in rows:
        where = f" ({row['distribution']} {row['version']})" if row["distribution"] else ""
        if row["error"]:
            print(f"{row['name']}{where}: FAILED to load: {row['error']}")
            continue
        channels = ", ".join(c + (" [enabled]" if c in enabled else "") for c in row["channels"])
        hooks = f"; hooks: {', '.join(row['hooks']) or '-'}" if check else ""
        print(f"{row['name']}{where}: channels: {channels or '-'}{hooks}")


def add_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Register ``plugins``."""
    parser = sub.add_parser("plugins", help="list installed plugins, their versions and channels")
    parser.add_argument("--json", action="store_true", help="print JSON instead of text")
    parser.add_argument(
        "--check",
        action="store_true",
        help="also list each plugin's hooks and report plugin mistakes (exit 1 on any)",
    )
    add_config_option(parser)
    parser.set_defaults(func=run_plugins)
