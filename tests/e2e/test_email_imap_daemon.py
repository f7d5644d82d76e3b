"""The real daemon reading a real Dovecot mailbox: nothing lost or doubled across restarts of either.

``carebridge run`` as a subprocess with ``inbound = "imap"`` (implicit TLS,
trustme certificate): customer mails appended to INBOX, as an MTA's
delivery lands, open one conversation; mails that arrive while the daemon
is down are taken in when it is back, a redelivered one is dropped as a
duplicate, and a Dovecot restart in the middle of IDLE loses nothing.
Wrong credentials show in /healthz and stop nothing else.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import AsyncIterator
from email.message import EmailMessage
from pathlib import Path

import aiohttp
import pytest
import trustme

from carebridge_email.config import DEFAULT_DONE_FOLDER
from tests.daemon import DaemonProcess, run_cli, write_config
from tests.e2e.harness import wait_for
from tests.fakes.dovecot import USER, Dovecot, server_directory
from tests.fakes.smtp_server import FakeSmtpServer
from tests.plugins.email.conftest import (  # noqa: F401 - ca, ca_file, server_tls and smtp are fixtures used here
    FROM,
    SMTP_PASSWORD,
    SMTP_USER,
    ca,
    ca_file,
    server_tls,
    smtp,
)

CUSTOMER = "imap.customer@customer.test"


@pytest.fixture
async def dovecot(ca: trustme.CA) -> AsyncIterator[Dovecot]:  # noqa: F811 - ca is the fixture above
    server = Dovecot(server_directory(), ca)
    await server.start()
    try:
        yield server
    finally:
        await server.stop()
        shutil.rmtree(server.directory, ignore_errors=True)


def config_for(tmp_path: Path, smtp: FakeSmtpServer, ca_file: Path, dovecot: Dovecot) -> Path:  # noqa: F811
    return write_config(
        tmp_path,
        "[channels.email]\n"
        f'smtp_host = "127.0.0.1"\nsmtp_port = {smtp.port}\nsmtp_username = "{SMTP_USER}"\n'
        f'smtp_password = "{SMTP_PASSWORD}"\nsmtp_ca_file = "{ca_file}"\nfrom_address = "{FROM}"\n'
        f'inbound = "imap"\nimap_host = "127.0.0.1"\nimap_port = {dovecot.tls_port}\nimap_tls = "tls"\n'
        f'imap_ca_file = "{dovecot.ca_file}"\nimap_username = "{USER}"\nimap_password = "env:E2E_IMAP_PASSWORD"\n',
    )


def customer_mail(n: int) -> bytes:
    mail = EmailMessage()
    mail["From"] = f"Imke Customer <{CUSTOMER}>"
    mail["To"] = FROM
    mail["Subject"] = f"Question {n}"
    mail["Message-ID"] = f"<imap-{n}@customer.test>"
    mail.set_content(f"Question-Marker-{n}\n")
    return mail.as_bytes()


async def health(daemon: DaemonProcess) -> dict[str, object]:
    async with aiohttp.ClientSession() as http, http.get(daemon.url("/healthz")) as resp:
        return dict(await resp.json())


async def state_is(daemon: DaemonProcess, expected: str) -> bool:
    channels = (await health(daemon))["channels"]
    assert isinstance(channels, dict)
    return bool(channels["email"]["state"] == expected)


async def test_mail_flows_in_once_across_daemon_and_server_restarts(
    tmp_path: Path,
    smtp: FakeSmtpServer,  # noqa: F811
    ca_file: Path,  # noqa: F811
    dovecot: Dovecot,
) -> None:
    config = config_for(tmp_path, smtp, ca_file, dovecot)
    env = {"E2E_IMAP_PASSWORD": dovecot.password}

    async def done(count: int) -> bool:
        return await dovecot.count(DEFAULT_DONE_FOLDER) == count

    await dovecot.append(customer_mail(1))
    async with DaemonProcess(config, env=env) as daemon:
        await wait_for(lambda: done(1), what="the first mail taken in and filed")
        await wait_for(lambda: state_is(daemon, "connected"), what="connected")
        await dovecot.restart()  # mid-IDLE: the connection drops
        await dovecot.append(customer_mail(2))
        await wait_for(lambda: done(2), what="the mail after the server's restart")
    assert daemon.returncode == 0
    # While the daemon is down: a new mail, and the MTA's redelivery of the first one.
    await dovecot.append(customer_mail(3))
    await dovecot.append(customer_mail(1))
    async with DaemonProcess(config, env=env) as daemon:
        await wait_for(lambda: done(4), what="the mails that came while the daemon was down")
    assert await dovecot.count("INBOX") == 0
    status, out, err = await run_cli("gdpr", "export", f"email:{CUSTOMER}", "-c", str(config), env=env)
    assert status == 0, err
    conversations = json.loads(out)["conversations"]
    assert len(conversations) == 1, "one conversation"
    texts = [m["text"] for m in conversations[0]["messages"] if m["direction"] == "in"]
    assert texts == ["Question-Marker-1", "Question-Marker-2", "Question-Marker-3"], "nothing lost, nothing twice"
    for marker in ("Question-Marker", CUSTOMER, dovecot.password):
        assert marker not in daemon.stderr


async def test_wrong_credentials_show_in_healthz(
    tmp_path: Path,
    smtp: FakeSmtpServer,  # noqa: F811
    ca_file: Path,  # noqa: F811
    dovecot: Dovecot,
) -> None:
    config = config_for(tmp_path, smtp, ca_file, dovecot)
    async with DaemonProcess(config, env={"E2E_IMAP_PASSWORD": "not-the-password"}) as daemon:
        await wait_for(lambda: state_is(daemon, "bad_credentials"), what="bad_credentials in /healthz")
        document = await health(daemon)
        assert document["status"] == "degraded"
        assert document["channels"]["email"]["reason"] == "IMAP login refused"  # type: ignore[index]
    assert "not-the-password" not in daemon.stderr
