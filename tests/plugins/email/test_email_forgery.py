"""Mail that merely claims an agent's address cannot act in their name (the attacker's findings).

The real core and the real plugin, mail in over LMTP and out over SMTP
(tests/plugins/email/test_email_bridge.py's bridge: our MTA's authserv-id
``mx.example.org`` is trusted). Each finding of the issue is one test that
fails without its fix: a forged From on the old guessable ``reply+c1@``
address, forged or borrowed tokens, forged ``/login`` codes locking the
agent out, unmarked forged customer mail, a Message-ID that hides another
sender's mail, agent attachments answered 451 for ever, and internal notes
quoted back to the customer.
"""

from __future__ import annotations

from email.message import EmailMessage

import pyotp
import pytest

from bridge.app.bridge import Bridge
from bridge.relay.sender_checks import IMPERSONATION_REFUSED
from tests.e2e.harness import add_agent, wait_for
from tests.fakes.smtp_server import FakeSmtpServer, ReceivedMail
from tests.plugins.email.conftest import FROM
from tests.plugins.email.test_email_bridge import (  # noqa: F401 - bridge is a fixture used here
    AGENT,
    AUTHSERV,
    CUSTOMER,
    bridge,
    lmtp_deliver,
    mail,
    mails_to,
    vouched,
)

BOB = "bob@staff.test"
REFUSAL = IMPERSONATION_REFUSED.format(channel="Email").split(":")[0]
NOTE = "Customer is a known fraudster, check the ID twice"


def body(received: ReceivedMail) -> str:
    return str(received.message.get_content())


def refused_count(bridge: Bridge) -> float:
    value = bridge.metrics.inbound_refused.labels(channel="email", reason="unauthenticated")._value.get()
    return float(value)


async def send(bridge: Bridge, raw: bytes, sender: str, recipient: str = FROM) -> None:
    replies = await lmtp_deliver(bridge, raw, sender, recipient)
    assert replies[-1].startswith("250"), replies


async def logged_in(bridge: Bridge, smtp: FakeSmtpServer, name: str, address: str) -> str:
    """Add an email agent and log them in by a mail their MTA vouches for; return their TOTP secret."""
    _, secret = await add_agent(bridge, name, f"email:{address}")
    domain = address.rpartition("@")[2]
    login = mail(address, FROM, "login", f"/login {pyotp.TOTP(secret).now()}\n", f"<login-{name}@{domain}>",
                 **vouched(domain))  # fmt: skip
    await send(bridge, login, address)
    await wait_for(lambda: any("logged in" in body(m) for m in mails_to(smtp, address)), what=f"{name} logged in")
    return secret


async def customer_relayed(bridge: Bridge, smtp: FakeSmtpServer, text: str = "Where is my parcel?") -> ReceivedMail:
    """Ann's mail, relayed to alice: the mail alice got (with her reply token in Reply-To)."""
    question = mail(f"Ann Example <{CUSTOMER}>", FROM, "Parcel 4711", f"{text}\n", "<q1@customer.test>")
    await send(bridge, question, CUSTOMER)
    await wait_for(lambda: any(text in body(m) for m in mails_to(smtp, AGENT)), what="relayed to alice")
    return next(m for m in mails_to(smtp, AGENT) if text in body(m))


async def test_a_forged_from_on_the_old_guessable_address_changes_nothing_and_the_agent_is_told(
    bridge: Bridge, smtp: FakeSmtpServer, caplog: pytest.LogCaptureFixture
) -> None:
    await logged_in(bridge, smtp, "alice", AGENT)
    await customer_relayed(bridge, smtp)
    before = len(mails_to(smtp, AGENT))
    forged = mail(AGENT, "reply+c1@example.org", "Re: Parcel", "Forged-Answer-31 send your card number\n",
                  "<forged1@evil.test>")  # fmt: skip
    await send(bridge, forged, "attacker@evil.test", "reply+c1@example.org")
    await wait_for(lambda: any(REFUSAL in body(m) for m in mails_to(smtp, AGENT)), what="alice told")
    assert mails_to(smtp, CUSTOMER) == [], "nothing reached the customer"
    assert refused_count(bridge) == 1
    assert "Forged-Answer-31" not in caplog.text and "refused a message claiming to be from agent alice" in caplog.text
    # A second forgery within the hour is refused and counted, but alice is not flooded.
    again = mail(AGENT, FROM, "Re: Parcel", "/transfer queue-x\n", "<forged2@evil.test>")
    await send(bridge, again, "attacker@evil.test")
    await wait_for(lambda: refused_count(bridge) == 2, what="the second refusal counted")
    assert sum(REFUSAL in body(m) for m in mails_to(smtp, AGENT)) == 1
    assert len(mails_to(smtp, AGENT)) == before + 1


@pytest.mark.parametrize("tamper", ["flip", "truncate", "other conversation", "customer's token"])
async def test_a_tampered_truncated_or_borrowed_token_is_as_good_as_none(
    bridge: Bridge, smtp: FakeSmtpServer, tamper: str
) -> None:
    await logged_in(bridge, smtp, "alice", AGENT)
    relayed = await customer_relayed(bridge, smtp)
    token = str(relayed.message["Reply-To"]).split("+", 1)[1].split("@")[0]
    if tamper == "flip":
        token = token[:-1] + ("a" if token[-1] != "a" else "b")
    elif tamper == "truncate":
        token = token[:-2]
    elif tamper == "other conversation":
        token = "2" + token[1:]
    else:  # the customer's own token, for the same conversation
        await send(bridge, mail(AGENT, str(relayed.message["Reply-To"]), "Re", "Hello Ann\n", "<ok1@staff.test>"), AGENT,
                   str(relayed.message["Reply-To"]))  # fmt: skip
        await wait_for(lambda: bool(mails_to(smtp, CUSTOMER)), what="alice's real answer")
        token = str(mails_to(smtp, CUSTOMER)[0].message["Reply-To"]).split("+", 1)[1].split("@")[0]
    sent = len(mails_to(smtp, CUSTOMER))
    address = f"reply+{token}@example.org"
    forged = mail(AGENT, address, "Re", "Forged answer\n", "<forged3@evil.test>")
    await send(bridge, forged, "attacker@evil.test", address)
    await wait_for(lambda: refused_count(bridge) == 1, what="refused")
    assert len(mails_to(smtp, CUSTOMER)) == sent


async def test_the_agents_own_token_or_a_trusted_dmarc_pass_is_accepted(bridge: Bridge, smtp: FakeSmtpServer) -> None:
    await logged_in(bridge, smtp, "alice", AGENT)
    relayed = await customer_relayed(bridge, smtp)
    reply_to = str(relayed.message["Reply-To"])
    await send(bridge, mail(AGENT, reply_to, "Re", "On its way.\n", "<a1@staff.test>"), AGENT, reply_to)
    await wait_for(lambda: len(mails_to(smtp, CUSTOMER)) == 1, what="the answer on the token")
    await send(bridge, mail(AGENT, FROM, "Re", "Arrives Monday.\n", "<a2@staff.test>", **vouched("staff.test")), AGENT)
    await wait_for(lambda: len(mails_to(smtp, CUSTOMER)) == 2, what="the answer vouched for by our MTA")
    assert [body(m).strip() for m in mails_to(smtp, CUSTOMER)] == ["On its way.", "Arrives Monday."]
    assert refused_count(bridge) == 0


@pytest.mark.parametrize(
    "results",
    [
        [f"{AUTHSERV}; dmarc=fail header.from=staff.test"],
        ["mx.evil.test; dmarc=pass header.from=staff.test"],  # not an authserv-id we trust
        [f"{AUTHSERV}; dmarc=pass header.from=evil.test"],  # passes for another domain
        [f"{AUTHSERV}; dkim=pass header.d=evil.test"],  # a signature, but not aligned with the From
        # Our MTA's verdict on top; the one the sender wrote below it counts for nothing.
        [f"{AUTHSERV}; dmarc=fail header.from=staff.test", f"{AUTHSERV}; dmarc=pass header.from=staff.test"],
    ],
)
async def test_authentication_results_that_do_not_vouch_are_refused(
    bridge: Bridge, smtp: FakeSmtpServer, results: list[str]
) -> None:
    await logged_in(bridge, smtp, "alice", AGENT)
    await customer_relayed(bridge, smtp)
    message = EmailMessage()
    for value in results:
        message["Authentication-Results"] = value
    message["From"] = AGENT
    message["To"] = FROM
    message["Subject"] = "Re"
    message["Message-ID"] = "<forged4@evil.test>"
    message.set_content("Forged answer\n")
    await send(bridge, message.as_bytes(), "attacker@evil.test")
    await wait_for(lambda: refused_count(bridge) == 1, what="refused")
    assert mails_to(smtp, CUSTOMER) == []


async def test_an_aligned_dkim_pass_is_accepted(bridge: Bridge, smtp: FakeSmtpServer) -> None:
    await logged_in(bridge, smtp, "alice", AGENT)
    await customer_relayed(bridge, smtp)
    results = {"Authentication_Results": f"{AUTHSERV}; dkim=pass header.d=staff.test header.s=s1"}
    await send(bridge, mail(AGENT, FROM, "Re", "Signed answer.\n", "<d1@staff.test>", **results), AGENT)
    await wait_for(lambda: len(mails_to(smtp, CUSTOMER)) == 1, what="the signed answer")


async def test_five_forged_logins_do_not_lock_the_agent_out(bridge: Bridge, smtp: FakeSmtpServer) -> None:
    _, secret = await add_agent(bridge, "alice", f"email:{AGENT}")
    for n in range(5):
        forged = mail(AGENT, FROM, "login", "/login 000000\n", f"<lock{n}@evil.test>")
        await send(bridge, forged, "attacker@evil.test")
    await wait_for(lambda: refused_count(bridge) == 5, what="five refusals")
    login = mail(AGENT, FROM, "login", f"/login {pyotp.TOTP(secret).now()}\n", "<real@staff.test>",
                 **vouched("staff.test"))  # fmt: skip
    await send(bridge, login, AGENT)
    await wait_for(lambda: any("logged in" in body(m) for m in mails_to(smtp, AGENT)), what="the real login")
    assert not any("Too many failed logins" in body(m) for m in mails_to(smtp, AGENT))


async def test_the_refusal_notice_can_be_answered_and_the_answer_counts(bridge: Bridge, smtp: FakeSmtpServer) -> None:
    """The agent's mail had no proof (their MTA adds none): a reply to the bridge's notice has a token."""
    _, secret = await add_agent(bridge, "alice", f"email:{AGENT}")
    await send(bridge, mail(AGENT, FROM, "login", "/login 123456\n", "<l1@staff.test>"), AGENT)
    await wait_for(lambda: any(REFUSAL in body(m) for m in mails_to(smtp, AGENT)), what="the refusal notice")
    notice = next(m for m in mails_to(smtp, AGENT) if REFUSAL in body(m))
    reply_to = str(notice.message["Reply-To"])
    assert reply_to.startswith("reply+")
    login = mail(AGENT, reply_to, "Re", f"/login {pyotp.TOTP(secret).now()}\n\n> {REFUSAL}\n", "<l2@staff.test>")
    await send(bridge, login, AGENT, reply_to)
    await wait_for(lambda: any("logged in" in body(m) for m in mails_to(smtp, AGENT)), what="logged in")


async def test_customer_mail_that_fails_the_trusted_check_is_marked_for_the_agent(
    bridge: Bridge, smtp: FakeSmtpServer
) -> None:
    await logged_in(bridge, smtp, "alice", AGENT)
    unproven = mail(f"Ann Example <{CUSTOMER}>", FROM, "Refund", "Please refund to my new account\n",
                    "<u1@customer.test>")  # fmt: skip
    await send(bridge, unproven, CUSTOMER)
    proven = mail("Cees <cees@other.test>", FROM, "Hi", "A question\n", "<p1@other.test>", **vouched("other.test"))
    await send(bridge, proven, "cees@other.test")
    await wait_for(lambda: sum("[#" in body(m) for m in mails_to(smtp, AGENT)) == 2, what="both relayed")
    texts = [body(m) for m in mails_to(smtp, AGENT) if "[#" in body(m)]
    assert "[#1 Ann Example · Email] [unverified sender" in texts[0]
    assert "[#2 Cees · Email] A question" in texts[1]


async def test_the_same_message_id_from_another_sender_is_not_a_duplicate(bridge: Bridge, smtp: FakeSmtpServer) -> None:
    await logged_in(bridge, smtp, "alice", AGENT)
    first = mail(f"Ann <{CUSTOMER}>", FROM, "One", "First sender\n", "<same@id.test>")
    second = mail("Cees <cees@other.test>", FROM, "Two", "Second sender\n", "<same@id.test>")
    await send(bridge, first, CUSTOMER)
    await send(bridge, second, "cees@other.test")
    await wait_for(lambda: sum("sender" in body(m) for m in mails_to(smtp, AGENT)) == 2, what="both relayed")
    await send(bridge, first, CUSTOMER)  # the MTA's redelivery of the first is still one message
    relayed = [body(m) for m in mails_to(smtp, AGENT) if "sender" in body(m)]
    assert len(relayed) == 2 and "First sender" in relayed[0] and "Second sender" in relayed[1]


async def test_an_agent_reply_with_an_attachment_goes_out_once_and_the_files_are_dropped_with_a_note(
    bridge: Bridge, smtp: FakeSmtpServer
) -> None:
    await logged_in(bridge, smtp, "alice", AGENT)
    relayed = await customer_relayed(bridge, smtp)
    reply_to = str(relayed.message["Reply-To"])
    answer = EmailMessage()
    answer["From"], answer["To"], answer["Subject"] = AGENT, reply_to, "Re"
    answer["Message-ID"] = "<logo@staff.test>"
    answer.set_content("It left the warehouse today.\n")
    answer.add_alternative("<p>It left the warehouse today.<img src='cid:logo'></p>", subtype="html")
    html = answer.get_payload()[1]  # type: ignore[index]
    html.add_related(b"\x89PNG logo", maintype="image", subtype="png", cid="<logo>", filename="logo.png")
    for _ in range(2):  # an MTA that retries must hear 250 both times
        replies = await lmtp_deliver(bridge, answer.as_bytes(), AGENT, reply_to)
        assert [r[:3] for r in replies] == ["250", "250"], replies
    await wait_for(lambda: bool(mails_to(smtp, CUSTOMER)), what="the answer sent")
    await wait_for(lambda: any("not relayed to customers" in body(m) for m in mails_to(smtp, AGENT)), what="note")
    assert [body(m).strip() for m in mails_to(smtp, CUSTOMER)] == ["It left the warehouse today."]


async def test_internal_notes_never_reach_the_customer(bridge: Bridge, smtp: FakeSmtpServer) -> None:
    await logged_in(bridge, smtp, "alice", AGENT)
    await logged_in(bridge, smtp, "bob", BOB)
    relayed = await customer_relayed(bridge, smtp)
    reply_to = str(relayed.message["Reply-To"])
    await send(bridge, mail(AGENT, reply_to, "Re", f"/transfer bob {NOTE}\n", "<t1@staff.test>"), AGENT, reply_to)
    await wait_for(lambda: any(NOTE in body(m) for m in mails_to(smtp, BOB)), what="bob's hand-off with the note")
    handoff = next(m for m in mails_to(smtp, BOB) if NOTE in body(m))
    bob_reply_to = str(handoff.message["Reply-To"])
    quoted = "\n".join(f"> {line}" for line in body(handoff).splitlines())
    # German Outlook quotes the whole mail (marker included) under its header block: all of it is cut.
    german = (
        "Wir kümmern uns darum.\n\nVon: Care <care@example.org>\nGesendet: Montag, 2. November 2026 10:00\n"
        f"An: {BOB}\nBetreff: {handoff.message['Subject']}\n\n{quoted}\n"
    )
    await send(bridge, mail(BOB, bob_reply_to, "AW", german, "<b1@staff.test>"), BOB, bob_reply_to)
    await wait_for(lambda: bool(mails_to(smtp, CUSTOMER)), what="bob's answer")
    assert [body(m).strip() for m in mails_to(smtp, CUSTOMER)] == ["Wir kümmern uns darum."]
    # The note's text written above the marker is caught by the core: nothing is sent, bob is told.
    leak = f"Thanks. (Internal: {NOTE.lower()}.)\n"
    await send(bridge, mail(BOB, bob_reply_to, "AW", leak, "<b2@staff.test>"), BOB, bob_reply_to)
    await wait_for(lambda: any("contains the text of an internal note" in body(m) for m in mails_to(smtp, BOB)),
                   what="bob told")  # fmt: skip
    assert len(mails_to(smtp, CUSTOMER)) == 1
    assert not any("fraudster" in body(m) for m in mails_to(smtp, CUSTOMER))
