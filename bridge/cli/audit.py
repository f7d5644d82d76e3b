"""``carebridge audit verify``: walk the audit log's hash chain."""

from __future__ import annotations

import argparse
import asyncio

from bridge.cli import add_config_option
from bridge.errors import IntegrityError


def add_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Register ``audit verify``."""
    parser = sub.add_parser("audit", help="check the audit log", description="Check the audit log.")
    actions = parser.add_subparsers(dest="audit_command", metavar="ACTION")
    actions.required = True
    verify = actions.add_parser(
        "verify", help="verify the audit log's hash chain", description="Exit 1 naming the first entry that fails."
    )
    add_config_option(verify)
    verify.set_defaults(func=run_verify)


def run_verify(args: argparse.Namespace) -> int:
    """Verify the chain; print the entry count, or fail naming the first bad entry."""
    from bridge.config import load_config
    from bridge.store import Store

    config = load_config(args.config)

    async def verify() -> object:
        store = await Store.open(config.store, create_missing_key=False, must_exist=True)
        try:
            return await store.read(lambda tx: tx.audit.verify())
        finally:
            await store.close()

    result = asyncio.run(verify())
    if not result.ok:  # type: ignore[attr-defined]
        raise IntegrityError(
            f"audit log broken at entry {result.bad_id}: {result.reason}",  # type: ignore[attr-defined]
            table="audit_log",
            row_id=result.bad_id,  # type: ignore[attr-defined]
        )
    print(f"audit log intact: {result.count} entries")  # type: ignore[attr-defined]
    return 0
