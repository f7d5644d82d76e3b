"""The ``[channels.email]`` section, validated into a typed config.

The core hands each plugin its raw section with secrets already resolved
(``env:``/``file:``/``credential:``) and ``enabled`` filled in; this module
checks every key and names the offending one in its ``ConfigError``.

Inbound mail arrives either over IMAP from a hosted mailbox (``inbound =
"imap"``: implicit TLS or STARTTLS, never a password in clear) or over LMTP
from an on-box MTA (``inbound = "lmtp"``).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bridge import ConfigError, check_section_keys

SECTION = "channels.email"
TLS_MODES = ("starttls", "tls", "none")
DEFAULT_PORTS = {"starttls": 587, "tls": 465, "none": 25}
DEFAULT_LMTP_HOST = "127.0.0.1"
DEFAULT_LMTP_PORT = 8024
IMAP_TLS_MODES = ("tls", "starttls")
IMAP_PORTS = {"tls": 993, "starttls": 143}
DEFAULT_DONE_FOLDER = "Carebridge-Done"
DEFAULT_ERROR_FOLDER = "Carebridge-Errors"
DEFAULT_POLL_INTERVAL = 60.0
DEFAULT_MAX_MAILS_PER_HOUR = 100
#: The largest mail taken in (LMTP answers 552 above it; IMAP moves it to the error folder).
DEFAULT_MAX_MAIL_SIZE = 32 * 1024 * 1024
_IMAP_KEYS = (
    "imap_host", "imap_port", "imap_username", "imap_password", "imap_folder", "imap_tls", "imap_ca_file",
    "imap_done_folder", "imap_error_folder", "imap_poll_interval",
)  # fmt: skip
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
        "trusted_authserv_ids",
        "max_mails_per_hour",
        "max_mail_size",
        *_IMAP_KEYS,
    }
)
# A folder name we can send as an IMAP quoted string: printable ASCII (no modified UTF-7 needed).
_FOLDER = re.compile(r"^[\x20-\x7e]{1,200}$")
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
    :param inbound: how mail comes in: ``imap`` (a mailbox we read) or ``lmtp`` (an MTA delivers to us).
    :param lmtp_host: where the LMTP receiver listens (loopback by default).
    :param lmtp_port: its port.
    :param imap: the IMAP settings when ``inbound`` is ``imap``.
    :param trusted_authserv_ids: authserv-ids whose ``Authentication-Results`` vouch for senders.
    :param max_mails_per_hour: mails taken in per sender per hour (0: no cap).
    :param max_mail_size: the largest mail taken in, in bytes.
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
    imap: ImapConfig | None = None
    trusted_authserv_ids: tuple[str, ...] = ()
    max_mails_per_hour: int = DEFAULT_MAX_MAILS_PER_HOUR
    max_mail_size: int = DEFAULT_MAX_MAIL_SIZE
    enabled: bool = True

    def __repr__(self) -> str:
        # Keep the password out of tracebacks and debug logs.
        return (
            f"EmailConfig(smtp_host={self.smtp_host!r}, smtp_port={self.smtp_port!r}, smtp_tls={self.smtp_tls!r},"
            f" inbound={self.inbound!r}, lmtp_host={self.lmtp_host!r}, lmtp_port={self.lmtp_port!r},"
            f" imap={self.imap!r})"
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
        check_section_keys(SECTION, section, _KNOWN)
        enabled = section.get("enabled", True)
        if not isinstance(enabled, bool):
            raise ConfigError(f"{SECTION}.enabled: expected true or false")
        tls = _choice(section, "smtp_tls", TLS_MODES, "starttls")
        inbound = _choice(section, "inbound", ("lmtp", "imap"), "lmtp")
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
            smtp_ca_file=_ca_file(section, "smtp_ca_file"),
            from_address=from_address.lower(),
            inbound=inbound,
            lmtp_host=_text(section, "lmtp_host") or DEFAULT_LMTP_HOST,
            lmtp_port=_port(section, "lmtp_port", DEFAULT_LMTP_PORT),
            imap=ImapConfig.from_section(section) if inbound == "imap" else None,
            trusted_authserv_ids=_names(section, "trusted_authserv_ids"),
            max_mails_per_hour=_count(section, "max_mails_per_hour", DEFAULT_MAX_MAILS_PER_HOUR, minimum=0),
            max_mail_size=_count(section, "max_mail_size", DEFAULT_MAX_MAIL_SIZE, minimum=1024),
            enabled=enabled,
        )


@dataclass(frozen=True, slots=True)
class ImapConfig:
    """How to read the mailbox (``inbound = "imap"``).

    :param host: the IMAP server.
    :param username: the mailbox login.
    :param password: its password (never logged, never sent before TLS).
    :param tls: ``tls`` (implicit, port 993) or ``starttls`` (port 143, the upgrade is required).
    :param port: the port (default by ``tls``).
    :param ca_file: a PEM bundle to trust instead of the system trust store.
    :param folder: the folder mail arrives in.
    :param done_folder: where a mail goes once committed (flagged ``\\Seen``).
    :param error_folder: where a mail that cannot be taken in goes (unparseable, too large, over the cap).
    :param poll_interval: seconds between looks when the server has no IDLE.
    """

    host: str
    username: str
    password: str
    tls: str = "tls"
    port: int = 993
    ca_file: Path | None = None
    folder: str = "INBOX"
    done_folder: str = DEFAULT_DONE_FOLDER
    error_folder: str = DEFAULT_ERROR_FOLDER
    poll_interval: float = DEFAULT_POLL_INTERVAL

    def __repr__(self) -> str:
        return (
            f"ImapConfig(host={self.host!r}, port={self.port!r}, tls={self.tls!r}, folder={self.folder!r},"
            f" done_folder={self.done_folder!r}, error_folder={self.error_folder!r})"
        )

    @classmethod
    def from_section(cls, section: Mapping[str, Any]) -> ImapConfig:
        """The IMAP keys of ``[channels.email]``.

        :raises ConfigError: naming ``channels.email.imap_<key>``.
        """
        tls = _choice(section, "imap_tls", IMAP_TLS_MODES, "tls")
        folder = _folder(section, "imap_folder", "INBOX")
        done = _folder(section, "imap_done_folder", DEFAULT_DONE_FOLDER)
        error = _folder(section, "imap_error_folder", DEFAULT_ERROR_FOLDER)
        for key, value in (("imap_done_folder", done), ("imap_error_folder", error)):
            if value.lower() == folder.lower():
                raise ConfigError(f"{SECTION}.{key}: must differ from imap_folder ({folder!r})")
        interval = section.get("imap_poll_interval", DEFAULT_POLL_INTERVAL)
        if isinstance(interval, bool) or not isinstance(interval, (int, float)) or not 0 < interval <= 3600:
            raise ConfigError(f"{SECTION}.imap_poll_interval: expected seconds between 0 and 3600, got {interval!r}")
        return cls(
            host=_text(section, "imap_host", required=True),
            username=_text(section, "imap_username", required=True),
            password=_text(section, "imap_password", required=True),
            tls=tls,
            port=_port(section, "imap_port", IMAP_PORTS[tls]),
            ca_file=_ca_file(section, "imap_ca_file"),
            folder=folder,
            done_folder=done,
            error_folder=error,
            poll_interval=float(interval),
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


def _ca_file(section: Mapping[str, Any], key: str) -> Path | None:
    text = _text(section, key)
    if not text:
        return None
    path = Path(text).expanduser()
    if not path.is_file():
        raise ConfigError(f"{SECTION}.{key}: no such file: {text}")
    return path


def _folder(section: Mapping[str, Any], key: str, default: str) -> str:
    value = _text(section, key) or default
    if not _FOLDER.match(value) or '"' in value or "\\" in value:
        raise ConfigError(f"{SECTION}.{key}: expected a folder name of printable ASCII without quotes, got {value!r}")
    return value


def _count(section: Mapping[str, Any], key: str, default: int, *, minimum: int) -> int:
    value = section.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ConfigError(f"{SECTION}.{key}: expected a whole number of at least {minimum}, got {value!r}")
    return value


def _names(section: Mapping[str, Any], key: str) -> tuple[str, ...]:
    value = section.get(key, [])
    if not isinstance(value, list) or not all(isinstance(v, str) and v.strip() for v in value):
        raise ConfigError(f'{SECTION}.{key}: expected a list of names, e.g. ["mx.example.org"]')
    return tuple(v.strip().lower() for v in value)
