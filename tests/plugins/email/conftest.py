"""Fixtures for the email plugin tests.

The channel is built as the core builds it: a ``ChannelContext`` whose
callbacks record into lists (that context is the plugin's only seam). Its
peers are real: an aiosmtpd submission server with a trustme certificate
for outbound mail, a raw socket LMTP client for inbound mail (smtplib's
LMTP client does not read one reply per recipient, PROTOCOLS §3.3), and a
real Dovecot IMAP server for the hosted-mailbox way in.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import socket
import ssl
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import trustme

from bridge import ChannelContext, ChannelState
from bridge.testing import RecordingCore
from carebridge_email import EmailChannel
from tests.fakes.dovecot import USER as DOVECOT_USER
from tests.fakes.dovecot import Dovecot, server_directory
from tests.fakes.smtp_server import FakeSmtpServer

FROM = "care@example.org"
SMTP_USER = "bridge"
SMTP_PASSWORD = "s3cret-submission"


def free_port() -> int:
    """A loopback port nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Core(RecordingCore):
    """The recorder, plus the channel-state facility a pull channel needs, and a way to wait for reports."""

    def __init__(self, *, statuses: bool = True, media: bool = True) -> None:
        super().__init__(statuses=statuses, media=media)
        self.state: dict[str, str] = {}
        self.changed = asyncio.Event()

    async def deliver(self, messages: Sequence[Any]) -> None:
        await super().deliver(messages)
        self.changed.set()

    def report(self, state: ChannelState, reason: str | None) -> None:
        super().report(state, reason)
        self.changed.set()

    async def load_state(self, key: str) -> str | None:
        return self.state.get(key)

    async def save_state(self, key: str, value: str) -> None:
        self.state[key] = value

    def context(self, http: aiohttp.ClientSession, channel: str, *, max_body: int = 2 * 1024 * 1024) -> ChannelContext:
        ctx = super().context(http, channel, max_body=max_body)
        return replace(ctx, load_state=self.load_state, save_state=self.save_state)

    async def until(self, predicate: Callable[[], bool], what: str, timeout: float = 30.0) -> None:
        """Wait until ``predicate`` holds, woken by each delivery and report."""
        deadline = asyncio.get_running_loop().time() + timeout
        while not predicate():
            remaining = deadline - asyncio.get_running_loop().time()
            if remaining <= 0:
                raise AssertionError(f"timed out waiting for {what}; reports: {self.reports}")
            self.changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.changed.wait(), min(remaining, 0.5))


class LmtpClient:
    """A raw LMTP client: sends commands, reads every reply line as it arrives."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    @classmethod
    async def connect(cls, port: int) -> LmtpClient:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        client = cls(reader, writer)
        greeting = await client.reply()
        assert greeting[0].startswith("220"), greeting
        return client

    async def reply(self) -> list[str]:
        """One (possibly multi-line) reply: lines up to the one with a space after the code."""
        lines: list[str] = []
        while True:
            line = (await asyncio.wait_for(self.reader.readline(), 5)).decode().rstrip("\r\n")
            assert line, f"connection closed after {lines!r}"
            lines.append(line)
            if len(line) < 4 or line[3] != "-":
                return lines

    async def command(self, line: str) -> list[str]:
        self.writer.write(line.encode() + b"\r\n")
        await self.writer.drain()
        return await self.reply()

    async def data(self, raw: bytes, replies: int) -> list[str]:
        """Send DATA and the dot-stuffed mail; read ``replies`` replies (one per accepted recipient)."""
        start = await self.command("DATA")
        assert start[0].startswith("354"), start
        body = raw.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
        stuffed = b"\r\n".join(b"." + line if line.startswith(b".") else line for line in body.split(b"\r\n"))
        self.writer.write(stuffed.rstrip(b"\r\n") + b"\r\n.\r\n")
        await self.writer.drain()
        return [(await self.reply())[0] for _ in range(replies)]

    async def deliver(self, raw: bytes, mail_from: str, recipients: Sequence[str]) -> list[str]:
        """A whole transaction; returns the RCPT replies then the DATA replies."""
        assert (await self.command("LHLO mta.test"))[-1].startswith("250")
        assert (await self.command(f"MAIL FROM:<{mail_from}>"))[0].startswith("250")
        rcpt = [(await self.command(f"RCPT TO:<{r}>"))[0] for r in recipients]
        accepted = sum(1 for r in rcpt if r.startswith("250"))
        if not accepted:
            return rcpt
        return rcpt + await self.data(raw, accepted)

    async def close(self) -> None:
        self.writer.write(b"QUIT\r\n")
        await self.writer.drain()
        self.writer.close()
        await self.writer.wait_closed()


@pytest.fixture(scope="session")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture(scope="session")
def ca_file(ca: trustme.CA, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("ca") / "ca.pem"
    ca.cert_pem.write_to_path(str(path))
    return path


@pytest.fixture(scope="session")
def server_tls(ca: trustme.CA) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1", "localhost").configure_cert(context)
    return context


@pytest.fixture
async def smtp(server_tls: ssl.SSLContext) -> AsyncIterator[FakeSmtpServer]:
    """A STARTTLS submission server requiring AUTH."""
    server = FakeSmtpServer(tls_context=server_tls, users={SMTP_USER: SMTP_PASSWORD})
    await server.start()
    yield server
    await server.stop()


@pytest.fixture
def core() -> Core:
    return Core(statuses=False)


@pytest.fixture
async def dovecot(ca: trustme.CA) -> AsyncIterator[Dovecot]:
    """A real Dovecot (implicit TLS and STARTTLS, trustme certificate) with an empty mailbox."""
    server = Dovecot(server_directory(), ca)
    await server.start()
    try:
        yield server
    finally:
        await server.stop()
        shutil.rmtree(server.directory, ignore_errors=True)


def imap_section(dovecot: Dovecot, **overrides: Any) -> dict[str, Any]:
    """The IMAP keys of ``[channels.email]`` for ``dovecot`` (implicit TLS)."""
    section = {
        "inbound": "imap",
        "imap_host": "127.0.0.1",
        "imap_port": dovecot.tls_port,
        "imap_tls": "tls",
        "imap_ca_file": str(dovecot.ca_file),
        "imap_username": DOVECOT_USER,
        "imap_password": dovecot.password,
    }
    section.update(overrides)
    return section


@pytest.fixture
def section(smtp: FakeSmtpServer, ca_file: Path) -> dict[str, Any]:
    """A valid ``[channels.email]`` section pointing at the fake server."""
    return {
        "enabled": True,
        "smtp_host": "127.0.0.1",
        "smtp_port": smtp.port,
        "smtp_tls": "starttls",
        "smtp_username": SMTP_USER,
        "smtp_password": SMTP_PASSWORD,
        "smtp_ca_file": str(ca_file),
        "from_address": FROM,
        "inbound": "lmtp",
        "lmtp_host": "127.0.0.1",
        "lmtp_port": free_port(),
    }


@pytest.fixture
def make_channel(section: dict[str, Any], core: Core, http: aiohttp.ClientSession) -> Callable[..., EmailChannel]:
    """Build a channel; keyword arguments override config keys."""

    def make(**overrides: Any) -> EmailChannel:
        return EmailChannel({**section, **overrides}, core.context(http, "email"))

    return make


@pytest.fixture
async def channel(make_channel: Callable[..., EmailChannel]) -> AsyncIterator[EmailChannel]:
    """A started channel (its LMTP receiver listening)."""
    ch = make_channel()
    await ch.start()
    yield ch
    await ch.stop()


@pytest.fixture
async def lmtp(channel: EmailChannel) -> AsyncIterator[LmtpClient]:
    client = await LmtpClient.connect(channel.lmtp.bound_port)
    yield client
    await client.close()
