"""Sensitive data through the relay's real ingest path, on a real encrypted store, with the real detectors.

Customers and agents write through ``ingest_batch`` (tests/core/agentkit.py
``Desk``); what the bridge would send is read back, decrypted, from the
outbox. The daemon-level run over the real platform fakes and a real SMTP
server is tests/e2e/test_sensitive_daemon.py.
"""

from __future__ import annotations

import re
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from bridge.config import SensitiveConfig
from bridge.relay import secure
from bridge.relay.sensitive import SECURE_ANSWER
from carebridge_sensitive import plugin as detectors
from tests.core.agentkit import Desk

ALICE = "messenger:7001"  # agent on a chat platform
BOB = "email:bob@care.example"  # agent on email
CAROL = "whatsapp:+31611111111"  # another agent on a chat platform
JAN = "whatsapp:+31600000001"
ANN_MAIL = "email:ann@customer.example"
IBAN = "NL91ABNA0417164300"
MASKED_IBAN = "NL91 **** **** **** 4300 [IBAN hidden]"
NOTICE = "For your safety, please do not send bank account numbers"


@pytest.fixture
async def desk(tmp_path: Path) -> Any:
    d = await Desk.open(tmp_path, pm_plugins=(("sensitive", detectors),))
    yield d
    await d.close()


def set_policy(desk: Desk, default: str = "redact", **kinds: str) -> None:
    desk.rctx.config = replace(desk.rctx.config, sensitive=SensitiveConfig(policy=default, kinds=tuple(kinds.items())))


async def to_customer(desk: Desk, conversation_id: int) -> list[Any]:
    """Every delivery to the conversation's customer, decrypted, oldest first."""
    return [
        d for d in await desk.deliveries() if d.recipient_kind == "contact" and d.conversation_id == conversation_id
    ]


async def chat_texts(desk: Desk, conversation_id: int) -> list[str]:
    return [d.text for d in await to_customer(desk, conversation_id) if d.channel != "email"]


async def mails(desk: Desk, conversation_id: int) -> list[Any]:
    return [d for d in await to_customer(desk, conversation_id) if d.channel == "email"]


async def messages(desk: Desk, conversation_id: int, direction: str | None = None) -> list[Any]:
    found = await desk.store.read(lambda tx: tx.messages.recent(conversation_id, 100))
    return [m for m in found if direction is None or m.direction == direction]


async def agent_texts(desk: Desk) -> list[str]:
    return [d.text for d in await desk.deliveries() if d.recipient_kind == "agent"]


async def logged_in(desk: Desk, name: str, address: str) -> None:
    await desk.add_agent(name, address)
    await desk.login(name)


# --- customer → agent -------------------------------------------------------------


async def test_an_iban_reaches_a_chat_agent_masked_and_an_email_agent_whole(desk: Desk) -> None:
    await logged_in(desk, "alice", ALICE)
    jan = await desk.customer(JAN, f"My IBAN is {IBAN}, thanks")
    assert await desk.sent_to("alice") == [f"[#{jan} Jan · WhatsApp] My IBAN is {MASKED_IBAN}, thanks"]
    [stored] = await messages(desk, jan, "in")
    assert (stored.text, stored.sensitive) == (f"My IBAN is {IBAN}, thanks", True)
    # The customer is told once per conversation to use email for such data.
    assert [t for t in await chat_texts(desk, jan) if t.startswith(NOTICE)] == [await notice(desk)]
    await desk.customer(JAN, "and my card is 4111 1111 1111 1111")
    assert await desk.sent_to("alice") == [f"[#{jan} Jan · WhatsApp] and my card is **** 1111 [card hidden]"]
    assert len([t for t in await chat_texts(desk, jan) if t.startswith(NOTICE)]) == 1

    # Handed to an agent on email: the history is whole there (email is not a chat platform).
    await logged_in(desk, "bob", BOB)
    await desk.say("alice", "/transfer bob")
    [handoff] = [t for t in await desk.sent_to("bob") if "Handed over" in t]
    assert f"Jan: My IBAN is {IBAN}, thanks" in handoff
    assert "Jan: and my card is 4111 1111 1111 1111" in handoff
    await desk.customer(JAN, f"IBAN again: {IBAN}")
    assert await desk.sent_to("bob") == [f"[#{jan} Jan · WhatsApp] IBAN again: {IBAN}"]
    # ... and masked again for the next chat agent.
    await logged_in(desk, "carol", CAROL)
    await desk.say("bob", "/transfer carol")
    [back] = [t for t in await desk.sent_to("carol") if "Handed over" in t]
    assert IBAN not in back and "4111" not in back.replace("**** 1111", "")
    assert f"Jan: My IBAN is {MASKED_IBAN}, thanks" in back


async def notice(desk: Desk) -> str:
    return str(desk.rctx.templates.render("sensitive_notice", "en"))


async def test_block_withholds_the_message_and_allow_lets_it_through(desk: Desk) -> None:
    set_policy(desk, iban="block", code="allow")
    await logged_in(desk, "alice", ALICE)
    jan = await desk.customer(JAN, f"Pay it back to {IBAN} please")
    [withheld] = await desk.sent_to("alice")
    assert withheld.startswith(f"[#{jan} Jan · WhatsApp] A message was withheld: it held sensitive data (IBAN)")
    assert "Pay it back" not in withheld and "4300" not in withheld
    [stored] = await messages(desk, jan, "in")
    assert (stored.text, stored.sensitive, stored.status) == (f"Pay it back to {IBAN} please", True, "relayed")
    await desk.customer(JAN, "The verification code is 482913")
    assert await desk.sent_to("alice") == [f"[#{jan} Jan · WhatsApp] The verification code is 482913"]
    # One notice (for the IBAN); an allowed code asks for none.
    assert len([t for t in await chat_texts(desk, jan) if t.startswith(NOTICE)]) == 1
    # A hand-off to another chat agent names the withheld message instead of quoting it.
    await logged_in(desk, "carol", CAROL)
    await desk.say("alice", "/transfer carol")
    [handoff] = [t for t in await desk.sent_to("carol") if "Handed over" in t]
    assert "Jan: [withheld: IBAN]" in handoff and "Jan: The verification code is 482913" in handoff


async def test_allow_for_every_kind_relays_as_written_and_asks_nothing(desk: Desk) -> None:
    set_policy(desk, "allow")
    await logged_in(desk, "alice", ALICE)
    jan = await desk.customer(JAN, f"IBAN {IBAN}")
    assert await desk.sent_to("alice") == [f"[#{jan} Jan · WhatsApp] IBAN {IBAN}"]
    assert await chat_texts(desk, jan) == []


async def test_nothing_a_chat_agent_receives_carries_a_finding(desk: Desk) -> None:
    """A transfer note and a queued hand-off pass the same masking as relayed messages."""
    await logged_in(desk, "alice", ALICE)
    await logged_in(desk, "carol", CAROL)
    jan = await desk.customer(JAN, "Hello")
    owner = "alice" if (await desk.conversation(jan)).agent_id == (await desk.agent("alice")).id else "carol"
    other = "carol" if owner == "alice" else "alice"
    await desk.say(owner, f"/transfer {other} customer gave IBAN {IBAN} on the phone")
    [handoff] = [t for t in await desk.sent_to(other) if "Handed over" in t]
    assert f"Note: customer gave IBAN {MASKED_IBAN} on the phone" in handoff


# --- agent → customer ---------------------------------------------------------------


async def test_an_agents_reply_with_an_iban_is_not_sent_by_chat_and_the_agent_is_told(desk: Desk) -> None:
    await logged_in(desk, "alice", ALICE)
    jan = await desk.customer(JAN, "Where do I pay?")
    await desk.sent_to("alice")
    await desk.say("alice", f"Please pay to {IBAN}")
    [told] = await desk.sent_to("alice")
    assert told.startswith(f"[#{jan} Jan · WhatsApp] Your message was not sent: it holds sensitive data (IBAN)")
    assert "/secure" in told and "4300" not in told and "pay to" not in told
    assert await to_customer(desk, jan) == []
    assert [m.direction for m in await messages(desk, jan)] == ["in"]


async def test_an_email_customer_gets_the_reply_flagged_sensitive(desk: Desk) -> None:
    await logged_in(desk, "alice", ALICE)
    ann = await desk.customer(ANN_MAIL, "Where do I pay?", name="Ann")
    await desk.say("alice", f"Please pay to {IBAN}")
    [mail] = await to_customer(desk, ann)
    assert (mail.channel, mail.text) == ("email", f"Please pay to {IBAN}")
    out = [m for m in await messages(desk, ann) if m.direction == "out"]
    assert [(m.text, m.sensitive) for m in out] == [(f"Please pay to {IBAN}", True)]


# --- /secure -------------------------------------------------------------------------


async def pending(desk: Desk, conversation_id: int) -> Any:
    return await desk.store.read(lambda tx: tx.secure.get(conversation_id))


async def test_secure_to_a_verified_address_mails_at_once_and_erases_the_mail_after_delivery(desk: Desk) -> None:
    await logged_in(desk, "alice", ALICE)
    jan = await desk.customer(JAN, "Send me the details please")
    conv = await desk.conversation(jan)
    await desk.store.write(lambda tx: tx.contacts.set_email(conv.contact_id, "jan@example.com", verified=True))
    await desk.sent_to("alice")
    await desk.say("alice", f"/secure Refund account {IBAN}")
    assert await desk.sent_to("alice") == [
        f"[#{jan} Jan · WhatsApp] Your text was mailed to j***@example.com. The customer was told in chat."
    ]
    [mail] = await mails(desk, jan)
    assert (mail.recipient, mail.meta["subject"]) == ("jan@example.com", "The information you asked for")
    assert f"Refund account {IBAN}" in mail.text
    assert await chat_texts(desk, jan) == ["The information was mailed to j***@example.com."]
    assert await pending(desk, jan) is None

    def delivered(tx: Any) -> None:
        tx.outbox.mark_sent(tx.outbox.load(mail.id), ["<m1@care.example>"])
        secure.sweep(tx, desk.rctx)

    await desk.store.write(delivered)
    [erased] = await mails(desk, jan)
    assert IBAN not in erased.text and "erased" in erased.text
    assert await desk.store.read(lambda tx: tx.secure.tracked_mails()) == 0
    actions = [e.action for e in await desk.store.read(lambda tx: tx.audit.entries())]
    assert "conversation.secure" in actions
    assert all(IBAN not in str(e.detail) for e in await desk.store.read(lambda tx: tx.audit.entries()))


async def test_secure_round_trip_asks_for_the_address_mails_a_code_then_the_text(desk: Desk) -> None:
    await logged_in(desk, "alice", ALICE)
    jan = await desk.customer(JAN, "Can you send my refund details?")
    await desk.sent_to("alice")
    secret = f"Refund to {IBAN}, reference R-77"
    await desk.say("alice", f"/secure {secret}")
    [answer] = await desk.sent_to("alice")
    assert "no verified email address" in answer and IBAN not in answer
    assert await chat_texts(desk, jan) == [desk.rctx.templates.render("secure_ask_email", "en")]

    # Chatter that is not an address is relayed as usual.
    await desk.customer(JAN, "ok one moment")
    assert await desk.sent_to("alice") == [f"[#{jan} Jan · WhatsApp] ok one moment"]
    await desk.customer(JAN, " Jan@Example.COM ")
    [code_mail] = await mails(desk, jan)
    assert code_mail.recipient == "jan@example.com" and secret not in code_mail.text
    code = re.search(r"\b(\d{6})\b", code_mail.text).group(1)  # type: ignore[union-attr]
    assert (await chat_texts(desk, jan))[-1] == (
        "We mailed a 6-digit code to j***@example.com. Please type the code here to receive the information."
    )
    [told] = await desk.sent_to("alice")
    assert "j***@example.com" in told and "jan@example.com" not in told.lower()

    wrong = "000000" if code != "000000" else "111111"
    await desk.customer(JAN, wrong)
    assert (await chat_texts(desk, jan))[-1].startswith("That code is not right")
    assert "(4 attempt(s) left)" in (await chat_texts(desk, jan))[-1]
    await desk.customer(JAN, f"{code[:3]} {code[3:]}")
    secret_mail = (await mails(desk, jan))[-1]
    assert secret_mail.recipient == "jan@example.com" and secret in secret_mail.text
    assert (await chat_texts(desk, jan))[-1] == "The information was mailed to j***@example.com."
    assert await pending(desk, jan) is None
    conv = await desk.conversation(jan)
    contact = await desk.store.read(lambda tx: tx.contacts.get(conv.contact_id))
    assert (contact.email, contact.email_verified) == ("jan@example.com", True)
    [done] = await desk.sent_to("alice")
    assert "confirmed j***@example.com" in done

    # The address and the codes are stored but never relayed; the agent saw none of them, nor the text.
    answers = [m for m in await messages(desk, jan) if m.status == SECURE_ANSWER]
    assert [m.text for m in answers] == [" Jan@Example.COM ", wrong, f"{code[:3]} {code[3:]}"]
    everything_to_agents = "\n".join(await agent_texts(desk))
    for value in (IBAN, "4300", "R-77", code, wrong):
        assert value not in everything_to_agents
    assert "jan@example.com" not in everything_to_agents.lower()

    # Next time the verified address is used at once.
    await desk.say("alice", "/secure Your PIN letter was resent")
    assert "was mailed to j***@example.com" in (await desk.sent_to("alice"))[0]


async def test_wrong_codes_are_limited_and_the_text_is_erased(desk: Desk) -> None:
    await logged_in(desk, "alice", ALICE)
    jan = await desk.customer(JAN, "Hi")
    await desk.say("alice", f"/secure {IBAN}")
    await desk.customer(JAN, "jan@example.com")
    [code_mail] = await mails(desk, jan)
    code = re.search(r"\b(\d{6})\b", code_mail.text).group(1)  # type: ignore[union-attr]
    wrong = [f"{(int(code) + i) % 1_000_000:06d}" for i in range(1, 6)]
    await desk.sent_to("alice")
    for attempt in wrong:
        await desk.customer(JAN, attempt)
    assert (await chat_texts(desk, jan))[-1] == desk.rctx.templates.render("secure_cancelled", "en")
    assert await pending(desk, jan) is None
    told = await desk.sent_to("alice")
    assert [t for t in told if "/secure" in t] == [
        f"[#{jan} Jan · WhatsApp] /secure: your text was not mailed: 5 wrong codes. It was erased; send /secure again."
    ]
    # The right code now is just a message (relayed), and no text is mailed.
    await desk.customer(JAN, code)
    assert [m for m in await mails(desk, jan) if IBAN in m.text] == []


async def test_an_expired_code_mails_nothing(desk: Desk) -> None:
    await logged_in(desk, "alice", ALICE)
    jan = await desk.customer(JAN, "Hi")
    await desk.say("alice", f"/secure {IBAN}")
    await desk.customer(JAN, "jan@example.com")
    code = re.search(r"\b(\d{6})\b", (await mails(desk, jan))[0].text).group(1)  # type: ignore[union-attr]
    await desk.sent_to("alice")
    desk.clock.advance(secure.CODE_TTL + 1)
    await desk.customer(JAN, code)
    assert (await chat_texts(desk, jan))[-1] == desk.rctx.templates.render("secure_cancelled", "en")
    assert [t for t in await desk.sent_to("alice") if "/secure" in t] == [
        f"[#{jan} Jan · WhatsApp] /secure: your text was not mailed: the code expired. It was erased; send /secure again."
    ]
    assert await pending(desk, jan) is None
    assert [m for m in await mails(desk, jan) if IBAN in m.text] == []
    [late] = [m for m in await messages(desk, jan) if m.text == code]
    assert late.status == SECURE_ANSWER


async def test_a_request_without_an_answer_expires_on_the_next_touch(desk: Desk) -> None:
    await logged_in(desk, "alice", ALICE)
    jan = await desk.customer(JAN, "Hi")
    await desk.say("alice", f"/secure {IBAN}")
    await desk.sent_to("alice")
    desk.clock.advance(secure.REQUEST_TTL + 1)
    await desk.customer("whatsapp:+31600000002", "someone else writes")
    assert await pending(desk, jan) is None
    expired = [t for t in await desk.sent_to("alice") if "/secure" in t]
    assert expired == [
        f"[#{jan} Jan · WhatsApp] /secure: your text was not mailed: the customer gave no email address in time."
        " It was erased; send /secure again."
    ]
    # The customer, who never answered, is not told anything more.
    assert len(await chat_texts(desk, jan)) == 1


async def test_one_pending_request_per_conversation_and_cancel(desk: Desk) -> None:
    await logged_in(desk, "alice", ALICE)
    jan = await desk.customer(JAN, "Hi")
    await desk.say("alice", f"/secure {IBAN}")
    await desk.sent_to("alice")
    await desk.say("alice", "/secure 4111 1111 1111 1111")
    [refused] = await desk.sent_to("alice")
    assert refused == (
        f"[#{jan} Jan · WhatsApp] already has a /secure waiting for the customer's email address or code."
        " Wait for it, or send /secure cancel first."
    )
    await desk.say("alice", f"/secure #{jan} cancel")
    assert await desk.sent_to("alice") == [
        f"[#{jan} Jan · WhatsApp] The /secure request was cancelled and its text erased."
    ]
    assert await pending(desk, jan) is None
    await desk.say("alice", "/secure cancel")
    assert await desk.sent_to("alice") == [f"[#{jan} Jan · WhatsApp] has no /secure waiting."]


async def test_a_text_starting_with_digits_is_never_taken_for_a_conversation(desk: Desk) -> None:
    await logged_in(desk, "alice", ALICE)
    jan = await desk.customer(JAN, "Hi")
    await desk.sent_to("alice")
    await desk.say("alice", "/secure 482913 is your new code")
    [answer] = await desk.sent_to("alice")
    assert answer.startswith(f"[#{jan} Jan · WhatsApp] The customer has no verified email address")
    assert "482913" not in answer


async def test_secure_refuses_without_the_email_channel_or_a_text(desk: Desk) -> None:
    await logged_in(desk, "alice", ALICE)
    jan = await desk.customer(JAN, "Hi")
    await desk.sent_to("alice")
    await desk.say("alice", "/secure   ")
    assert await desk.sent_to("alice") == [secure.USAGE]
    desk.rctx.channels = frozenset({"console", "whatsapp", "messenger"})
    await desk.say("alice", f"/secure {IBAN}")
    assert await desk.sent_to("alice") == [secure.NO_EMAIL]
    assert await pending(desk, jan) is None and await to_customer(desk, jan) == []


async def test_an_email_customer_needs_no_round_trip(desk: Desk) -> None:
    await logged_in(desk, "alice", ALICE)
    ann = await desk.customer(ANN_MAIL, "Send me the code please", name="Ann")
    await desk.sent_to("alice")
    await desk.say("alice", "/secure Your activation code is 77-1234")
    assert await desk.sent_to("alice") == [f"[#{ann} Ann · Email] Your text was mailed to a***@customer.example."]
    [mail] = await to_customer(desk, ann)
    assert mail.recipient == "ann@customer.example" and "77-1234" in mail.text
    records = [m.text for m in await messages(desk, ann) if m.direction == "system"]
    assert records == ["[/secure: mailed to a***@customer.example]"]


async def test_closing_the_conversation_erases_its_pending_request(desk: Desk) -> None:
    await logged_in(desk, "alice", ALICE)
    jan = await desk.customer(JAN, "Hi")
    await desk.say("alice", f"/secure {IBAN}")
    await desk.sent_to("alice")
    await desk.say("alice", "/close")  # the batch that closed it sweeps at its end
    assert await pending(desk, jan) is None
    assert [t for t in await desk.sent_to("alice") if "/secure" in t] == [
        f"[#{jan} Jan · WhatsApp] /secure: your text was not mailed: the conversation was closed."
        " It was erased; send /secure again."
    ]


async def test_an_email_agent_sends_secure_on_the_first_line(desk: Desk) -> None:
    await logged_in(desk, "bob", BOB)
    jan = await desk.customer(JAN, "Hi")
    conv = await desk.conversation(jan)
    await desk.store.write(lambda tx: tx.contacts.set_email(conv.contact_id, "jan@example.com", verified=True))
    await desk.say("bob", "/secure Your PIN code is 4821\n\nOn Monday Carebridge wrote:\n> [#1 Jan · WhatsApp] Hi")
    [mail] = await mails(desk, jan)
    assert "Your PIN code is 4821" in mail.text and "Monday" not in mail.text


async def test_the_console_api_calls_start_secure_and_reads_why_it_refused(desk: Desk) -> None:
    alice = await desk.add_agent("alice", ALICE)
    await desk.login("alice")
    jan = await desk.customer(JAN, "Hi")
    conv = await desk.conversation(jan)

    def start(tx: Any) -> str:
        return secure.start_secure(tx, desk.rctx, conv, alice, f"Your IBAN {IBAN}")

    answer = await desk.store.write(start)
    assert answer.startswith(f"[#{jan} Jan · WhatsApp] The customer has no verified email address")
    with pytest.raises(secure.SecureRefused) as refused:
        await desk.store.write(start)
    assert refused.value.code == "pending" and IBAN not in str(refused.value)
    assert "cancelled" in await desk.store.write(lambda tx: secure.cancel_secure(tx, desk.rctx, conv, alice))
    desk.rctx.channels = frozenset({"console", "whatsapp"})
    with pytest.raises(secure.SecureRefused) as refused:
        await desk.store.write(start)
    assert refused.value.code == "email_disabled"
