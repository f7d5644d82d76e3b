"""``carebridge audit verify [--anchor HASH:COUNT]...`` and ``audit anchor``: the audit log's hash chain.

The chain and its sealed head catch edits and deletions by someone without
the master key. Someone with it could cut entries off the end and seal an
earlier head; an *anchor* (``HASH:COUNT``, the head hash and the entry
count) kept outside the store catches that: the daemon logs one at every
start and daily, ``audit anchor`` prints the current one, and ``verify
--anchor`` checks that entry COUNT still carries HASH.
"""

from __future__ import annotations

import argparse
import asyncio
import re
from collections.abc import Callable
from typing import TYPE_CHECKING, TypeVar

from bridge.cli import add_config_option
from bridge.errors import IntegrityError
from bridge.store import open_store

if TYPE_CHECKING:
    from bridge.store import Tx

T = TypeVar("T")

_ANCHOR = re.compile(r"^([0-9a-fA-F]{64}):(\d{1,18})$")


def anchor_value(text: str) -> tuple[str, int]:
    """Parse ``HASH:COUNT`` (64 hex digits, a colon, the entry count)."""
    match = _ANCHOR.match(text.strip())
    if match is None:
        raise argparse.ArgumentTypeError(f"expected HASH:COUNT (64 hex digits, ':', a number), got {text!r}")
    return match.group(1).lower(), int(match.group(2))


def add_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Register ``audit verify`` and ``audit anchor``."""
    parser = sub.add_parser("audit", help="check the audit log", description="Check the audit log.")
    actions = parser.add_subparsers(dest="audit_command", metavar="ACTION")
    actions.required = True
    verify = actions.add_parser(
        "verify", help="verify the audit log's hash chain", description="Exit 1 naming the first entry that fails."
    )
    verify.add_argument(
        "--anchor", action="append", default=[], type=anchor_value, metavar="HASH:COUNT",
        help="an anchor from the daemon's log (or `audit anchor`): entry COUNT must still carry HASH (repeatable)",
    )  # fmt: skip
    add_config_option(verify)
    verify.set_defaults(func=run_verify)
    anchor = actions.add_parser("anchor", help="print the current anchor (HASH:COUNT) to keep outside the store")
    add_config_option(anchor)
    anchor.set_defaults(func=run_anchor)


def _read(args: argparse.Namespace, fn: Callable[[Tx], T]) -> T:
    from bridge.config import load_config

    config = load_config(args.config)

    async def go() -> T:
        store = await open_store(config.store, create_missing_key=False, must_exist=True)
        try:
            return await store.read(fn)
        finally:
            await store.close()

    return asyncio.run(go())


def run_verify(args: argparse.Namespace) -> int:
    """Verify the chain (and anchors); print the entry count, or fail naming the first bad entry."""
    anchors: list[tuple[str, int]] = list(args.anchor)
    result = _read(args, lambda tx: tx.audit.verify(anchors))
    if not result.ok:
        where = f"entry {result.bad_id}" if result.bad_id is not None else "its end"
        raise IntegrityError(f"audit log broken at {where}: {result.reason}", table="audit_log", row_id=result.bad_id)
    line = f"audit log intact: {result.count} entries"
    if anchors:
        line += f"; {len(anchors)} anchor(s) on the chain"
    print(line)
    return 0


def run_anchor(args: argparse.Namespace) -> int:
    """Print ``HASH:COUNT`` of the chain as it is now."""
    digest, count = _read(args, lambda tx: tx.audit.anchor())
    print(f"{digest}:{count}")
    return 0
