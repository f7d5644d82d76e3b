"""The installed plugin inside the real daemon: found by its entry point, LMTP served, nothing in clear.

``carebridge run`` runs as a subprocess (tests/daemon.py) with the email
channel enabled; a mail with an attachment is handed over LMTP twice (an
MTA's retry) and stored once, encrypted, and neither the logs nor the
database files carry the address, the subject, the text or the attachment.
"""

from __future__ import annotations

import json
from email.message import EmailMessage
from pathlib import Path

import aiohttp

from bridge.store.keyfile import generate_key, write_key_file
from tests.daemon import DaemonProcess, run_cli, write_config
from tests.fakes.smtp_server import FakeSmtpServer
from tests.plugins.email.conftest import (
    FROM,
    SMTP_PASSWORD,
    SMTP_USER,
    LmtpClient,
    free_port,
)

CUSTOMER = "zelda.unique@customer.test"


def _mail() -> bytes:
    mail = EmailMessage()
    mail["From"] = f"Zelda Example <{CUSTOMER}>"
    mail["To"] = FROM
    mail["Subject"] = "Subject-Marker-8841"
    mail["Message-ID"] = "<daemon-1@customer.test>"
    mail.set_content("Body-Marker-5512: my account number is below.\n")
    mail.add_attachment(b"ATTACHMENT-MARKER-" + bytes(range(256)), maintype="application", subtype="octet-stream",
                        filename="statement.bin")  # fmt: skip
    return mail.as_bytes()


async def test_daemon_receives_mail_over_lmtp_and_keeps_it_encrypted(
    tmp_path: Path, smtp: FakeSmtpServer, ca_file: Path
) -> None:
    (tmp_path / "var").mkdir()
    write_key_file(tmp_path / "var" / "master.key", generate_key())
    lmtp_port = free_port()
    config = write_config(
        tmp_path,
        "[channels.email]\n"
        f'smtp_host = "127.0.0.1"\nsmtp_port = {smtp.port}\nsmtp_username = "{SMTP_USER}"\n'
        f'smtp_password = "env:E1_TEST_SMTP_PASSWORD"\nsmtp_ca_file = "{ca_file}"\n'
        f'from_address = "{FROM}"\ninbound = "lmtp"\nlmtp_port = {lmtp_port}\n',
    )
    env = {"E1_TEST_SMTP_PASSWORD": SMTP_PASSWORD}
    async with DaemonProcess(config, env=env) as daemon, aiohttp.ClientSession() as http:
        async with http.get(daemon.url("/healthz")) as resp:
            health = await resp.json()
        assert health["channels"]["email"]["state"] == "connected"
        assert health["plugins"]["email"]["channels"] == ["email"]
        for _ in range(2):  # the MTA's retry of the same mail is acknowledged and stored once
            client = await LmtpClient.connect(lmtp_port)
            try:
                replies = await client.deliver(_mail(), CUSTOMER, [FROM, "reply+c1@example.org"])
            finally:
                await client.close()
            assert [r[:3] for r in replies] == ["250"] * 4, replies
    assert daemon.returncode == 0
    status, out, err = await run_cli("gdpr", "export", f"email:{CUSTOMER}", "-c", str(config), env=env)
    assert status == 0, err
    texts = [m["text"] for c in json.loads(out)["conversations"] for m in c["messages"] if m["direction"] == "in"]
    assert texts == ["Body-Marker-5512: my account number is below."]
    markers = (b"zelda.unique", b"Subject-Marker-8841", b"Body-Marker-5512", b"ATTACHMENT-MARKER-")
    for marker in markers:
        assert marker.decode() not in daemon.stderr, f"{marker!r} in the daemon's log"
    stored = [p for p in (tmp_path / "var").rglob("*") if p.is_file()]
    assert any("media" in str(p.relative_to(tmp_path)) for p in stored), "the attachment is kept in the store"
    for path in stored:
        data = path.read_bytes()
        for marker in markers:
            assert marker not in data, f"{marker!r} in plaintext in {path.name}"
