"""``carebridge init [DIR]``: write a commented bridge.toml and a fresh master key.

The generated configuration runs as it is (the console and the website chat
on, platform channels present but disabled, secrets as ``env:`` references),
so a new operator starts from a working daemon and turns channels on one at
a time. The core's sections come from ``bridge/defaults/bridge.toml``; each
installed channel that declares a ``schema`` and is not described there gets
its commented section from that schema. Existing files are never
overwritten: losing a master key loses the database.
"""

from __future__ import annotations

import argparse
import base64
import os
import secrets
from collections.abc import Mapping
from importlib import resources
from pathlib import Path

from bridge.channel import Channel
from bridge.cli import add_config_option
from bridge.errors import ConfigError
from bridge.plugins import make_plugin_manager

KEY_BYTES = 32


def template(channels: Mapping[str, type[Channel]] | None = None) -> str:
    """Return the commented configuration ``init`` writes.

    :param channels: the installed channel classes by name; the sections of
        those with a ``schema`` are appended (disabled) unless the defaults
        already describe them.
    """
    text = resources.files("bridge").joinpath("defaults/bridge.toml").read_text(encoding="utf-8")
    for name, cls in sorted((channels or {}).items()):
        if cls.schema is not None and f"[channels.{name}]" not in text:
            text = text.rstrip("\n") + "\n\n" + cls.schema.template()
    return text


def write_new_key_file(path: Path) -> None:
    """Create ``path`` with 32 random bytes, base64, one line, mode 0600.

    ``O_EXCL`` makes the refusal to overwrite race-free.
    """
    line = base64.b64encode(secrets.token_bytes(KEY_BYTES)) + b"\n"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    try:
        os.fchmod(fd, 0o600)  # regardless of the umask
        os.write(fd, line)
        os.fsync(fd)
    finally:
        os.close(fd)


def run_init(args: argparse.Namespace) -> int:
    """Write DIR/bridge.toml and DIR/master.key, refusing to overwrite either."""
    directory = Path(args.dir)
    config_path = directory / "bridge.toml"
    key_path = directory / "master.key"
    registry = getattr(args, "plugin_registry", None) or make_plugin_manager()
    for path in (config_path, key_path):
        if path.exists() or path.is_symlink():
            raise ConfigError(f"{path} already exists; refusing to overwrite it")
    try:
        directory.mkdir(parents=True, exist_ok=True)
        with config_path.open("x", encoding="utf-8") as handle:
            handle.write(template(registry.channels))
        write_new_key_file(key_path)
    except FileExistsError as err:
        raise ConfigError(f"{err.filename} already exists; refusing to overwrite it") from err
    except OSError as err:
        raise ConfigError(f"{directory}: cannot write: {err.strerror}") from err
    print(f"wrote {config_path}")
    print(f"wrote {key_path} (mode 0600; keep a backup: without it the database cannot be read)")
    print(f"start with: carebridge run -c {config_path}")
    print(
        "then open http://127.0.0.1:8080/ for the agent console (its login page names the command that"
        " creates the first admin) and http://127.0.0.1:8080/chat for the website chat"
    )
    return 0


def add_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Register ``init``."""
    parser = sub.add_parser("init", help="write a commented bridge.toml and a new master key")
    parser.add_argument("dir", nargs="?", default=".", metavar="DIR", help="target directory (default: .)")
    add_config_option(parser)
    parser.set_defaults(func=run_init)
