"""Sensitive-data detectors for Carebridge: IBANs, card numbers, BSNs, login codes, passwords.

Registered through the ``carebridge`` entry-point group as
``sensitive = "carebridge_sensitive:plugin"``: ``plugin`` is an object so
that it can hold the administrator's patterns read by ``configure`` and use
them in ``detect_sensitive``.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

from bridge import Finding, hookimpl

from .admin import AdminPattern, load_patterns
from .scan import detect

__all__ = ["SensitivePlugin", "plugin"]


class SensitiveSection(Protocol):
    """The part of ``[sensitive]`` this plugin reads."""

    @property
    def patterns_file(self) -> Path | None:
        """The admin patterns file, already resolved against the config's directory."""


class ConfigWithSensitive(Protocol):
    """What this plugin needs of the core's configuration object."""

    @property
    def sensitive(self) -> SensitiveSection:
        """The ``[sensitive]`` section."""


class SensitivePlugin:
    """The detectors, plus the patterns from ``[sensitive] patterns_file``."""

    def __init__(self) -> None:
        self.admin_patterns: tuple[AdminPattern, ...] = ()

    @hookimpl
    def configure(self, config: ConfigWithSensitive) -> None:
        """Load ``[sensitive] patterns_file`` (None: no admin patterns).

        The new patterns replace the old ones only once the whole file is
        read, so a bad file on reload leaves the previous patterns in force.
        The swap is one attribute assignment, safe while the store's writer
        thread is detecting.

        :raises ConfigError: ``FILE:LINE: reason`` for a bad patterns file.
        """
        path = config.sensitive.patterns_file
        self.admin_patterns = () if path is None else load_patterns(path)

    @hookimpl
    def detect_sensitive(self, text: str) -> Sequence[Finding]:
        """Return the findings of every detector and admin pattern, sorted by start."""
        return detect(text, self.admin_patterns)


plugin = SensitivePlugin()
