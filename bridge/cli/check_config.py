"""``carebridge check-config``: validate everything ``run`` would, start nothing.

It runs the same loader, the same plugin and channel checks as start-up
(``bridge.app.preflight.channel_problems``) and loads the rules and templates files as
the relay will (``bridge.relay.config_problems``), so "check-config passes"
means "run will not stop on its configuration". Every problem is printed, one
per line.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys

from bridge.app.preflight import channel_problems
from bridge.cli import add_config_option
from bridge.config import Config, load_config
from bridge.errors import ConfigError
from bridge.plugins import make_plugin_manager
from bridge.relay import config_problems


def file_problems(config: Config) -> list[str]:
    """Files the configuration names that do not exist."""
    problems = []
    for key, path in (
        ("routing.rules_file", config.routing.rules_file),
        ("templates.file", config.templates.file),
        ("server.tls_cert", config.server.tls_cert),
        ("server.tls_key", config.server.tls_key),
    ):
        if path is not None and not path.is_file():
            problems.append(f"{key}: file {path} not found")
    return problems


def relay_problems(config: Config) -> list[str]:
    """Syntax and structure errors in the rules and templates files (``FILE:LINE: reason``).

    A file already reported missing by ``file_problems`` is not read again.
    """
    routing, templates = config.routing, config.templates
    if routing.rules_file is not None and not routing.rules_file.is_file():
        routing = dataclasses.replace(routing, rules_file=None)
    if templates.file is not None and not templates.file.is_file():
        templates = dataclasses.replace(templates, file=None)
    return config_problems(dataclasses.replace(config, routing=routing, templates=templates))


def run_check_config(args: argparse.Namespace) -> int:
    """Print ``OK`` and exit 0, or print every problem and exit 1."""
    config = load_config(args.config)  # a ConfigError here is reported by cli.main, exit 1
    registry = getattr(args, "plugin_registry", None) or make_plugin_manager()
    problems = [
        *file_problems(config),
        *relay_problems(config),
        *(str(p) for p in channel_problems(config, registry)),
    ]
    try:
        registry.hooks.configure(config)
    except ConfigError as err:
        problems.append(str(err))
    if problems:
        for problem in problems:
            print(f"carebridge: {problem}", file=sys.stderr)
        return 1
    channels = ", ".join(config.enabled_channels()) or "none"
    print(f"configuration OK: {config.describe()}; enabled channels: {channels}")
    return 0


def add_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Register ``check-config``."""
    parser = sub.add_parser("check-config", help="validate the configuration and exit 0 or 1")
    add_config_option(parser)
    parser.set_defaults(func=run_check_config)
