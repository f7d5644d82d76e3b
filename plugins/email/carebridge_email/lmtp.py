"""The LMTP receiver an on-box MTA delivers our mail to (aiosmtpd, in the bridge's own loop).

LMTP rather than SMTP because the MTA keeps the queue: we answer each
recipient only after the mail is committed to the store, a ``451`` makes the
MTA try again later, and nothing is ever half-accepted. RFC 2033 wants one
reply per accepted recipient after the final dot; aiosmtpd sends whatever
string the DATA hook returns, so the hook returns one line per recipient
(PROTOCOLS §3.3). Only recipients in our own domain are accepted. A mail
over the size limit gets ``552`` (SIZE is advertised, so a careful MTA
does not even send it), again once per recipient.
"""

from __future__ import annotations

import asyncio
import logging
import weakref
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, AnyStr

from aiosmtpd.lmtp import LMTP

from bridge import ChannelUnavailable

from .imap import Disposition

#: ``on_mail(raw bytes, envelope sender, accepted recipients)``; raising means "try again later".
MailCallback = Callable[[bytes, str, Sequence[str]], Awaitable[Disposition]]
#: aiosmtpd's one-line answer to a mail over ``data_size_limit``.
_TOO_MUCH = "552 Error: Too much mail data"
# aiosmtpd logs envelope addresses (and at debug level, commands) on this logger:
# addresses must not reach our logs, so it only speaks up for warnings.
_AIOSMTPD_LOG = "mail.log"


class LmtpHandler:
    """aiosmtpd handler hooks: the recipient check and the DATA answer."""

    def __init__(self, domain: str, on_mail: MailCallback, log: logging.Logger) -> None:
        self.domain = domain.lower()
        self.on_mail = on_mail
        self.log = log

    async def handle_RCPT(  # noqa: N802 (aiosmtpd's hook name)
        self, server: Any, session: Any, envelope: Any, address: str, rcpt_options: list[str]
    ) -> str:
        """Accept ``address`` only in our domain (the hook must append what it accepts)."""
        if address.rpartition("@")[2].lower() != self.domain:
            return "550 5.1.1 Recipient not accepted here"
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802
        """Store the mail once, then answer every accepted recipient with the same outcome."""
        recipients = list(envelope.rcpt_tos)
        try:
            outcome = await self.on_mail(
                bytes(envelope.original_content or b""), str(envelope.mail_from or ""), recipients
            )
        except asyncio.CancelledError:
            raise
        except Exception:  # boundary: the MTA must hear "try later", and keeps the mail queued
            self.log.exception("could not store a received mail; answered 451 so the MTA retries")
            return "\r\n".join("451 4.3.0 Not stored, try again later" for _ in recipients)
        if outcome is Disposition.UNPARSEABLE:
            return "\r\n".join("554 5.6.0 Message could not be parsed" for _ in recipients)
        # Over the sender's cap: taken and dropped, never bounced (a bounce would feed the loop).
        return "\r\n".join("250 2.0.0 Delivered" for _ in recipients)


class LmtpServer:
    """An LMTP listener on ``host:port`` served by the running event loop."""

    def __init__(self, handler: LmtpHandler, host: str, port: int, *, hostname: str, max_size: int) -> None:
        self.handler = handler
        self.host = host
        self.port = port
        self.hostname = hostname
        self.max_size = max_size
        self._server: asyncio.Server | None = None
        self._sessions: weakref.WeakSet[LMTP] = weakref.WeakSet()

    @property
    def bound_port(self) -> int:
        """The port actually bound (differs from ``port`` when that was 0)."""
        if self._server is None or not self._server.sockets:
            return self.port
        return int(self._server.sockets[0].getsockname()[1])

    async def start(self) -> None:
        """Listen; a port that cannot be bound is ``ChannelUnavailable`` (the core retries)."""
        if self._server is not None:
            return
        logger = logging.getLogger(_AIOSMTPD_LOG)
        if logger.level == logging.NOTSET:
            logger.setLevel(logging.WARNING)
        loop = asyncio.get_running_loop()
        try:
            self._server = await loop.create_server(self._session, host=self.host, port=self.port)
        except OSError as err:
            reason = err.strerror or err
            raise ChannelUnavailable(f"cannot listen for LMTP on {self.host}:{self.port}: {reason}") from err

    async def stop(self) -> None:
        """Stop listening and close open sessions (an unanswered DATA is retried by the MTA)."""
        server, self._server = self._server, None
        if server is None:
            return
        server.close()
        for session in list(self._sessions):
            if session.transport is not None:
                session.transport.close()
        await server.wait_closed()

    def _session(self) -> LMTP:
        session = _Lmtp(
            self.handler,
            hostname=self.hostname,
            ident="Carebridge LMTP",
            enable_SMTPUTF8=True,
            data_size_limit=self.max_size,
            loop=asyncio.get_running_loop(),
        )
        self._sessions.add(session)
        return session


class _Lmtp(LMTP):
    """aiosmtpd's LMTP, answering a mail over the size limit once per recipient (RFC 2033 §4.2).

    aiosmtpd refuses such a mail inside its DATA loop with one ``552`` line;
    an MTA that delivered to several recipients would wait for the others.
    """

    async def push(self, status: AnyStr) -> None:
        if isinstance(status, str) and status == _TOO_MUCH and self.envelope is not None:
            count = max(1, len(self.envelope.rcpt_tos))
            await super().push("\r\n".join(["552 5.3.4 Message too big for this system"] * count))
            return
        await super().push(status)
