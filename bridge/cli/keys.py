"""``carebridge keys rotate``: re-wrap every data key under a new master key.

Crash safety (exactly one key ever opens the database): with a ``file:`` key
the new key is first written to ``<keyfile>.new`` (fsync), then ONE database
transaction re-wraps every data key and the key check, then ``.new`` is
renamed over the key file. A crash before the commit leaves the old key in
force (a stale ``.new`` is harmless); a crash after it leaves the new key in
``.new``, and the next open finishes the rename. With an ``env:`` or
``credential:`` key the new key goes to ``--output FILE`` (0600) before the
commit, for the admin to install.
"""

from __future__ import annotations

import argparse
import asyncio
import os
from pathlib import Path
from typing import TYPE_CHECKING

from bridge.cli import add_config_option
from bridge.errors import ConfigError, StoreError
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
    add_config_option(rotate)
    rotate.set_defaults(func=run_rotate)


def run_rotate(args: argparse.Namespace) -> int:
    """Rotate the master key named by ``[store] key``."""
    from bridge.config import load_config

    config = load_config(args.config)
    message = asyncio.run(rotate(config.store, Path(args.output) if args.output else None))
    print(message)
    return 0


async def rotate(settings: StoreSettings, output: Path | None) -> str:
    """Do the rotation; return the line to print."""
    from bridge.store import Store
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
    store = await Store.open(settings, create_missing_key=False, must_exist=True)
    try:
        new_key = generate_key()
        if key_path is not None:
            pending = pending_key_path(key_path)
            write_key_file(pending, new_key)
        else:
            assert output is not None
            write_key_file(output, new_key, exclusive=True)
        count = await store.rotate_master_key(new_key)
        await store.write(lambda tx: tx.audit.append(cli_actor(), "keys.rotate", None, {"data_keys": count}))
    finally:
        await store.close()
    if key_path is not None:
        try:
            os.replace(pending, key_path)
        except FileNotFoundError:  # a starting daemon finished the rename for us
            if load_master_key(ref) != new_key:
                raise StoreError(f"{pending} vanished before it replaced {key_path}") from None
        fsync_dir(key_path.parent)
        return f"master key rotated: {count} data keys re-wrapped; {key_path} holds the new key"
    return (
        f"master key rotated: {count} data keys re-wrapped; install the new key from {output} "
        f"in place of {describe(ref)} and restart the daemon (the old key is refused from now on)"
    )


def cli_actor() -> str:
    """The audit actor for admin commands: ``cli:<login name>``."""
    try:
        import getpass

        return f"cli:{getpass.getuser()}"
    except (KeyError, OSError):
        return "cli"
