"""The ``[channels.email]`` section, validated into a typed config.

The core hands each plugin its raw section with secrets already resolved
(``env:``/``file:``/``credential:``) and ``enabled`` filled in; this module
checks every key and names the offending one in its ``ConfigError``.

Inbound mail arrives over LMTP from an on-box MTA (Postfix, Exim, …). The
``imap_*`` keys are part of the documented section, but IMAP polling is not
implemented in this version: ``inbound = "imap"`` is refused with a message
saying so rather than silently receiving nothing.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bridge import ConfigError

SECTION = "channels.email"
TLS_MODES = ("starttls", "tls", "none")
DEFAULT_PORTS = {"starttls": 587, "tls": 465, "none": 25}
DEFAULT_LMTP_HOST = "127.0.0.1"
DEFAULT_LMTP_PORT = 8024
_IMAP_KEYS = ("imap_host", "imap_port", "imap_username", "imap_password", "imap_folder")
_KNOWN = frozenset(
    {
        "enabled",
        "smtp_host",
        "smtp_port",
        "smtp_tls",
        "smtp_username",
        "smtp_password",
        "smtp_ca_file",
        "from_address",
        "inbound",
        "lmtp_host",
        "lmtp_port",
        *_IMAP_KEYS,
    }
)
# addr-spec in its dot-atom form: what a support address realistically is.
_ATOM = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+"
_LOCAL = re.compile(rf"^{_ATOM}(?:\.{_ATOM})*$")
_LABEL = re.compile(r"^(?!-)[A-Za-z0-9-]{1,63}(?<!-)$")


def split_address(text: str) -> tuple[str, str]:
    """Return ``(local part, lower-cased domain)`` of a plain ``local@domain`` address.

    :raises ValueError: when ``text`` is not such an address.
    """
    local, sep, domain = text.strip().rpartition("@")
    labels = domain.split(".")
    if not sep or not _LOCAL.match(local) or len(local) > 64 or len(domain) > 253:
        raise ValueError(f"not an email address: {text!r}")
    if not domain or not all(_LABEL.match(label) for label in labels):
        raise ValueError(f"not an email address: {text!r}")
    return local, domain.lower()


@dataclass(frozen=True, slots=True)
class EmailConfig:
    """Settings of the email channel.

    :param smtp_host: the submission server that relays our mail.
    :param smtp_port: its port (default 587 for STARTTLS, 465 for implicit TLS, 25 for none).
    :param smtp_tls: ``starttls`` (upgrade is required, never opportunistic), ``tls`` or ``none``.
    :param smtp_username: log in when set (never over a plaintext connection).
    :param smtp_password: its password (never logged).
    :param smtp_ca_file: a PEM bundle to trust instead of the system trust store.
    :param from_address: our address; its domain is the one the LMTP receiver accepts.
    :param inbound: how mail comes in; only ``lmtp`` in this version.
    :param lmtp_host: where the LMTP receiver listens (loopback by default).
    :param lmtp_port: its port.
    """

    smtp_host: str
    from_address: str
    smtp_port: int = 587
    smtp_tls: str = "starttls"
    smtp_username: str = ""
    smtp_password: str = ""
    smtp_ca_file: Path | None = None
    inbound: str = "lmtp"
    lmtp_host: str = DEFAULT_LMTP_HOST
    lmtp_port: int = DEFAULT_LMTP_PORT
    enabled: bool = True

    def __repr__(self) -> str:
        # Keep the password out of tracebacks and debug logs.
        return (
            f"EmailConfig(smtp_host={self.smtp_host!r}, smtp_port={self.smtp_port!r}, smtp_tls={self.smtp_tls!r},"
            f" inbound={self.inbound!r}, lmtp_host={self.lmtp_host!r}, lmtp_port={self.lmtp_port!r})"
        )

    @property
    def domain(self) -> str:
        """The domain of ``from_address``: recipients we accept and where Reply-To points."""
        return split_address(self.from_address)[1]

    @classmethod
    def from_section(cls, section: Mapping[str, Any]) -> EmailConfig:
        """Validate a raw ``[channels.email]`` section.

        :raises ConfigError: naming ``channels.email.<key>`` and what is wrong.
        """
        if not isinstance(section, Mapping):
            raise ConfigError(f"{SECTION}: expected a table")
        unknown = sorted(set(section) - _KNOWN)
        if unknown:
            raise ConfigError(f"{SECTION}.{unknown[0]}: unknown key (expected one of {', '.join(sorted(_KNOWN))})")
        enabled = section.get("enabled", True)
        if not isinstance(enabled, bool):
            raise ConfigError(f"{SECTION}.enabled: expected true or false")
        tls = _choice(section, "smtp_tls", TLS_MODES, "starttls")
        inbound = _choice(section, "inbound", ("lmtp", "imap"), "lmtp")
        if inbound == "imap":
            raise ConfigError(
                f'{SECTION}.inbound: IMAP inbound is not available in this version; use "lmtp" and have the'
                " local MTA deliver to lmtp_host:lmtp_port"
            )
        from_address = _text(section, "from_address", required=True)
        try:
            split_address(from_address)
        except ValueError as err:
            raise ConfigError(f"{SECTION}.from_address: {err}") from err
        username = _text(section, "smtp_username")
        password = _text(section, "smtp_password")
        if username and tls == "none":
            raise ConfigError(
                f'{SECTION}.smtp_username: refusing to log in over a plaintext connection; set smtp_tls to "starttls"'
                ' or "tls"'
            )
        if username and not password:
            raise ConfigError(f"{SECTION}.smtp_password: required when smtp_username is set")
        return cls(
            smtp_host=_text(section, "smtp_host", required=True),
            smtp_port=_port(section, "smtp_port", DEFAULT_PORTS[tls]),
            smtp_tls=tls,
            smtp_username=username,
            smtp_password=password if username else "",
            smtp_ca_file=_ca_file(section),
            from_address=from_address.lower(),
            inbound=inbound,
            lmtp_host=_text(section, "lmtp_host") or DEFAULT_LMTP_HOST,
            lmtp_port=_port(section, "lmtp_port", DEFAULT_LMTP_PORT),
            enabled=enabled,
        )


def _text(section: Mapping[str, Any], key: str, *, required: bool = False) -> str:
    value = section.get(key)
    if value is None or (isinstance(value, str) and not value.strip()):
        if required:
            raise ConfigError(f"{SECTION}.{key}: required")
        return ""
    if not isinstance(value, str):
        raise ConfigError(f"{SECTION}.{key}: expected a string")
    return value.strip()


def _choice(section: Mapping[str, Any], key: str, choices: tuple[str, ...], default: str) -> str:
    value = section.get(key, default)
    if not isinstance(value, str) or value.strip().lower() not in choices:
        raise ConfigError(f"{SECTION}.{key}: expected one of {', '.join(choices)}, got {value!r}")
    return value.strip().lower()


def _port(section: Mapping[str, Any], key: str, default: int) -> int:
    value = section.get(key, default)
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or not 0 < value < 65536:
        raise ConfigError(f"{SECTION}.{key}: expected a port number 1-65535, got {value!r}")
    return value


def _ca_file(section: Mapping[str, Any]) -> Path | None:
    text = _text(section, "smtp_ca_file")
    if not text:
        return None
    path = Path(text).expanduser()
    if not path.is_file():
        raise ConfigError(f"{SECTION}.smtp_ca_file: no such file: {text}")
    return path
