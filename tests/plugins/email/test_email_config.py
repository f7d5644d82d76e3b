"""``[channels.email]`` validation: every error names its key; IMAP never without TLS."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from bridge import ConfigError
from carebridge_email import EmailChannel, EmailConfig

BASE: dict[str, Any] = {"smtp_host": "smtp.example.org", "from_address": "Care@Example.ORG"}
IMAP: dict[str, Any] = {
    "inbound": "imap", "imap_host": "imap.example.org", "imap_username": "care@example.org", "imap_password": "pw",
}  # fmt: skip


def test_defaults() -> None:
    settings = EmailConfig.from_section(BASE)
    assert (settings.smtp_port, settings.smtp_tls, settings.inbound) == (587, "starttls", "lmtp")
    assert (settings.lmtp_host, settings.lmtp_port) == ("127.0.0.1", 8024)
    assert settings.from_address == "care@example.org" and settings.domain == "example.org"
    assert settings.smtp_ca_file is None and settings.enabled and settings.imap is None
    assert (settings.trusted_authserv_ids, settings.max_mails_per_hour, settings.max_mail_size) == (
        (),
        100,
        32 * 1024 * 1024,
    )


def test_imap_defaults_to_implicit_tls_and_its_own_folders() -> None:
    imap = EmailConfig.from_section({**BASE, **IMAP, "trusted_authserv_ids": ["MX.Example.org"]}).imap
    assert imap is not None
    assert (imap.tls, imap.port, imap.folder) == ("tls", 993, "INBOX")
    assert (imap.done_folder, imap.error_folder, imap.poll_interval) == ("Carebridge-Done", "Carebridge-Errors", 60)
    starttls = EmailConfig.from_section({**BASE, **IMAP, "imap_tls": "starttls"}).imap
    assert starttls is not None and starttls.port == 143
    assert "pw" not in repr(EmailConfig.from_section({**BASE, **IMAP}))
    assert EmailConfig.from_section({**BASE, "trusted_authserv_ids": ["MX.Example.org "]}).trusted_authserv_ids == (
        "mx.example.org",
    )


@pytest.mark.parametrize(("tls", "port"), [("tls", 465), ("none", 25), ("STARTTLS", 587)])
def test_default_port_follows_the_tls_mode(tls: str, port: int) -> None:
    assert EmailConfig.from_section({**BASE, "smtp_tls": tls}).smtp_port == port


def test_the_documented_example_section_is_valid() -> None:
    section = {
        "enabled": False, "smtp_host": "localhost", "smtp_port": 587, "smtp_tls": "starttls", "smtp_username": "",
        "smtp_password": "resolved-secret", "from_address": "care@example.org", "inbound": "lmtp",
        "lmtp_host": "127.0.0.1", "lmtp_port": 8024,
    }  # fmt: skip
    settings = EmailConfig.from_section(section)
    assert settings.smtp_username == "" and settings.smtp_password == "", "no login, so no password is kept"


@pytest.mark.parametrize(
    ("overrides", "key", "words"),
    [
        ({"smtp_host": ""}, "smtp_host", "required"),
        ({"from_address": None}, "from_address", "required"),
        ({"from_address": "care"}, "from_address", "not an email address"),
        ({"from_address": "care@exa mple.org"}, "from_address", "not an email address"),
        ({"smtp_tls": "ssl"}, "smtp_tls", "starttls, tls, none"),
        ({"smtp_port": 0}, "smtp_port", "1-65535"),
        ({"smtp_port": True}, "smtp_port", "1-65535"),
        ({"lmtp_port": "x"}, "lmtp_port", "1-65535"),
        ({"inbound": "pop3"}, "inbound", "lmtp, imap"),
        ({"inbound": "imap", "imap_username": "u", "imap_password": "p"}, "imap_host", "required"),
        ({**IMAP, "imap_password": ""}, "imap_password", "required"),
        ({**IMAP, "imap_tls": "none"}, "imap_tls", "tls, starttls"),
        ({**IMAP, "imap_ca_file": "/nonexistent/ca.pem"}, "imap_ca_file", "no such file"),
        ({**IMAP, "imap_done_folder": "inbox"}, "imap_done_folder", "must differ from imap_folder"),
        ({**IMAP, "imap_error_folder": 'Bad"Name'}, "imap_error_folder", "printable ASCII"),
        ({**IMAP, "imap_poll_interval": 0}, "imap_poll_interval", "seconds"),
        ({"trusted_authserv_ids": "mx.example.org"}, "trusted_authserv_ids", "list of names"),
        ({"max_mails_per_hour": -1}, "max_mails_per_hour", "at least 0"),
        ({"max_mail_size": 10}, "max_mail_size", "at least 1024"),
        ({"smtp_username": "bridge"}, "smtp_password", "required when smtp_username"),
        ({"smtp_tls": "none", "smtp_username": "u", "smtp_password": "p"}, "smtp_username", "plaintext"),
        ({"smtp_ca_file": "/nonexistent/ca.pem"}, "smtp_ca_file", "no such file"),
        ({"enabled": "yes"}, "enabled", "true or false"),
        ({"smtp_hots": "x"}, "smtp_hots", "unknown key"),
        ({"smtp_password": 5, "smtp_username": "u"}, "smtp_password", "expected a string"),
    ],
)
def test_errors_name_the_key(overrides: dict[str, Any], key: str, words: str) -> None:
    with pytest.raises(ConfigError) as caught:
        EmailChannel.check_config({**BASE, **overrides})
    message = str(caught.value)
    assert message.startswith(f"channels.email.{key}:") and words in message, message


def test_ca_file_and_repr_keeps_the_password_out(tmp_path: Path) -> None:
    ca = tmp_path / "ca.pem"
    ca.write_text("-----BEGIN CERTIFICATE-----\n")
    settings = EmailConfig.from_section(
        {**BASE, "smtp_username": "bridge", "smtp_password": "hunter2-secret", "smtp_ca_file": str(ca)}
    )
    assert settings.smtp_ca_file == ca
    assert "hunter2" not in repr(settings)
