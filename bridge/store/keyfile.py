"""The master key: where it lives outside the database, and how it is written.

The master key wraps every data key of the store. It never enters the
database: it is read from a file (``file:/path``), an environment variable
(``env:NAME``) or a systemd credential (``credential:NAME``). All three hold
the same text: 32 random bytes, base64, one line. Key files are written
atomically (temporary file, fsync, rename, fsync of the directory) with mode
0600, so a crash leaves either the old file or the new one, never half a key.
"""

from __future__ import annotations

import base64
import binascii
import os
import secrets
from pathlib import Path

from bridge.errors import ConfigError, StoreError

KEY_BYTES = 32


def generate_key() -> bytes:
    """Return a new random 32-byte master key."""
    return secrets.token_bytes(KEY_BYTES)


def encode_key(key: bytes) -> str:
    """Return the key-file text for ``key`` (base64 and a newline)."""
    if len(key) != KEY_BYTES:
        raise ValueError("a master key is exactly 32 bytes")
    return base64.b64encode(key).decode("ascii") + "\n"


def decode_key(text: str, where: str) -> bytes:
    """Decode key-file text; ``where`` names the source in the error.

    :raises StoreError: when it is not base64 of exactly 32 bytes.
    """
    try:
        key = base64.b64decode(text.strip(), validate=True)
    except (binascii.Error, ValueError) as err:
        raise StoreError(f"master key in {where} is not base64 text") from err
    if len(key) != KEY_BYTES:
        raise StoreError(f"master key in {where} must be 32 bytes of base64, got {len(key)} bytes")
    return key


def key_file_path(ref: str) -> Path | None:
    """The path of a ``file:`` key reference, or None for ``env:``/``credential:``."""
    if ref.startswith("file:"):
        return Path(ref[len("file:") :]).expanduser()
    return None


def describe(ref: str) -> str:
    """A short human name for a key reference, for messages (never the key)."""
    path = key_file_path(ref)
    if path is not None:
        return str(path)
    return ref


def load_master_key(ref: str) -> bytes:
    """Load the master key named by ``ref`` (``file:``, ``env:`` or ``credential:``).

    :raises StoreError: when the key is missing or malformed.
    :raises ConfigError: when ``ref`` is not one of the three forms.
    """
    kind, sep, name = ref.partition(":")
    if not sep or not name:
        raise ConfigError(f"store.key: expected file:PATH, env:NAME or credential:NAME, got {ref!r}")
    if kind == "file":
        path = Path(name).expanduser()
        try:
            text = path.read_text("ascii")
        except FileNotFoundError as err:
            raise StoreError(f"master key {path} not found") from err
        except (OSError, UnicodeDecodeError) as err:
            raise StoreError(f"master key {path} cannot be read: {err}") from err
        return decode_key(text, str(path))
    if kind == "env":
        value = os.environ.get(name)
        if not value:
            raise StoreError(f"master key: environment variable {name} is not set")
        return decode_key(value, f"${name}")
    if kind == "credential":
        directory = os.environ.get("CREDENTIALS_DIRECTORY")
        if not directory:
            raise StoreError(f"master key: credential {name} requested but $CREDENTIALS_DIRECTORY is not set")
        path = Path(directory) / name
        try:
            text = path.read_text("ascii")
        except FileNotFoundError as err:
            raise StoreError(f"master key: credential {name} not found in {directory}") from err
        except (OSError, UnicodeDecodeError) as err:
            raise StoreError(f"master key: credential {name} cannot be read: {err}") from err
        return decode_key(text, f"credential {name}")
    raise ConfigError(f"store.key: expected file:PATH, env:NAME or credential:NAME, got {ref!r}")


def fsync_dir(directory: Path) -> None:
    """fsync a directory so a rename in it survives a power cut."""
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_key_file(path: str | Path, key: bytes, *, exclusive: bool = False) -> Path:
    """Write ``key`` to ``path`` atomically with mode 0600; return the path.

    :param exclusive: refuse to replace an existing file.
    :raises StoreError: when the file exists (exclusive) or cannot be written.
    """
    path = Path(path)
    text = encode_key(key).encode("ascii")
    if exclusive and path.exists():
        raise StoreError(f"{path} already exists; refusing to overwrite a key file")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            os.fchmod(fd, 0o600)  # whatever the umask
            os.write(fd, text)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
        fsync_dir(path.parent)
    except OSError as err:
        raise StoreError(f"cannot write key file {path}: {err}") from err
    return path
