"""``carebridge retention run [--dry-run]``: the retention purge, now, from the command line.

Does what the daemon's daily job does (``[retention] closed_after_days``):
deletes every conversation closed longer ago with everything that carries
its text, and each contact left with nothing, with their data key. Prints
counts only, never content; ``--dry-run`` only counts. Works while the daemon
runs (it sees the deletions at once). A progress bar is drawn on stderr when
it is a terminal.
"""

from __future__ import annotations

import argparse
import asyncio

from bridge.cli import add_config_option
from bridge.store import open_store


def add_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Register ``retention run``."""
    parser = sub.add_parser("retention", help="purge old conversations", description="Retention.")
    actions = parser.add_subparsers(dest="retention_command", metavar="ACTION")
    actions.required = True
    run = actions.add_parser(
        "run",
        help="purge conversations closed longer ago than [retention] closed_after_days",
        description="Delete every conversation closed longer ago than [retention] closed_after_days, with its "
        "messages, notes, attachments, events and deliveries, and each contact left with nothing (and their "
        "data key). Prints counts only.",
    )
    run.add_argument("--dry-run", action="store_true", help="only count what would be purged")
    add_config_option(run)
    run.set_defaults(func=run_purge)


def _summary(counts: dict[str, int]) -> str:
    return (
        f"{counts['conversations']} conversation(s), {counts['messages']} message(s), {counts['events']} event(s), "
        f"{counts['outbox']} delivery row(s), {counts['files']} media file(s), {counts['contacts']} contact(s)"
    )


def run_purge(args: argparse.Namespace) -> int:
    """Purge (or count) what retention removes; print the counts."""
    from bridge.cli.keys import cli_actor
    from bridge.cli.progress import ProgressBar
    from bridge.config import load_config

    config = load_config(args.config)
    days = config.retention.closed_after_days
    if days <= 0:
        print("retention is off ([retention] closed_after_days = 0): nothing is purged")
        return 0

    async def go() -> dict[str, int]:
        store = await open_store(config.store, create_missing_key=False, must_exist=True)
        try:
            if args.dry_run:
                return await store.read(lambda tx: tx.retention.plan(days))
            with ProgressBar("purging") as bar:
                return await store.purge_closed(days, actor=cli_actor(), progress=bar)
        finally:
            await store.close()

    counts = asyncio.run(go())
    verb = "would purge" if args.dry_run else "purged"
    print(f"{verb} {_summary(counts)} (closed more than {days} days ago)")
    return 0
