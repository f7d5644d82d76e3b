"""Logging for the daemon and the CLI: one line per event on stderr.

Why: journald and container log collectors treat each line as one event, so
a traceback spread over twenty lines becomes twenty unrelated events. The
formatter folds newlines into `` | ``. A filter masks every configured secret
the process knows about, as a last line of defence: code must still never log
tokens or message text (message text only at DEBUG, and only its length).
Which values are secrets, a channel says in its ``schema``; for a channel
without one, keys whose names look secret (token, secret, password, key)
are masked.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterable, Mapping
from typing import Any, TextIO

from bridge.channel import Channel

_HANDLER_NAME = "carebridge-stderr"
_SECRET_WORDS = ("token", "secret", "password", "key")
_MIN_SECRET_LEN = 6


class OneLineFormatter(logging.Formatter):
    """Format a record, its exception and stack on a single line."""

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        return text.replace("\r", "").replace("\n", " | ")


class SecretFilter(logging.Filter):
    """Replace known secret values with ``***`` in every record passing the handler."""

    def __init__(self) -> None:
        super().__init__()
        self.secrets: tuple[str, ...] = ()

    def set_secrets(self, secrets: Iterable[str]) -> None:
        """Mask these values from now on (longest first, so prefixes do not leak)."""
        unique = {s for s in secrets if isinstance(s, str) and len(s) >= _MIN_SECRET_LEN}
        self.secrets = tuple(sorted(unique, key=len, reverse=True))

    def filter(self, record: logging.LogRecord) -> bool:
        if not self.secrets:
            return True
        try:
            message = record.getMessage()
        except Exception:  # boundary: a bad format string is the logging module's to report
            return True
        masked = message
        for secret in self.secrets:
            masked = masked.replace(secret, "***")
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        exc_text = record.exc_text
        if exc_text:
            for secret in self.secrets:
                exc_text = exc_text.replace(secret, "***")
            record.exc_text = exc_text
        if masked != message:
            record.msg, record.args = masked, None
        return True


class _StderrHandler(logging.StreamHandler):  # type: ignore[type-arg]  # StreamHandler is generic in typeshed only
    """Write to whatever ``sys.stderr`` is at emit time (tests and daemons may swap it)."""

    @property
    def stream(self) -> TextIO:
        return sys.stderr

    @stream.setter
    def stream(self, value: object) -> None:
        pass


_filter = SecretFilter()


def setup_logging(level: str = "info") -> None:
    """Install the single stderr handler on the root logger (idempotent)."""
    root = logging.getLogger()
    handler = next((h for h in root.handlers if h.get_name() == _HANDLER_NAME), None)
    if handler is None:
        handler = _StderrHandler()
        handler.set_name(_HANDLER_NAME)
        handler.setFormatter(OneLineFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        handler.addFilter(_filter)
        root.addHandler(handler)
    set_level(level)


def set_level(level: str) -> None:
    """Apply a ``[logging] level`` name (debug, info, warning, error, critical)."""
    logging.getLogger().setLevel(level.upper())
    # apscheduler narrates every job at INFO; only its problems matter unless debugging.
    logging.getLogger("apscheduler").setLevel(logging.DEBUG if level.lower() == "debug" else logging.WARNING)


def secrets_in(
    sections: Mapping[str, Mapping[str, Any]], channels: Mapping[str, type[Channel]] | None = None
) -> list[str]:
    """Collect the secret values of channel sections.

    :param channels: the installed channel classes by name: a section whose
        channel declares a ``schema`` gives the values of its secret keys;
        any other, the string values of secret-looking keys.
    """
    found: list[str] = []

    def walk(value: object, key: str) -> None:
        if isinstance(value, Mapping):
            for k, v in value.items():
                walk(v, str(k))
        elif isinstance(value, list):
            for v in value:
                walk(v, key)
        elif isinstance(value, str) and any(word in key.lower() for word in _SECRET_WORDS):
            found.append(value)

    for name, section in sections.items():
        cls = (channels or {}).get(name)
        if cls is not None and cls.schema is not None:
            found += cls.schema.secret_values(section)
        else:
            walk(section, "")
    return found


def mask_secrets(secrets: Iterable[str]) -> None:
    """Tell the stderr handler which values must never appear in a log line."""
    _filter.set_secrets(secrets)
