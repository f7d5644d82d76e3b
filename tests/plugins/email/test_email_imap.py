"""IMAP inbound against a real Dovecot: TLS only, each mail once, IDLE or polling, reconnects, health.

The channel is built as the core builds it (``ChannelContext``, with the
channel-state facility); the server is Debian's Dovecot with a trustme
certificate (tests/fakes/dovecot.py), mail put in with APPEND as an MTA's
delivery would land.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Callable
from email.message import EmailMessage
from typing import Any

import aiohttp
import pytest
import trustme

from bridge import ChannelState
from carebridge_email import EmailChannel
from carebridge_email.config import DEFAULT_DONE_FOLDER, DEFAULT_ERROR_FOLDER
from tests.fakes.dovecot import Dovecot, server_directory
from tests.plugins.email.conftest import FROM, Core, imap_section

CUSTOMER = "ann@customer.test"


def customer_mail(n: int = 1, sender: str = CUSTOMER, body: str = "Where is my parcel?", **headers: str) -> bytes:
    mail = EmailMessage()
    mail["From"] = f"Ann Example <{sender}>"
    mail["To"] = FROM
    mail["Subject"] = f"Parcel {n}"
    mail["Message-ID"] = f"<m{n}@customer.test>"
    for name, value in headers.items():
        mail[name.replace("_", "-")] = value
    mail.set_content(body)
    return mail.as_bytes()


@pytest.fixture
def make_imap_channel(
    section: dict[str, Any], core: Core, http: aiohttp.ClientSession, dovecot: Dovecot
) -> Callable[..., EmailChannel]:
    def make(server: Dovecot | None = None, **overrides: Any) -> EmailChannel:
        config = {**section, **imap_section(server or dovecot), **overrides}
        return EmailChannel(config, core.context(http, "email"))

    return make


@contextlib.asynccontextmanager
async def running(channel: EmailChannel) -> AsyncIterator[EmailChannel]:
    """Start the channel and its receive loop as the core does; stop both."""
    await channel.start()
    task = asyncio.create_task(channel.run())
    try:
        yield channel
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await channel.stop()


async def until_count(dovecot: Dovecot, folder: str, count: int, criteria: str = "ALL") -> None:
    """Wait until ``folder`` holds ``count`` mails matching ``criteria`` (moves follow the commit)."""
    for _ in range(400):
        if await dovecot.count(folder, criteria) == count:
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"{folder} never held {count} mail(s) matching {criteria}")


def connected(core: Core) -> bool:
    return bool(core.reports) and core.reports[-1][0] is ChannelState.CONNECTED


async def test_a_customer_mail_is_taken_in_once_then_flagged_and_moved(
    make_imap_channel: Callable[..., EmailChannel], dovecot: Dovecot, core: Core
) -> None:
    await dovecot.append(customer_mail(1))
    async with running(make_imap_channel()):
        await core.until(lambda: len(core.messages) == 1, "the mail taken in")
        await dovecot.append(customer_mail(2, body="And a second question."))  # arrives during IDLE
        await core.until(lambda: len(core.messages) == 2, "the mail that arrived while idling")
        await until_count(dovecot, DEFAULT_DONE_FOLDER, 2)
    first, second = core.messages
    assert (first.sender, first.text, first.meta["subject"]) == (CUSTOMER, "Where is my parcel?", "Parcel 1")
    assert second.text == "And a second question."
    assert await dovecot.count("INBOX") == 0
    assert await dovecot.count(DEFAULT_DONE_FOLDER) == 2
    assert await dovecot.count(DEFAULT_DONE_FOLDER, "SEEN") == 2, "flagged \\Seen once committed"
    state = json.loads(core.state["imap:INBOX"])
    assert state["last_uid"] == 2 and state["uidvalidity"] > 0
    assert core.reports[0] == (ChannelState.STARTING, "connecting to the IMAP server")
    assert core.reports[1] == (ChannelState.CONNECTED, None), "connected only once logged in and the folder open"


async def test_starttls_is_required_and_works(
    make_imap_channel: Callable[..., EmailChannel], dovecot: Dovecot, core: Core
) -> None:
    await dovecot.append(customer_mail(1))
    channel = make_imap_channel(imap_port=dovecot.port, imap_tls="starttls")
    async with running(channel):
        await core.until(lambda: len(core.messages) == 1, "the mail taken in over STARTTLS")
    logins = [line for line in dovecot.log.splitlines() if "Login: user=" in line]
    assert logins and all(", TLS" in line for line in logins), "the password only ever went inside TLS"


async def test_a_certificate_the_client_does_not_trust_stops_it_before_the_password(
    make_imap_channel: Callable[..., EmailChannel], dovecot: Dovecot, core: Core, tmp_path: Any
) -> None:
    other = tmp_path / "other-ca.pem"
    trustme.CA().cert_pem.write_to_path(str(other))
    await dovecot.append(customer_mail(1))
    logins = dovecot.log.count("Login: user=")  # the APPEND's own
    async with running(make_imap_channel(imap_ca_file=str(other))):
        await core.until(
            lambda: any(s is ChannelState.TRANSIENT_DISCONNECT and "not trusted" in (r or "") for s, r in core.reports),
            "the untrusted certificate reported",
        )
    assert core.messages == []
    assert dovecot.log.count("Login: user=") == logins, "no login of ours ever reached the server"


async def test_wrong_credentials_show_as_bad_credentials(
    make_imap_channel: Callable[..., EmailChannel], core: Core, dovecot: Dovecot
) -> None:
    async with running(make_imap_channel(imap_password="not-the-password")):
        await core.until(
            lambda: (ChannelState.BAD_CREDENTIALS, "IMAP login refused") in core.reports, "the refusal reported"
        )
    assert core.messages == []


async def test_a_server_without_idle_is_polled(
    make_imap_channel: Callable[..., EmailChannel], core: Core, ca: trustme.CA
) -> None:
    server = Dovecot(server_directory(), ca, idle=False)
    await server.start()
    try:
        async with running(make_imap_channel(server, imap_poll_interval=0.3)) as channel:
            await core.until(lambda: connected(core), "connected")
            assert channel.imap is not None and channel.imap._session is not None
            assert not channel.imap._session.has_idle
            await server.append(customer_mail(1))
            await core.until(lambda: len(core.messages) == 1, "the mail found by polling")
            await server.append(customer_mail(2))
            await core.until(lambda: len(core.messages) == 2, "the next one too")
    finally:
        await server.stop()


async def test_dovecot_restarted_mid_idle_loses_and_doubles_nothing(
    make_imap_channel: Callable[..., EmailChannel], dovecot: Dovecot, core: Core
) -> None:
    await dovecot.append(customer_mail(1))
    async with running(make_imap_channel()):
        await core.until(lambda: len(core.messages) == 1, "the first mail")
        await dovecot.restart()  # drops the connection while it idles
        await core.until(
            lambda: any(s is ChannelState.TRANSIENT_DISCONNECT for s, _ in core.reports), "the drop reported"
        )
        await dovecot.append(customer_mail(2))
        await core.until(lambda: len(core.messages) == 2 and connected(core), "reconnected and the second mail in")
        await until_count(dovecot, DEFAULT_DONE_FOLDER, 2)
    assert [m.meta["subject"] for m in core.messages] == ["Parcel 1", "Parcel 2"]
    assert await dovecot.count(DEFAULT_DONE_FOLDER) == 2


async def test_a_restart_after_the_commit_but_before_the_move_takes_nothing_twice(
    make_imap_channel: Callable[..., EmailChannel], dovecot: Dovecot, core: Core
) -> None:
    """The saved UID says the mail was committed: the next run only files it away."""
    await dovecot.append(customer_mail(1))
    # What the first run committed before it stopped: the mail's UID under this folder's UIDVALIDITY.
    async with running(make_imap_channel()):
        await core.until(lambda: len(core.messages) == 1, "taken in")
    validity = json.loads(core.state["imap:INBOX"])["uidvalidity"]
    await dovecot.append(customer_mail(2), folder="INBOX")
    core.state["imap:INBOX"] = json.dumps({"uidvalidity": validity, "last_uid": 2})  # committed, not yet moved
    async with running(make_imap_channel()):
        await core.until(lambda: connected(core), "connected again")
        await until_count(dovecot, "INBOX", 0)
    assert len(core.messages) == 1, "UID 2 was committed before: filed, not taken in again"
    assert await dovecot.count(DEFAULT_DONE_FOLDER) == 2


async def test_unparseable_and_too_large_mail_go_to_the_error_folder_unread(
    make_imap_channel: Callable[..., EmailChannel], dovecot: Dovecot, core: Core, caplog: pytest.LogCaptureFixture
) -> None:
    await dovecot.append(b"Subject: Secret-Subject-77\r\n\r\nno sender anywhere: Body-Marker-9\r\n")
    await dovecot.append(customer_mail(2, body="x" * 6000))
    await dovecot.append(customer_mail(3))
    async with running(make_imap_channel(max_mail_size=4096)):
        await core.until(lambda: len(core.messages) == 1, "the good mail")
        await until_count(dovecot, DEFAULT_ERROR_FOLDER, 2)
    assert core.messages[0].meta["subject"] == "Parcel 3"
    assert await dovecot.count(DEFAULT_ERROR_FOLDER) == 2
    assert await dovecot.count(DEFAULT_ERROR_FOLDER, "UNSEEN") == 2, "left unread for the operator"
    assert "Secret-Subject-77" not in caplog.text and "Body-Marker-9" not in caplog.text
    assert "over max_mail_size" in caplog.text and "could not be parsed" in caplog.text


async def test_a_sender_over_the_hourly_cap_is_kept_out_and_the_operator_told_once(
    make_imap_channel: Callable[..., EmailChannel], dovecot: Dovecot, core: Core, caplog: pytest.LogCaptureFixture
) -> None:
    for n in range(1, 6):
        await dovecot.append(customer_mail(n))
    await dovecot.append(customer_mail(9, sender="bob@other.test"))
    async with running(make_imap_channel(max_mails_per_hour=3)):
        await core.until(lambda: len(core.messages) == 4, "three of ann's and bob's")
        await until_count(dovecot, DEFAULT_ERROR_FOLDER, 2)
    assert [m.sender for m in core.messages].count(CUSTOMER) == 3
    assert await dovecot.count(DEFAULT_ERROR_FOLDER) == 2
    assert caplog.text.count("went over max_mails_per_hour") == 1
    assert any(s is ChannelState.DEGRADED and "max_mails_per_hour" in (r or "") for s, r in core.reports)
