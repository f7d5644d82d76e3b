"""The email channel keeps the contract every channel keeps with the core (``bridge.testing``).

Mail has no webhook and no simulated request: inbound mail reaches the
channel over LMTP from the local MTA, so this adapter hands mail in that way
(250 is accepted, 4xx makes the MTA deliver again, 5xx bounces). Mail has no
length limit, so the split tests are skipped.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import make_msgid
from pathlib import Path
from typing import Any

import pytest

from bridge.testing import ChannelContract, ContractEnv, Outcome
from carebridge_email import EmailChannel
from tests.fakes.smtp_server import FakeSmtpServer
from tests.plugins.email.conftest import FROM, SMTP_PASSWORD, SMTP_USER, LmtpClient, free_port

_mails = itertools.count(1)


@dataclass
class MailPeers:
    smtp: FakeSmtpServer
    ca_file: Path


@dataclass(frozen=True)
class InboundMail:
    raw: bytes
    sender: str


class TestEmailContract(ChannelContract):
    channel_class = EmailChannel
    recipients = ("ann@customer.test", "bob@customer.test")
    required_keys = ("smtp_host", "from_address")

    @pytest.fixture
    def platform(self, smtp: FakeSmtpServer, ca_file: Path) -> MailPeers:
        return MailPeers(smtp, ca_file)

    def section(self, platform: MailPeers) -> dict[str, Any]:
        return {
            "enabled": True, "smtp_host": "127.0.0.1", "smtp_port": platform.smtp.port, "smtp_tls": "starttls",
            "smtp_username": SMTP_USER, "smtp_password": SMTP_PASSWORD, "smtp_ca_file": str(platform.ca_file),
            "from_address": FROM, "inbound": "lmtp", "lmtp_host": "127.0.0.1", "lmtp_port": free_port(),
        }  # fmt: skip

    def inbound_request(self, env: ContractEnv, sender: str, text: str, *, reply: bool = False) -> Any:
        """A customer's mail to the support address; with ``reply``, answering our last mail to them."""
        mail = EmailMessage()
        mail["From"] = sender
        mail["To"] = FROM
        mail["Subject"] = f"Question {next(_mails)}"
        mail["Message-ID"] = make_msgid(domain="customer.test")
        if reply:
            ours = [m for m in env.platform.smtp.received if sender in m.rcpt_tos][-1].message["Message-ID"]
            mail["In-Reply-To"] = ours
            mail["References"] = ours
        mail.set_content(text + "\n")
        return InboundMail(mail.as_bytes(), sender)

    async def hand_in(self, env: ContractEnv, request: Any) -> Outcome:
        """Deliver over LMTP as the MTA does; the reply to DATA decides."""
        client = await LmtpClient.connect(env.channel.lmtp.bound_port)  # type: ignore[attr-defined]
        try:
            replies = await client.deliver(request.raw, request.sender, [FROM])
        finally:
            await client.close()
        code = replies[-1][:1]
        return Outcome.ACCEPTED if code == "2" else Outcome.RETRY if code == "4" else Outcome.REFUSED
