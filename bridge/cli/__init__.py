"""The ``carebridge`` command line: the only place that maps errors to exit codes.

Each subcommand lives in its own module of this package and exposes
``add_parser(subparsers)``, which creates its parser and sets
``func(args) -> int``. Plugins add theirs through the ``register_cli`` hook.
Exit status: 0 success, 1 user error (one-line reason on stderr), 2 usage.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING

from bridge.config.options import add_config_option
from bridge.errors import BridgeError

if TYPE_CHECKING:
    from bridge.plugins import PluginRegistry

__all__ = ["add_config_option", "build_parser", "main"]

# Core subcommand modules, in the order ``--help`` lists them.
_SUBCOMMANDS = (
    "init", "run", "check_config", "plugins", "plugin", "agent", "keys", "gdpr", "retention", "audit", "store",
    "simulate",
)  # fmt: skip


def build_parser(*, with_plugins: bool = True) -> argparse.ArgumentParser:
    """Build the full parser, including plugin subcommands when plugins load."""
    parser = argparse.ArgumentParser(prog="carebridge", description="Self-hosted customer-care bridge.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name in _SUBCOMMANDS:
        module = importlib.import_module(f"{__name__}.{name}")
        module.add_parser(sub)
    if with_plugins:
        from bridge.plugins import make_plugin_manager

        registry = make_plugin_manager()
        _add_plugin_commands(registry, sub)
        # Commands reuse this registry (args.plugin_registry) instead of loading plugins twice.
        parser.set_defaults(plugin_registry=registry)
    return parser


def _add_plugin_commands(registry: PluginRegistry, sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Call each plugin's ``register_cli``; one that fails is named on stderr, the others still count."""
    for impl in registry.pm.hook.register_cli.get_hookimpls():
        try:
            impl.function(**{name: sub for name in impl.argnames})
        except Exception as err:  # boundary: a plugin's bug must not take the whole CLI (and --help) down
            print(f"carebridge: plugin {impl.plugin_name!r}: register_cli failed: {err!r}", file=sys.stderr)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; return the exit status."""
    try:
        parser = build_parser()
    except BridgeError as err:
        print(f"carebridge: {err}", file=sys.stderr)
        return 1
    args = parser.parse_args(argv)
    try:
        result = args.func(args)
        sys.stdout.flush()
    except BridgeError as err:
        print(f"carebridge: {err}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # The reader went away (`carebridge agent list | head`): not an error worth a traceback.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    return int(result or 0)
