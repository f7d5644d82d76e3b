"""``carebridge plugins``: what the ``carebridge`` entry-point group offers.

Works with no configuration at all, because it is the first thing to run
when a plugin seems missing; a configuration found the usual way (``-c``,
``$CAREBRIDGE_CONFIG``, ``./bridge.toml``) marks the enabled channels. A
plugin that failed to import is listed with its reason and makes the exit
status 1.
"""

from __future__ import annotations

import argparse
import json
import sys

from bridge.cli import add_config_option
from bridge.config import Config, find_config_file, load_config
from bridge.errors import ConfigError
from bridge.plugins import make_plugin_manager


def _config(args: argparse.Namespace) -> Config | None:
    """The configuration, if there is one; only a file named with ``-c`` must be valid."""
    try:
        return load_config(args.config) if find_config_file(args.config) is not None else None
    except ConfigError as err:
        if args.config:
            raise
        print(f"carebridge: {err} (listing plugins without it)", file=sys.stderr)
        return None


def run_plugins(args: argparse.Namespace) -> int:
    """Print one line per plugin (or JSON with ``--json``)."""
    registry = getattr(args, "plugin_registry", None) or make_plugin_manager()
    config = _config(args)
    enabled = set(config.enabled_channels()) if config else set()
    required = config.plugins.required if config else ()
    rows = []
    for name, info in sorted(registry.plugins.items()):
        rows.append(
            {
                "name": name,
                "distribution": info.distribution,
                "version": info.version,
                "channels": sorted(info.channels),
                "error": info.error,
            }
        )
    missing = [name for name in required if name not in registry.plugins]
    if args.json:
        print(json.dumps({"plugins": rows, "missing_required": missing}, indent=2))
    else:
        if not rows:
            print("no plugins installed")
        for row in rows:
            where = f" ({row['distribution']} {row['version']})" if row["distribution"] else ""
            if row["error"]:
                print(f"{row['name']}{where}: FAILED to load: {row['error']}")
                continue
            channels = ", ".join(c + (" [enabled]" if c in enabled else "") for c in row["channels"])
            print(f"{row['name']}{where}: channels: {channels or '-'}")
        for name in missing:
            print(f"{name}: required by the configuration but not installed")
    return 1 if registry.failures or missing else 0


def add_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Register ``plugins``."""
    parser = sub.add_parser("plugins", help="list installed plugins, their versions and channels")
    parser.add_argument("--json", action="store_true", help="print JSON instead of text")
    add_config_option(parser)
    parser.set_defaults(func=run_plugins)
