"""``carebridge keys rotate``: re-wrap every data key under a new master key.

Crash safety (exactly one key ever opens the database): with a ``file:`` key
the new key is first written to ``<keyfile>.new`` (fsync), then ONE database
transaction re-wraps every data key and the key check, then ``.new`` is
renamed over the key file. A crash before the commit leaves the old key in
force (a stale ``.new`` is harmless); a crash after it leaves the new key in
``.new``, and the next open finishes the rename. With an ``env:`` or
``credential:`` key the new key goes to ``--output FILE`` (0600) before the
commit, for the admin to install.

Retiring the old key: after the commit the WAL is checkpointed and truncated
(``secure_delete`` has zeroed the old wrappings in the pages that replaced
them), so the old wrapped keys are gone from the files. ``--rekey`` then
replaces every contact's and agent's data key and re-encrypts what it sealed
(:mod:`bridge.store.repos.rekey`), one group of owners per transaction: a
running daemon keeps working and follows each replaced key; a crashed run is
resumed by running the command again.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from bridge.cli import add_config_option
from bridge.errors import ConfigError, StoreError
from bridge.store import open_store
from bridge.store.keyfile import (
    describe,
    fsync_dir,
    generate_key,
    key_file_path,
    load_master_key,
    write_key_file,
)

if TYPE_CHECKING:
    from bridge.store import StoreSettings
    from bridge.store.engine import Progress


def add_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Register ``keys rotate``."""
    parser = sub.add_parser("keys", help="manage the master key", description="Manage the master key.")
    actions = parser.add_subparsers(dest="keys_command", metavar="ACTION")
    actions.required = True
    rotate = actions.add_parser(
        "rotate",
        help="re-wrap every data key under a new master key",
        description="Generate a new master key and re-wrap every data key under it in one transaction. "
        "A file: key is replaced in place; an env:/credential: key needs --output.",
    )
    rotate.add_argument("--output", metavar="FILE", help="where to write the new key (env:/credential: keys only)")
    rotate.add_argument(
        "--rekey", action="store_true",
        help="also replace every contact's and agent's data key and re-encrypt their data (resumable; "
        "the daemon keeps running)",
    )  # fmt: skip
    add_config_option(rotate)
    rotate.set_defaults(func=run_rotate)


def run_rotate(args: argparse.Namespace) -> int:
    """Rotate the master key named by ``[store] key``."""
    from bridge.cli.progress import ProgressBar
    from bridge.config import load_config

    config = load_config(args.config)
    output = Path(args.output) if args.output else None
    if args.rekey:
        with ProgressBar("re-encrypting") as bar:
            message = asyncio.run(rotate(config.store, output, rekey=True, progress=bar))
    else:
        message = asyncio.run(rotate(config.store, output))
    print(message)
    return 0


async def rotate(
    settings: StoreSettings, output: Path | None, *, rekey: bool = False, progress: Progress | None = None
) -> str:
    """Do the rotation (and the rekey); return the line to print."""
    from bridge.store.keyring import pending_key_path

    ref = settings.key
    key_path = key_file_path(ref)
    if key_path is None and output is None:
        raise ConfigError(f"keys rotate: [store] key is {ref}; pass --output FILE to receive the new key")
    if key_path is not None and output is not None:
        raise ConfigError(
            "keys rotate: --output is only for env: or credential: keys; a file: key is replaced in place"
        )
    if output is not None and await asyncio.to_thread(output.exists):
        raise StoreError(f"{output} already exists; refusing to overwrite a key file")
    store = await open_store(settings, create_missing_key=False, must_exist=True)
    rekeyed: dict[str, int] | None = None
    try:
        if rekey:
            unknown = await store.read(lambda tx: tx.rekey.unknown_columns())
            if unknown:
                raise StoreError(f"cannot re-encrypt: unknown sealed column(s) {', '.join(unknown)}")
        new_key = generate_key()
        if key_path is not None:
            pending = pending_key_path(key_path)
            write_key_file(pending, new_key)
        else:
            assert output is not None
            write_key_file(output, new_key, exclusive=True)
        count = await store.rotate_master_key(new_key)
        await store.write(lambda tx: tx.audit.append(cli_actor(), "keys.rotate", None, {"data_keys": count}))
        if key_path is not None:
            _install(pending, key_path, ref, new_key)
        if not await store.checkpoint():
            print(
                f"carebridge: warning: the WAL of {settings.path} could not be truncated yet (another process kept "
                "reading); the old wrappings leave it at the next checkpoint",
                file=sys.stderr,
            )
        if rekey:
            rekeyed = await store.rekey(progress=progress)
            detail = dict(rekeyed)
            await store.write(lambda tx: tx.audit.append(cli_actor(), "keys.rekey", None, detail))
    finally:
        await store.close()
    if key_path is not None:
        message = f"master key rotated: {count} data keys re-wrapped; {key_path} holds the new key"
    else:
        message = (
            f"master key rotated: {count} data keys re-wrapped; install the new key from {output} "
            f"in place of {describe(ref)} and restart the daemon (the old key is refused from now on)"
        )
    if rekeyed is not None:
        message += (
            f"\ndata keys replaced: {rekeyed['keys']}; re-encrypted {rekeyed['cells']} value(s) and"
            f" {rekeyed['files']} media file(s)" + (" (an interrupted run was resumed)" if rekeyed["resumed"] else "")
        )
        if rekeyed["unreadable"]:
            message += f"; {rekeyed['unreadable']} value(s) were unreadable before and stay so"
    return message


def _install(pending: Path, key_path: Path, ref: str, new_key: bytes) -> None:
    """Rename ``<keyfile>.new`` over the key file (a starting daemon may have done it already)."""
    try:
        os.replace(pending, key_path)
    except FileNotFoundError:  # a starting daemon finished the rename for us
        if load_master_key(ref) != new_key:
            raise StoreError(f"{pending} vanished before it replaced {key_path}") from None
    fsync_dir(key_path.parent)


def cli_actor() -> str:
    """The audit actor for admin commands: ``cli:<login name>``."""
    try:
        import getpass

        return f"cli:{getpass.getuser()}"
    except (KeyError, OSError):
        return "cli"
