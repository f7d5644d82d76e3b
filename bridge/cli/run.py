"""``carebridge run``: the daemon in the foreground (what systemd runs); see ``bridge.daemon.process``."""

from __future__ import annotations

import argparse
import asyncio
import logging

from bridge.cli import add_config_option
from bridge.config import load_config
from bridge.daemon.logs import mask_secrets, secrets_in, setup_logging
from bridge.daemon.process import Daemon

log = logging.getLogger("carebridge.daemon")


def run_daemon(args: argparse.Namespace) -> int:
    """Entry of ``carebridge run``."""
    config = load_config(args.config)
    setup_logging(config.logging.level)
    registry = getattr(args, "plugin_registry", None)
    # The store's DSN may carry a database password: never in a log line either.
    dsn = [config.store.dsn] if config.store.dsn else []
    mask_secrets([*secrets_in(config.channels, registry.channels if registry is not None else None), *dsn])
    from bridge import __version__

    log.info("carebridge %s starting with %s", __version__, config.describe())
    if config.path is None:
        log.info(
            "no configuration file: embedded defaults, store %s, key %s, console and website chat on,"
            " platform channels off",
            config.store.path,
            config.store.key,
        )
    return asyncio.run(Daemon(config, args.config, registry).serve())


def add_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Register ``run``."""
    parser = sub.add_parser("run", help="run the daemon in the foreground")
    add_config_option(parser)
    parser.set_defaults(func=run_daemon)
