"""A real SMTP submission server on loopback (aiosmtpd), for the email channel's tests.

It speaks real SMTP in the test's own event loop: STARTTLS or implicit TLS
with a trustme certificate, AUTH (PLAIN/LOGIN) required when users are
given and refused before TLS (aiosmtpd's ``auth_require_tls``), and scripted
replies to RCPT or DATA so that tests can see 4xx and 5xx answers as a real
server gives them. Every accepted mail is recorded with how it arrived.
"""

from __future__ import annotations

import asyncio
import ssl
import warnings
from dataclasses import dataclass, field
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from typing import Any

from aiosmtpd.smtp import SMTP, AuthResult, LoginPassword


@dataclass(frozen=True)
class ReceivedMail:
    """One mail the server accepted.

    :param tls: whether the session was encrypted when DATA arrived.
    :param login: the user that authenticated, or None.
    """

    mail_from: str
    rcpt_tos: tuple[str, ...]
    data: bytes
    tls: bool
    login: str | None

    @property
    def message(self) -> EmailMessage:
        parsed = BytesParser(policy=policy.default).parsebytes(self.data)
        assert isinstance(parsed, EmailMessage)
        return parsed


@dataclass
class FakeSmtpServer:
    """An SMTP server on 127.0.0.1 and a free port.

    :param tls_context: the server's certificate; enables STARTTLS (or implicit TLS).
    :param implicit_tls: serve TLS from the first byte (port-465 style) instead of STARTTLS.
    :param users: login → password; when given, AUTH is required before MAIL.
    :param rcpt_reply: a reply line to give every RCPT instead of accepting it.
    :param data_reply: a reply line to give DATA instead of accepting the mail.
    :param drop_after_data: accept (record) the next N mails, then close the
        connection instead of answering ``250``: the client never learns.
    """

    tls_context: ssl.SSLContext | None = None
    implicit_tls: bool = False
    users: dict[str, str] = field(default_factory=dict)
    rcpt_reply: str | None = None
    data_reply: str | None = None
    drop_after_data: int = 0
    received: list[ReceivedMail] = field(default_factory=list)
    auth_attempts: list[tuple[str, bool]] = field(default_factory=list)
    port: int = 0
    _server: asyncio.AbstractServer | None = None
    _sessions: list[SMTP] = field(default_factory=list)

    async def start(self) -> int:
        """Listen and return the port."""
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            self._session,
            host="127.0.0.1",
            port=0,
            ssl=self.tls_context if self.implicit_tls else None,
        )
        self.port = int(self._server.sockets[0].getsockname()[1])
        return self.port

    async def stop(self) -> None:
        if self._server is None:
            return
        self._server.close()
        for session in self._sessions:
            if session.transport is not None:
                session.transport.close()
        await self._server.wait_closed()
        self._server = None

    def _session(self) -> SMTP:
        with warnings.catch_warnings():
            # aiosmtpd warns about AUTH without STARTTLS; with implicit TLS the session is encrypted.
            warnings.simplefilter("ignore", UserWarning)
            session = self._make_session()
        self._sessions.append(session)
        return session

    def _make_session(self) -> SMTP:
        return SMTP(
            self,
            hostname="smtp.test",
            tls_context=None if self.implicit_tls else self.tls_context,
            auth_required=bool(self.users),
            auth_require_tls=not self.implicit_tls,
            authenticator=self._authenticate if self.users else None,
            loop=asyncio.get_running_loop(),
        )

    def _authenticate(self, server: Any, session: Any, envelope: Any, mechanism: str, auth_data: Any) -> AuthResult:
        if not isinstance(auth_data, LoginPassword):
            return AuthResult(success=False, handled=False)
        login = auth_data.login.decode()
        ok = self.users.get(login) == auth_data.password.decode()
        self.auth_attempts.append((login, ok))
        return AuthResult(success=ok, handled=False, auth_data=login if ok else None)

    async def handle_RCPT(  # noqa: N802
        self, server: Any, session: Any, envelope: Any, address: str, rcpt_options: list[str]
    ) -> str:
        if self.rcpt_reply is not None:
            return self.rcpt_reply
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802
        if self.data_reply is not None:
            return self.data_reply
        tls = server.transport is not None and server.transport.get_extra_info("ssl_object") is not None
        login = session.auth_data if session.authenticated else None
        self.received.append(
            ReceivedMail(
                mail_from=str(envelope.mail_from),
                rcpt_tos=tuple(envelope.rcpt_tos),
                data=bytes(envelope.original_content),
                tls=tls,
                login=str(login) if login is not None else None,
            )
        )
        if self.drop_after_data:
            self.drop_after_data -= 1
            server.transport.close()  # queued, and the 250 never reaches the client
        return "250 Message accepted for delivery"
