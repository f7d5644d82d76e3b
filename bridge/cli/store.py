"""``carebridge store migrate --to DSN``: move the embedded SQLite store onto PostgreSQL.

Run it with the daemon stopped, against the configuration that names the
SQLite store (``[store] path`` and ``key``); ``--to`` is a libpq DSN or a
secret reference (``env:NAME``, ``file:PATH``, ``credential:NAME``; better
than a password on the command line). The target database must be empty:
anything else is refused with exit 1. Afterwards set ``[store] backend =
"postgresql"`` and ``dsn`` and start the daemon(s); the media files stay in
the directory beside ``[store] path``.
"""

from __future__ import annotations

import argparse
import asyncio

from bridge.cli import add_config_option
from bridge.errors import ConfigError


def add_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Register ``store migrate``."""
    parser = sub.add_parser("store", help="manage the store's backend", description="Manage the store's backend.")
    actions = parser.add_subparsers(dest="store_command", metavar="ACTION")
    actions.required = True
    migrate = actions.add_parser(
        "migrate",
        help="copy the SQLite store into an empty PostgreSQL database",
        description="Copy the SQLite store into an empty PostgreSQL database, then check the copy.",
    )
    migrate.add_argument(
        "--to", required=True, metavar="DSN",
        help="the target: a libpq DSN or URI, or env:NAME / file:PATH / credential:NAME holding one",
    )  # fmt: skip
    add_config_option(migrate)
    migrate.set_defaults(func=run_migrate)


def run_migrate(args: argparse.Namespace) -> int:
    """Entry of ``store migrate``."""
    from bridge.cli.progress import ProgressBar
    from bridge.config import load_config, resolve_secret

    config = load_config(args.config)
    if config.store.backend != "sqlite":
        raise ConfigError(
            "store migrate: [store] backend is already postgresql; run it with the configuration of the SQLite store"
        )
    dsn = resolve_secret(args.to, "--to", config.base_dir).strip()
    if not dsn:
        raise ConfigError("store migrate: --to is empty")
    from bridge.store.postgres.copy import copy_sqlite_store

    with ProgressBar("copying rows") as bar:
        report = asyncio.run(copy_sqlite_store(config.store, dsn, progress=bar))
    print(f"copied {report.total} rows in {len(report.rows)} tables into the {report.target}")
    print(
        f"checked: row counts equal, {report.sampled} sampled texts decrypt alike, "
        f"audit log intact ({report.audit_entries} entries)"
    )
    print(
        f'media files stay in {report.media_dir}; now set [store] backend = "postgresql" and dsn, and start the daemon'
    )
    return 0
