"""Issue 6 end to end: a customer on email, one agent on WhatsApp, another on Messenger.

Everything crosses a real wire on loopback: the customer's mail comes in over
the email plugin's LMTP receiver and the answers leave over SMTP (STARTTLS,
AUTH) to an aiosmtpd server; the agents write through the WhatsApp and
Messenger webhooks, signed as Meta signs them, and read what the plugins
sent to the fake Graph APIs. The platforms' retries (an MTA resending a mail
whose 250 it missed, Meta posting a webhook again) are part of the flow,
because "nothing lost or doubled" is exactly what they put at risk.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pyotp
import pytest

import carebridge_email
import carebridge_messenger
import carebridge_whatsapp
from bridge.app.bridge import Bridge
from bridge.testing import BridgeFactory
from tests.e2e.conftest import FAST
from tests.e2e.harness import add_agent, outbox_rows, wait_for
from tests.e2e.world import World, channel_sections
from tests.fakes.smtp_server import FakeSmtpServer
from tests.plugins.email.conftest import (  # noqa: F401 - ca, ca_file, server_tls and smtp are fixtures used here
    FROM,
    SMTP_PASSWORD,
    SMTP_USER,
    ca,
    ca_file,
    free_port,
    server_tls,
    smtp,
)
from tests.plugins.email.test_email_bridge import lmtp_deliver, mail, mails_to

CUSTOMER = "ann@customer.test"
ALICE = "+15550001111"  # agent on WhatsApp
BOB_PSID = "7000000000000002"  # agent on Messenger
NOTE = "needs the courier's tracking number"


@pytest.fixture
async def bridge(world: World, smtp: FakeSmtpServer, ca_file: Path, bridge_factory: BridgeFactory) -> Bridge:
    """The real app with all three real plugins, each pointed at its loopback peer."""
    email = (
        "[channels.email]\n"
        f'smtp_host = "127.0.0.1"\nsmtp_port = {smtp.port}\nsmtp_tls = "starttls"\n'
        f'smtp_username = "{SMTP_USER}"\nsmtp_password = "{SMTP_PASSWORD}"\nsmtp_ca_file = "{ca_file}"\n'
        f'from_address = "{FROM}"\ninbound = "lmtp"\nlmtp_host = "127.0.0.1"\nlmtp_port = {free_port()}\n'
    )
    created = await bridge_factory(
        channel_sections(*world.graph_urls()) + email + FAST,
        plugins=[
            ("whatsapp", carebridge_whatsapp),
            ("messenger", carebridge_messenger),
            ("email", carebridge_email),
        ],
        start=False,
    )
    server = await bridge_factory.serve(created)  # its startup starts the bridge and the LMTP receiver
    world.point_at(str(server.make_url("/")))
    return created


def code(secret: str) -> str:
    return pyotp.TOTP(secret).now()


def relayed(texts: list[str], body: str) -> list[str]:
    """The texts an agent got that carry ``body``."""
    return [t for t in texts if body in t]


async def test_agents_on_whatsapp_and_messenger_take_answer_and_hand_over_an_email_customer(
    world: World, bridge: Bridge, smtp: FakeSmtpServer
) -> None:
    _alice, sa = await add_agent(bridge, "alice", f"whatsapp:{ALICE}")
    _bob, sb = await add_agent(bridge, "bob", f"messenger:{BOB_PSID}")
    # Alice starts her shift first, so least_busy's tie (both idle, nothing open) goes to her.
    await world.whatsapp(ALICE, f"/login {code(sa)}")
    await wait_for(lambda: any("logged in" in t for t in world.wa_texts(ALICE)), what="alice's login answer")
    await world.messenger(BOB_PSID, f"/login {code(sb)}")
    await wait_for(lambda: any("logged in" in t for t in world.fb_texts(BOB_PSID)), what="bob's login answer")

    # The customer's mail arrives over LMTP; the MTA sends it again (it missed our 250).
    question = mail(f"Ann Example <{CUSTOMER}>", FROM, "Parcel 4711", "Where is my parcel?\n", "<q1@customer.test>")
    for _ in range(2):
        assert [r[:3] for r in await lmtp_deliver(bridge, question, CUSTOMER, FROM)] == ["250", "250"]
    first = "[#1 Ann Example · Email] Where is my parcel?"
    await wait_for(lambda: first in world.wa_texts(ALICE), what="the mail relayed to alice on WhatsApp")

    # Alice answers from WhatsApp: one mail, threaded under the customer's.
    await world.whatsapp(ALICE, "It left the warehouse today.")
    await wait_for(lambda: bool(mails_to(smtp, CUSTOMER)), what="alice's answer mailed")
    [answer] = mails_to(smtp, CUSTOMER)
    msg = answer.message
    assert answer.tls and answer.login == SMTP_USER
    assert (msg["From"], msg["To"], msg["Subject"]) == (FROM, CUSTOMER, "Re: Parcel 4711")
    assert (msg["In-Reply-To"], msg["References"]) == ("<q1@customer.test>", "<q1@customer.test>")
    assert msg.get_content().strip() == "It left the warehouse today."
    ours_1, reply_address = str(msg["Message-ID"]), str(msg["Reply-To"])

    # The customer answers that mail (quoting it, as mail clients do); it comes back to alice.
    again = mail(
        CUSTOMER, reply_address, "Re: Parcel 4711",
        f"Thanks! When will it arrive?\n\nOn Mon, {FROM} wrote:\n> It left the warehouse today.\n",
        "<q2@customer.test>", In_Reply_To=ours_1, References=f"<q1@customer.test> {ours_1}",
    )  # fmt: skip
    assert (await lmtp_deliver(bridge, again, CUSTOMER, reply_address))[-1].startswith("250")
    second = "[#1 Ann Example · Email] Thanks! When will it arrive?"
    await wait_for(lambda: second in world.wa_texts(ALICE), what="the customer's reply relayed to alice")

    # Alice hands it to bob with a note: bob gets one hand-off, with the history, on Messenger.
    await world.whatsapp(ALICE, f"/transfer bob {NOTE}")
    await wait_for(lambda: bool(relayed(world.fb_texts(BOB_PSID), NOTE)), what="the hand-off on Messenger")
    await wait_for(lambda: any("now with bob" in t for t in world.wa_texts(ALICE)), what="alice's confirmation")
    [handoff] = relayed(world.fb_texts(BOB_PSID), NOTE)
    assert handoff.splitlines() == [
        f"[#1 Ann Example · Email] Handed over to you by alice. Note: {NOTE}",
        "Last 3 message(s):",
        "Ann Example: Where is my parcel?",
        "alice: It left the warehouse today.",
        "Ann Example: Thanks! When will it arrive?",
    ]

    # Bob answers from Messenger, and Meta posts that webhook twice: the customer gets one mail.
    mid = await world.messenger(BOB_PSID, "Tomorrow before noon, tracking code 4711-XY.")
    await world.messenger(BOB_PSID, "Tomorrow before noon, tracking code 4711-XY.", mid=mid)
    await wait_for(lambda: len(mails_to(smtp, CUSTOMER)) == 2, what="bob's answer mailed")

    async def settled() -> bool:
        rows = await outbox_rows(bridge)
        return all(r[3] == "sent" for r in rows)

    await wait_for(settled, what="every delivery's outcome committed")

    # Each customer-facing mail went exactly once, in order, each threaded under the mail it answers.
    mails = mails_to(smtp, CUSTOMER)
    assert [m.message.get_content().strip() for m in mails] == [
        "It left the warehouse today.",
        "Tomorrow before noon, tracking code 4711-XY.",
    ]
    assert all(m.rcpt_tos == (CUSTOMER,) for m in mails)
    last = mails[1].message
    assert (last["Subject"], last["In-Reply-To"]) == ("Re: Parcel 4711", "<q2@customer.test>")
    assert " ".join(last["References"].split()) == f"<q1@customer.test> {ours_1} <q2@customer.test>"
    assert len({str(m.message["Message-ID"]) for m in mails}) == 2
    assert len(smtp.received) == 2, "no mail to anyone else (the agents are not on email)"

    # Nothing doubled or misrouted on the agents' side either: each got exactly these, once each.
    assert world.wa_texts(ALICE)[1:] == [first, second, "[#1 Ann Example · Email] is now with bob."]
    assert world.fb_texts(BOB_PSID)[1:] == [
        handoff,
        "[#1 Ann Example · Email] You can hand it back with /decline within 2 minutes.",
    ]
    rows = await outbox_rows(bridge)
    assert [(r[1], r[4]) for r in rows if r[2] == "contact"] == [("email", 1), ("email", 1)]
    assert all(r[4] == 1 for r in rows), "every delivery succeeded at its first attempt"

    def transcript(tx: Any) -> list[tuple[str, str]]:
        return list(tx._session.conn.execute("SELECT direction, channel FROM messages ORDER BY id").fetchall())

    # The conversation's record: two mails in (the MTA's resend stored once), two answers out.
    assert await bridge.store.read(transcript) == [("in", "email"), ("out", "email")] * 2
