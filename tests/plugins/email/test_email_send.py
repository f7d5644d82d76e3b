"""Outbound mail against a real SMTP server (aiosmtpd) with STARTTLS, implicit TLS and AUTH."""

from __future__ import annotations

import ssl
from collections.abc import Callable
from pathlib import Path

import pytest

from bridge import ChannelAuthFailed, ChannelState, DeliveryError, OutboundMessage
from carebridge_email import EmailChannel
from carebridge_email.parse import REPLY_MARKER
from carebridge_email.smtp import reply_subject
from tests.fakes.smtp_server import FakeSmtpServer
from tests.plugins.email.conftest import FROM, SMTP_PASSWORD, SMTP_USER, Core, free_port

CUSTOMER = "ann@customer.test"
THREAD = {
    "subject": "Where is my parcel?",
    "message_id": "<m2@customer.test>",
    "references": "<m0@customer.test> <m1@example.org>",
    "reply_token": "7u3-abcdefghijklmnopqrst",
    "recipient_kind": "contact",
}


def outbound(text: str = "It left the warehouse today.", **kwargs: object) -> OutboundMessage:
    fields: dict[str, object] = {"delivery_id": 41, "channel": "email", "recipient": CUSTOMER, "text": text}
    fields.update(kwargs)
    return OutboundMessage(**fields)  # type: ignore[arg-type]


async def test_a_reply_is_threaded_and_sent_over_starttls_with_auth(
    make_channel: Callable[..., EmailChannel], smtp: FakeSmtpServer
) -> None:
    channel = make_channel()
    receipt = await channel.send(outbound(conversation_id=7, meta=THREAD))
    [mail] = smtp.received
    assert mail.tls and mail.login == SMTP_USER, "AUTH happened inside TLS"
    assert mail.mail_from == FROM and mail.rcpt_tos == (CUSTOMER,)
    msg = mail.message
    assert msg["From"] == FROM and msg["To"] == CUSTOMER
    assert msg["Subject"] == "Re: Where is my parcel?"
    assert msg["In-Reply-To"] == "<m2@customer.test>"
    assert msg["References"] == "<m0@customer.test> <m1@example.org> <m2@customer.test>"
    assert msg["Reply-To"] == "reply+7u3-abcdefghijklmnopqrst@example.org"
    assert msg["Message-ID"] == receipt.external_id
    assert receipt.external_id.startswith("<") and receipt.external_id.endswith("@example.org>")
    assert msg.get_content().strip() == "It left the warehouse today."
    assert msg["Auto-Submitted"] is None, "an agent's reply is not automated mail"


async def test_without_thread_meta_the_subject_is_neutral_and_nothing_guessable_is_made_up(
    make_channel: Callable[..., EmailChannel], smtp: FakeSmtpServer
) -> None:
    await make_channel().send(outbound(conversation_id=12))
    msg = smtp.received[0].message
    assert msg["Subject"] == "A message from customer care"
    assert msg["In-Reply-To"] is None and msg["References"] is None
    assert msg["Reply-To"] == FROM, "no token from the core: answers go to the bare address"


async def test_a_mail_to_an_agent_starts_with_the_reply_marker(
    make_channel: Callable[..., EmailChannel], smtp: FakeSmtpServer
) -> None:
    meta = {"subject": "[#7 Ann · Email]", "reply_token": "7a2-abcdefghijklmnopqrst", "recipient_kind": "agent"}
    await make_channel().send(outbound("[#7 Ann · Email] Where is my parcel?", recipient="alice@staff.test", meta=meta))
    msg = smtp.received[0].message
    assert msg.get_content().splitlines()[:3] == [REPLY_MARKER, "", "[#7 Ann · Email] Where is my parcel?"]
    assert msg["Reply-To"] == "reply+7a2-abcdefghijklmnopqrst@example.org"


async def test_a_core_chosen_subject_without_a_parent_is_used_as_is(
    make_channel: Callable[..., EmailChannel], smtp: FakeSmtpServer
) -> None:
    await make_channel().send(outbound(meta={"subject": "Your verification code"}))
    msg = smtp.received[0].message
    assert msg["Subject"] == "Your verification code"
    assert msg["Reply-To"] == FROM


async def test_references_fall_back_to_in_reply_to_and_headers_cannot_be_injected(
    make_channel: Callable[..., EmailChannel], smtp: FakeSmtpServer
) -> None:
    meta = {"subject": "Hi\r\nBcc: evil@x.test", "message_id": "<m9@c.test>", "in_reply_to": "<m8@example.org>"}
    await make_channel().send(outbound(meta=meta))
    msg = smtp.received[0].message
    assert msg["References"] == "<m8@example.org> <m9@c.test>"
    assert msg["Bcc"] is None and msg["Subject"] == "Re: Hi Bcc: evil@x.test"


@pytest.mark.parametrize(
    ("subject", "expected"),
    [("Hello", "Re: Hello"), ("Re: Hello", "Re: Hello"), ("RE: re:Hello", "Re: Hello"), ("AW: Hallo", "Re: Hallo")],
)
def test_one_re_prefix_only(subject: str, expected: str) -> None:
    assert reply_subject(subject) == expected


async def test_implicit_tls(make_channel: Callable[..., EmailChannel], server_tls: ssl.SSLContext) -> None:
    server = FakeSmtpServer(tls_context=server_tls, implicit_tls=True, users={SMTP_USER: SMTP_PASSWORD})
    port = await server.start()
    try:
        await make_channel(smtp_tls="tls", smtp_port=port).send(outbound())
    finally:
        await server.stop()
    assert [(m.tls, m.login) for m in server.received] == [(True, SMTP_USER)]


async def test_plain_local_relay_without_auth(make_channel: Callable[..., EmailChannel]) -> None:
    server = FakeSmtpServer()
    port = await server.start()
    try:
        await make_channel(smtp_tls="none", smtp_port=port, smtp_username="", smtp_password="").send(outbound())
    finally:
        await server.stop()
    assert [(m.tls, m.login, m.rcpt_tos) for m in server.received] == [(False, None, (CUSTOMER,))]


async def test_starttls_is_required_not_opportunistic(make_channel: Callable[..., EmailChannel]) -> None:
    server = FakeSmtpServer()  # no STARTTLS offered: credentials must not go out in clear
    port = await server.start()
    try:
        with pytest.raises(DeliveryError) as caught:
            await make_channel(smtp_port=port).send(outbound())
    finally:
        await server.stop()
    assert caught.value.retryable and server.received == []


async def test_an_untrusted_certificate_is_refused(make_channel: Callable[..., EmailChannel], tmp_path: Path) -> None:
    import trustme

    other = tmp_path / "other-ca.pem"
    trustme.CA().cert_pem.write_to_path(str(other))
    with pytest.raises(DeliveryError) as caught:
        await make_channel(smtp_ca_file=str(other)).send(outbound())
    assert caught.value.retryable


async def test_wrong_password_is_channel_auth_failed(
    make_channel: Callable[..., EmailChannel], smtp: FakeSmtpServer, core: Core
) -> None:
    with pytest.raises(ChannelAuthFailed) as caught:
        await make_channel(smtp_password="wrong").send(outbound())
    assert caught.value.code == "535" and not caught.value.retryable
    assert smtp.auth_attempts and all(a == (SMTP_USER, False) for a in smtp.auth_attempts)
    assert smtp.received == []
    assert core.reports[-1][0] is ChannelState.BAD_CREDENTIALS


@pytest.mark.parametrize(
    ("where", "reply", "retryable", "code"),
    [
        ("rcpt", f"550 5.1.1 <{CUSTOMER}>: Recipient address rejected", False, "550"),
        ("rcpt", "450 4.2.1 Mailbox busy", True, "450"),
        ("data", "554 5.7.1 Rejected as spam", False, "554"),
        ("data", "451 4.3.0 Try again later", True, "451"),
    ],
)
async def test_smtp_replies_are_classified(
    make_channel: Callable[..., EmailChannel], smtp: FakeSmtpServer, where: str, reply: str, retryable: bool, code: str
) -> None:
    setattr(smtp, f"{where}_reply", reply)
    with pytest.raises(DeliveryError) as caught:
        await make_channel().send(outbound())
    assert (caught.value.retryable, caught.value.code) == (retryable, code)
    assert "customer.test" not in str(caught.value), "no address in an error text (it reaches logs and the outbox)"
    assert not isinstance(caught.value, ChannelAuthFailed)


async def test_nobody_listening_is_retryable(make_channel: Callable[..., EmailChannel]) -> None:
    with pytest.raises(DeliveryError) as caught:
        await make_channel(smtp_port=free_port()).send(outbound())
    assert caught.value.retryable and caught.value.code == "connect"


async def test_bad_recipient_and_empty_text_are_refused_before_connecting(
    make_channel: Callable[..., EmailChannel], smtp: FakeSmtpServer
) -> None:
    channel = make_channel()
    for message in (outbound(recipient="not an address"), outbound(text="  "), outbound(template=True)):
        with pytest.raises(DeliveryError) as caught:
            await channel.send(message)
        assert not caught.value.retryable
    assert smtp.received == [] and smtp.auth_attempts == []


def test_email_is_labelled_and_takes_commands_from_the_first_line_only() -> None:
    # An agent's reply mail quotes the relayed message below their own first line.
    assert EmailChannel.display_label() == "Email" and EmailChannel.commands_in_first_line is True


def test_normalize_address() -> None:
    assert EmailChannel.normalize_address(" Ann@Customer.TEST ") == "ann@customer.test"
    for bad in ("ann", "ann@", "@x.test", "a b@x.test", "ann@x..test"):
        with pytest.raises(ValueError):
            EmailChannel.normalize_address(bad)


async def test_every_attempt_of_one_delivery_has_the_same_message_id_across_restarts(
    make_channel: Callable[..., EmailChannel], core: Core, server_tls: ssl.SSLContext
) -> None:
    """A resend after a lost SMTP answer repeats the Message-ID, so receiving systems can drop the copy."""
    server = FakeSmtpServer(tls_context=server_tls, users={SMTP_USER: SMTP_PASSWORD})
    port = await server.start()
    try:
        first = make_channel(smtp_port=port)
        await first.start()
        receipt = await first.send(outbound())
        await first.stop()
        again = make_channel(smtp_port=port)  # a restarted daemon: the same saved channel state
        await again.start()
        resent = await again.send(outbound())
        other = await again.send(outbound(delivery_id=99))
        await again.stop()
    finally:
        await server.stop()
    assert receipt.external_ids == resent.external_ids
    assert other.external_ids != receipt.external_ids
    assert [m.message["Message-ID"] for m in server.received][:2] == [receipt.external_id] * 2
