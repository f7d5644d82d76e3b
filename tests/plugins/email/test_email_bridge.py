"""The plugin inside the real core: Bridge, store, relay and worker, against real mail peers.

A customer's mail arrives over LMTP and is stored; an agent who works by
email logs in (their MTA vouches for the mail: a trusted
``Authentication-Results``) and answers on the reply token of the mail
they got; the answer reaches the customer over SMTP (STARTTLS, AUTH)
threaded under the customer's own message.
"""

from __future__ import annotations

from email.message import EmailMessage
from pathlib import Path

import pyotp
import pytest

import carebridge_email
from bridge.app.bridge import Bridge
from bridge.testing import BridgeFactory
from tests.e2e.harness import add_agent, wait_for
from tests.fakes.smtp_server import FakeSmtpServer, ReceivedMail
from tests.plugins.email.conftest import (
    FROM,
    SMTP_PASSWORD,
    SMTP_USER,
    LmtpClient,
    free_port,
)

CUSTOMER = "ann@customer.test"
AGENT = "alice@staff.test"
#: The authserv-id of "our" receiving MTA, trusted in the bridge's configuration.
AUTHSERV = "mx.example.org"


def vouched(domain: str) -> dict[str, str]:
    """The header our MTA adds to a mail whose From domain passed DMARC."""
    return {"Authentication_Results": f"{AUTHSERV}; spf=pass smtp.mailfrom={domain}; dmarc=pass header.from={domain}"}


@pytest.fixture
async def bridge(smtp: FakeSmtpServer, ca_file: Path, bridge_factory: BridgeFactory) -> Bridge:
    section = (
        "[channels.email]\n"
        f'smtp_host = "127.0.0.1"\nsmtp_port = {smtp.port}\nsmtp_tls = "starttls"\n'
        f'smtp_username = "{SMTP_USER}"\nsmtp_password = "{SMTP_PASSWORD}"\nsmtp_ca_file = "{ca_file}"\n'
        f'from_address = "{FROM}"\ninbound = "lmtp"\nlmtp_host = "127.0.0.1"\nlmtp_port = {free_port()}\n'
        f'trusted_authserv_ids = ["{AUTHSERV}"]\n'
    )
    return await bridge_factory(section, plugins=[("email", carebridge_email)])


def mail(sender: str, to: str, subject: str, body: str, message_id: str, **headers: str) -> bytes:
    message = EmailMessage()
    message["From"] = sender
    message["To"] = to
    message["Subject"] = subject
    message["Message-ID"] = message_id
    for name, value in headers.items():
        message[name.replace("_", "-")] = value
    message.set_content(body)
    return message.as_bytes()


async def lmtp_deliver(bridge: Bridge, raw: bytes, sender: str, recipient: str) -> list[str]:
    channel = bridge.channels["email"]
    client = await LmtpClient.connect(channel.lmtp.bound_port)  # type: ignore[attr-defined]
    try:
        return await client.deliver(raw, sender, [recipient])
    finally:
        await client.close()


def mails_to(smtp: FakeSmtpServer, address: str) -> list[ReceivedMail]:
    return [m for m in smtp.received if address in m.rcpt_tos]


async def test_customer_mail_is_stored_and_an_email_agents_reply_goes_out_threaded(
    bridge: Bridge, smtp: FakeSmtpServer
) -> None:
    _, secret = await add_agent(bridge, "alice", f"email:{AGENT}")
    login = mail(
        AGENT, FROM, "login", f"/login {pyotp.TOTP(secret).now()}\n", "<login1@staff.test>", **vouched("staff.test")
    )
    assert (await lmtp_deliver(bridge, login, AGENT, FROM))[-1].startswith("250")

    question = mail(f"Ann Example <{CUSTOMER}>", FROM, "Parcel 4711", "Where is my parcel?\n", "<q1@customer.test>")
    assert [r[:3] for r in await lmtp_deliver(bridge, question, CUSTOMER, FROM)] == ["250", "250"]
    await wait_for(
        lambda: any("Where is my parcel?" in m.message.get_content() for m in mails_to(smtp, AGENT)),
        what="the customer's mail relayed to the agent",
    )
    relayed = next(m for m in mails_to(smtp, AGENT) if "Where is my parcel?" in m.message.get_content())
    reply_to = str(relayed.message["Reply-To"])
    assert reply_to.startswith("reply+") and reply_to.endswith("@example.org")

    answer = mail(
        AGENT, reply_to, f"Re: {relayed.message['Subject']}",
        f"It left the warehouse today.\n\nOn Mon, Alice's bridge <{FROM}> wrote:\n> Where is my parcel?\n",
        "<a1@staff.test>", In_Reply_To=str(relayed.message["Message-ID"]),
    )  # fmt: skip
    assert (await lmtp_deliver(bridge, answer, AGENT, reply_to))[-1].startswith("250")
    await wait_for(lambda: bool(mails_to(smtp, CUSTOMER)), what="the agent's reply mailed to the customer")
    [out] = mails_to(smtp, CUSTOMER)
    assert out.tls and out.login == SMTP_USER
    msg = out.message
    assert msg.get_content().strip() == "It left the warehouse today."
    assert (msg["From"], msg["To"], msg["Subject"]) == (FROM, CUSTOMER, "Re: Parcel 4711")
    assert msg["In-Reply-To"] == "<q1@customer.test>"
    assert msg["References"] == "<q1@customer.test>"
    assert str(msg["Reply-To"]).startswith("reply+") and str(msg["Reply-To"]).endswith("@example.org")
    assert msg["Reply-To"] != reply_to, "the customer's token is not the agent's"
    assert bridge.channel_state("email")[0].value == "connected"


async def test_a_bounce_reaches_no_agent(bridge: Bridge, smtp: FakeSmtpServer) -> None:
    _, secret = await add_agent(bridge, "alice", f"email:{AGENT}")
    login = mail(
        AGENT, FROM, "login", f"/login {pyotp.TOTP(secret).now()}\n", "<login2@staff.test>", **vouched("staff.test")
    )
    await lmtp_deliver(bridge, login, AGENT, FROM)
    await wait_for(lambda: bool(mails_to(smtp, AGENT)), what="the login confirmation")
    seen = len(mails_to(smtp, AGENT))
    bounce = mail("MAILER-DAEMON@customer.test", FROM, "Undelivered", "550 no such user\n", "<b1@customer.test>")
    assert (await lmtp_deliver(bridge, bounce, "", FROM))[-1].startswith("250")
    auto = mail(CUSTOMER, FROM, "Out of office", "Away\n", "<o1@customer.test>", Auto_Submitted="auto-replied")
    assert (await lmtp_deliver(bridge, auto, CUSTOMER, FROM))[-1].startswith("250")

    def stored(tx: object) -> int:
        return int(tx._session.conn.execute("SELECT COUNT(*) FROM contacts").fetchone()[0])  # type: ignore[attr-defined]

    assert await bridge.store.read(stored) == 0, "neither mail made a customer"
    assert len(mails_to(smtp, AGENT)) == seen
