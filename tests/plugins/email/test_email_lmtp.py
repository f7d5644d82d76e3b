"""The LMTP receiver, driven by a raw socket client as an MTA would drive it."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from email.message import EmailMessage

import pytest

from bridge import ChannelState, ChannelUnavailable
from bridge.errors import StoreError
from carebridge_email import EmailChannel
from carebridge_email.parse import external_id_of
from tests.plugins.email.conftest import FROM, Core, LmtpClient

CUSTOMER = "ann@customer.test"


def customer_mail(body: str = "Where is my parcel?", **headers: str) -> bytes:
    mail = EmailMessage()
    mail["From"] = f"Ann Example <{CUSTOMER}>"
    mail["To"] = FROM
    mail["Subject"] = "Parcel 4711"
    mail["Message-ID"] = "<m1@customer.test>"
    mail["Date"] = "Mon, 02 Nov 2026 10:00:00 +0000"
    for name, value in headers.items():
        mail[name.replace("_", "-")] = value
    mail.set_content(body)
    return mail.as_bytes()


async def test_one_mail_to_two_of_our_addresses_is_one_message_and_two_replies(
    channel: EmailChannel, lmtp: LmtpClient, core: Core
) -> None:
    replies = await lmtp.deliver(customer_mail(), CUSTOMER, [FROM, "reply+7u3-abcdefghijklmnopqrst@Example.org"])
    assert [r[:3] for r in replies] == ["250", "250", "250", "250"], replies
    [message] = core.messages
    assert (message.channel, message.sender, message.sender_name) == ("email", CUSTOMER, "Ann Example")
    assert message.external_id == external_id_of(CUSTOMER, "<m1@customer.test>", b"")
    assert message.text == "Where is my parcel?"
    assert message.meta["subject"] == "Parcel 4711"
    assert message.meta["message_id"] == "<m1@customer.test>"
    assert message.meta["reply_token"] == "7u3-abcdefghijklmnopqrst", "the token is the core's to judge"
    assert message.authenticated is None, "no trusted authserv-id configured: no verdict"
    assert message.timestamp == datetime(2026, 11, 2, 10, 0, tzinfo=UTC).timestamp()
    assert core.reports == [(ChannelState.CONNECTED, None)]


async def test_a_foreign_recipient_is_refused_and_the_rest_answered(
    channel: EmailChannel, lmtp: LmtpClient, core: Core
) -> None:
    replies = await lmtp.deliver(customer_mail(), CUSTOMER, ["someone@elsewhere.test", FROM])
    assert replies[0].startswith("550") and replies[1].startswith("250")
    assert [r[:3] for r in replies[2:]] == ["250"], "one DATA reply for the one accepted recipient"
    assert len(core.messages) == 1


async def test_only_foreign_recipients_store_nothing(channel: EmailChannel, lmtp: LmtpClient, core: Core) -> None:
    replies = await lmtp.deliver(customer_mail(), CUSTOMER, ["x@example.org.evil.test"])
    assert replies[0].startswith("550") and core.messages == []


@pytest.mark.parametrize(
    ("mail_from", "headers"),
    [
        ("", {}),
        (CUSTOMER, {"Auto_Submitted": "auto-replied"}),
        (CUSTOMER, {"Auto_Submitted": "Auto-Generated; x-test=1"}),
        (CUSTOMER, {"List_Id": "<news.customer.test>"}),
        (CUSTOMER, {"List_Unsubscribe": "<mailto:u@customer.test>"}),
        (CUSTOMER, {"Precedence": "bulk"}),
    ],
)
async def test_automated_mail_is_accepted_but_never_stored(
    channel: EmailChannel, lmtp: LmtpClient, core: Core, mail_from: str, headers: dict[str, str]
) -> None:
    replies = await lmtp.deliver(customer_mail(**headers), mail_from, [FROM])
    assert [r[:3] for r in replies] == ["250", "250"], "accepted, so the MTA does not bounce it"
    assert core.messages == []


async def test_auto_submitted_no_is_a_customer_message(channel: EmailChannel, lmtp: LmtpClient, core: Core) -> None:
    await lmtp.deliver(customer_mail(Auto_Submitted="no"), CUSTOMER, [FROM])
    assert len(core.messages) == 1


async def test_mail_from_our_own_address_is_not_stored(channel: EmailChannel, lmtp: LmtpClient, core: Core) -> None:
    raw = customer_mail().replace(f"Ann Example <{CUSTOMER}>".encode(), FROM.encode())
    await lmtp.deliver(raw, FROM, [FROM])
    assert core.messages == []


async def test_a_quoted_reply_is_stripped(channel: EmailChannel, lmtp: LmtpClient, core: Core) -> None:
    body = (
        "Thanks, that helps.\n\n-- \nAnn\n"
        "\nOn Mon, 2 Nov 2026 at 10:00, Care <care@example.org> wrote:\n> It left the warehouse today.\n"
    )
    raw = customer_mail(body, In_Reply_To="<a1@example.org>", References="<m1@customer.test> <a1@example.org>")
    await lmtp.deliver(raw, CUSTOMER, ["reply+c7@example.org"])
    [message] = core.messages
    assert message.text == "Thanks, that helps."
    assert message.reply_to == "<a1@example.org>"
    assert message.meta["references"] == "<m1@customer.test> <a1@example.org>"


async def test_attachments_are_handed_to_save_media_after_deliver(
    channel: EmailChannel, lmtp: LmtpClient, core: Core
) -> None:
    mail = EmailMessage()
    mail["From"] = CUSTOMER
    mail["To"] = FROM
    mail["Subject"] = "Invoice"
    mail["Message-ID"] = "<att@customer.test>"
    mail.set_content("See the invoice attached.\n.leading dot line\n")
    pdf = b"%PDF-1.4\r\n.\r\n" + bytes(range(256)) * 8
    mail.add_attachment(pdf, maintype="application", subtype="pdf", filename="invoice 4711.pdf")
    mail.add_attachment(b"\x89PNG\r\n", maintype="image", subtype="png", filename="photo.png")
    await lmtp.deliver(mail.as_bytes(), CUSTOMER, [FROM])
    [message] = core.messages
    assert message.text == "See the invoice attached.\n.leading dot line"
    assert [(a.kind, a.filename, a.mime) for a in message.attachments] == [
        ("file", "invoice 4711.pdf", "application/pdf"),
        ("file", "photo.png", "image/png"),
    ]
    assert core.media == [
        (message.external_id, 0, pdf, "application/pdf"),
        (message.external_id, 1, b"\x89PNG\r\n", "image/png"),
    ]


async def test_a_failing_deliver_answers_451_to_every_recipient(
    channel: EmailChannel, lmtp: LmtpClient, core: Core
) -> None:
    core.fail_deliver = StoreError("disk full")
    replies = await lmtp.deliver(customer_mail(), CUSTOMER, [FROM, "reply+c1@example.org"])
    assert [r[:3] for r in replies] == ["250", "250", "451", "451"], replies
    core.fail_deliver = None
    replies = await lmtp.deliver(customer_mail(), CUSTOMER, [FROM])  # the MTA's retry, same session
    assert [r[:3] for r in replies] == ["250", "250"] and len(core.messages) == 1


async def test_helo_and_ehlo_are_not_lmtp(channel: EmailChannel, lmtp: LmtpClient) -> None:
    assert (await lmtp.command("EHLO mta.test"))[0].startswith("500")
    assert (await lmtp.command("HELO mta.test"))[0].startswith("500")


async def test_a_busy_port_is_channel_unavailable_and_stop_frees_the_port(
    channel: EmailChannel, make_channel: Callable[..., EmailChannel]
) -> None:
    port = channel.lmtp.bound_port
    second = make_channel()
    with pytest.raises(ChannelUnavailable, match="LMTP"):
        await second.start()
    await channel.stop()
    await second.start()
    try:
        client = await LmtpClient.connect(port)
        await client.close()
    finally:
        await second.stop()


async def test_stop_closes_open_sessions(make_channel: Callable[..., EmailChannel]) -> None:
    channel = make_channel()
    await channel.start()
    client = await LmtpClient.connect(channel.lmtp.bound_port)
    await channel.stop()
    assert await client.reader.read() == b"", "the session was closed by stop()"
    client.writer.close()
    await client.writer.wait_closed()


async def test_a_mail_over_the_size_limit_gets_552_for_every_recipient(
    make_channel: Callable[..., EmailChannel], core: Core
) -> None:
    channel = make_channel(max_mail_size=4096)
    await channel.start()
    try:
        client = await LmtpClient.connect(channel.lmtp.bound_port)
        try:
            lhlo = await client.command("LHLO mta.test")
            assert "250-SIZE 4096" in lhlo, "the limit is advertised, so a careful MTA does not even send it"
            replies = await client.deliver(customer_mail("x" * 6000), CUSTOMER, [FROM, "reply+1u1-x@example.org"])
        finally:
            await client.close()
    finally:
        await channel.stop()
    assert [r[:3] for r in replies] == ["250", "250", "552", "552"], replies
    assert core.messages == []


async def test_a_sender_over_the_hourly_cap_is_taken_but_kept_out_and_the_operator_told_once(
    make_channel: Callable[..., EmailChannel], core: Core, caplog: pytest.LogCaptureFixture
) -> None:
    channel = make_channel(max_mails_per_hour=2)
    await channel.start()
    try:
        client = await LmtpClient.connect(channel.lmtp.bound_port)
        try:
            for n in range(4):
                raw = customer_mail().replace(b"<m1@customer.test>", f"<loop{n}@customer.test>".encode())
                replies = await client.deliver(raw, CUSTOMER, [FROM])
                assert [r[:3] for r in replies] == ["250", "250"], "never bounced: a bounce feeds a loop"
            other = customer_mail().replace(CUSTOMER.encode(), b"bob@other.test")
            await client.deliver(other, "bob@other.test", [FROM])
        finally:
            await client.close()
    finally:
        await channel.stop()
    assert [m.sender for m in core.messages] == [CUSTOMER, CUSTOMER, "bob@other.test"]
    assert caplog.text.count("went over max_mails_per_hour") == 1
    assert (
        ChannelState.DEGRADED,
        "mail from a sender over max_mails_per_hour is kept out (see the log)",
    ) in core.reports


async def test_a_mail_without_a_sender_address_is_refused_with_554(
    channel: EmailChannel, lmtp: LmtpClient, core: Core
) -> None:
    raw = b"Subject: no sender\r\nMessage-ID: <ns@x.test>\r\n\r\nbody\r\n"
    replies = await lmtp.deliver(raw, "postmaster", [FROM, "reply+1u1-x@example.org"])
    assert [r[:3] for r in replies] == ["250", "250", "554", "554"], "a permanent refusal: the MTA bounces it"
    assert core.messages == []
