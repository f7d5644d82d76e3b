"""IMAP inbound: read a hosted mailbox (Microsoft 365, Google Workspace, a provider's IMAP).

One connection (aioimaplib) on the configured folder. TLS is never
optional: implicit TLS, or STARTTLS that must succeed before the password
is sent, verified against ``imap_ca_file`` or the system trust store.

Each mail is taken in once: its bytes are fetched without setting
``\\Seen`` (``BODY.PEEK[]``), handed to the core (``ctx.deliver`` returns
once committed), then the folder's UIDVALIDITY and the mail's UID are saved
in the store (``ctx.save_state``), and only then is it flagged ``\\Seen``
and moved to the done folder (or, if it cannot be taken in, to the error
folder). A restart or a dropped connection in between finds it again: a
UID at or below the saved one is only moved, one above it is taken in
again and the core drops the duplicate (same sender and Message-ID). A
changed UIDVALIDITY means the server renumbered the folder: everything in
it is looked at again, and again the core drops what it already has.

New mail is waited for with IDLE (renewed every ``IDLE_RENEW`` seconds), or
by looking every ``imap_poll_interval`` seconds when the server has no
IDLE. A lost connection is retried with a capped, jittered backoff; a
refused login shows as ``bad_credentials`` in /healthz and is retried
slowly (a provider may lock an account that hammers it).
"""

from __future__ import annotations

import asyncio
import enum
import json
import logging
import random
import re
import ssl
from collections.abc import Awaitable, Callable, Iterable
from typing import Any, TypeVar

from aioimaplib import aioimaplib  # type: ignore[import-untyped]  # ships no type information

from bridge import ChannelState

from .config import ImapConfig

T = TypeVar("T")

#: Seconds one IMAP command may take.
TIMEOUT = 30.0
#: IDLE is renewed this often (RFC 2177: servers may drop it after 30 minutes).
IDLE_RENEW = 10 * 60.0
BACKOFF_FIRST = 1.0
BACKOFF_MAX = 300.0
#: The first wait after a refused login (then doubled up to BACKOFF_MAX).
AUTH_RETRY_FIRST = 60.0
#: A session that lasted this long resets the backoff.
STABLE_AFTER = 60.0
# aioimaplib logs every line it sends and receives (mail bodies included) at debug level.
_AIOIMAPLIB_LOG = "aioimaplib.aioimaplib"
_UIDVALIDITY = re.compile(rb"\[UIDVALIDITY (\d+)\]", re.I)
_UID = re.compile(rb"\bUID (\d+)\b", re.I)
_SIZE = re.compile(rb"\bRFC822\.SIZE (\d+)\b", re.I)


class Disposition(enum.Enum):
    """What became of a mail handed to the channel."""

    STORED = "stored"  # committed (or a duplicate the core dropped)
    SKIPPED = "skipped"  # automated mail: taken, never stored
    OVER_CAP = "over_cap"  # its sender went over max_mails_per_hour
    UNPARSEABLE = "unparseable"  # not a mail we can take (no sender, broken structure)
    TOO_LARGE = "too_large"  # over max_mail_size

    @property
    def taken(self) -> bool:
        """Whether the mail goes to the done folder (else the error folder)."""
        return self in (Disposition.STORED, Disposition.SKIPPED)


#: ``on_mail(raw bytes)`` takes a mail in; raising means "not now" (the mail stays and is tried again).
MailHandler = Callable[[bytes], Awaitable[Disposition]]
#: ``report(state, reason)``: the connection's health.
HealthReport = Callable[[ChannelState, str | None], None]
LoadState = Callable[[str], Awaitable[str | None]]
SaveState = Callable[[str, str], Awaitable[None]]


class ImapError(Exception):
    """The connection failed or the server refused something we need: reconnect later."""


class ImapTimeout(ImapError):
    """The server did not answer in time."""


class ImapAuthRefused(ImapError):
    """The server refused our login: the credentials are wrong (or the account is locked)."""


def tls_context(ca_file: str | None) -> ssl.SSLContext:
    """A verifying client context: ``ca_file`` when set, else the system trust store."""
    return ssl.create_default_context(cafile=ca_file) if ca_file else ssl.create_default_context()


class ImapSession:
    """One logged-in connection with the mail folder selected."""

    def __init__(self, protocol: Any, lost: asyncio.Event) -> None:
        self._p = protocol
        self._lost = lost

    @classmethod
    async def open(cls, settings: ImapConfig) -> ImapSession:
        """Connect, secure (implicit TLS or STARTTLS), log in.

        :raises ImapAuthRefused: the login was refused.
        :raises ImapError: no connection, no TLS, or a protocol failure.
        """
        logger = logging.getLogger(_AIOIMAPLIB_LOG)
        if logger.level == logging.NOTSET:
            logger.setLevel(logging.WARNING)
        loop = asyncio.get_running_loop()
        lost = asyncio.Event()
        protocol = aioimaplib.IMAP4ClientProtocol(loop, lambda _exc: lost.set())
        context = tls_context(str(settings.ca_file) if settings.ca_file else None)
        implicit = settings.tls == "tls"
        try:
            await asyncio.wait_for(
                loop.create_connection(
                    lambda: protocol, settings.host, settings.port,
                    ssl=context if implicit else None, server_hostname=settings.host if implicit else None,
                ),
                TIMEOUT,
            )  # fmt: skip
        except ssl.SSLCertVerificationError as err:
            raise ImapError(f"the server's TLS certificate is not trusted ({err.verify_message})") from err
        except (OSError, TimeoutError) as err:
            raise ImapError(f"cannot connect to {settings.host}:{settings.port}: {_why(err)}") from err
        session = cls(protocol, lost)
        try:
            await session._call(protocol.wait("AUTH|NONAUTH"))
            if not implicit:
                await session._starttls(context, settings.host)
            await session._login(settings.username, settings.password)
        except BaseException:
            await session.close()
            raise
        return session

    async def _starttls(self, context: ssl.SSLContext, host: str) -> None:
        p = self._p
        if "STARTTLS" not in p.capabilities:
            raise ImapError("the server offers no STARTTLS: refusing to send the password in clear")
        run_command = p.execute  # aioimaplib's runner of one IMAP command (it has no STARTTLS helper)
        response = await self._call(run_command(aioimaplib.Command("STARTTLS", p.new_tag(), loop=p.loop)))
        if response.result != "OK":
            raise ImapError("the server refused STARTTLS")
        loop = asyncio.get_running_loop()
        try:
            transport = await self._call(loop.start_tls(p.transport, p, context, server_hostname=host))
        except ssl.SSLCertVerificationError as err:
            raise ImapError(f"the server's TLS certificate is not trusted ({err.verify_message})") from err
        except (OSError, ssl.SSLError) as err:
            raise ImapError(f"the TLS handshake failed: {_why(err)}") from err
        p.transport = transport
        await self._call(p.capability())  # RFC 3501 §6.2.1: forget what was said in clear

    async def _login(self, username: str, password: str) -> None:
        p = self._p
        if "LOGINDISABLED" in p.capabilities:
            raise ImapError("the server does not allow LOGIN on this connection (LOGINDISABLED)")
        response = await self._call(p.login(aioimaplib.quoted(username), password))
        if response.result != "OK":
            raise ImapAuthRefused(f"the server refused the login ({_text(response.lines)})")
        await self._call(p.capability())

    @property
    def has_idle(self) -> bool:
        """Whether the server offers IDLE."""
        return "IDLE" in self._p.capabilities

    async def ensure_folder(self, name: str) -> None:
        """Create ``name`` if it does not exist (an existing one answers NO, which is fine)."""
        await self._call(self._p.simple_command("CREATE", aioimaplib.quoted(name)))

    async def select(self, folder: str) -> int:
        """Open ``folder`` read-write; return its UIDVALIDITY."""
        response = await self._call(self._p.select(aioimaplib.quoted(folder)))
        if response.result != "OK":
            raise ImapError(f"cannot open the folder {folder!r} ({_text(response.lines)})")
        for line in response.lines:
            match = _UIDVALIDITY.search(bytes(line))
            if match:
                return int(match.group(1))
        raise ImapError(f"the server gave no UIDVALIDITY for {folder!r}")

    async def uids(self) -> list[int]:
        """Every UID in the selected folder, ascending."""
        response = await self._call(self._p.search("UID", "1:*", charset=None, by_uid=True))
        if response.result != "OK":
            raise ImapError(f"SEARCH failed ({_text(response.lines)})")
        found: set[int] = set()
        for line in response.lines[:-1]:
            found.update(int(word) for word in bytes(line).split() if word.isdigit())
        return sorted(found)

    async def size(self, uid: int) -> int | None:
        """The size of mail ``uid`` in bytes, or None when it is gone."""
        response = await self._call(self._p.fetch(str(uid), "(UID RFC822.SIZE)", by_uid=True, timeout=TIMEOUT))
        for line in response.lines:
            data = bytes(line)
            uid_match, size_match = _UID.search(data), _SIZE.search(data)
            if uid_match and size_match and int(uid_match.group(1)) == uid:
                return int(size_match.group(1))
        return None

    async def body(self, uid: int) -> bytes | None:
        """The bytes of mail ``uid`` (``BODY.PEEK[]``: not flagged ``\\Seen``), or None when it is gone."""
        # aioimaplib's timeout here is an inactivity timer, reset by every chunk: a large mail may take long.
        response = await self._call(
            self._p.fetch(str(uid), "(UID BODY.PEEK[])", by_uid=True, timeout=TIMEOUT), timeout=None
        )
        lines = response.lines
        for index, line in enumerate(lines):
            if isinstance(line, bytes) and b"BODY[]" in line.upper() and index + 1 < len(lines):
                uid_match = _UID.search(line)
                literal = lines[index + 1]
                if isinstance(literal, bytearray) and (uid_match is None or int(uid_match.group(1)) == uid):
                    return bytes(literal)
        return None

    async def file(self, uid: int, folder: str, *, seen: bool) -> bool:
        """Flag mail ``uid`` (``\\Seen`` if ``seen``) and move it to ``folder``; False when the server refused.

        Uses MOVE, or COPY + ``\\Deleted`` + (UID) EXPUNGE on servers without it.
        """
        p = self._p
        if seen:
            await self._call(p.store(str(uid), "+FLAGS.SILENT", r"(\Seen)", by_uid=True))
        target = aioimaplib.quoted(folder)
        if "MOVE" in p.capabilities:
            response = await self._call(p.move(str(uid), target, by_uid=True))
            return bool(response.result == "OK")
        response = await self._call(p.copy(str(uid), target, by_uid=True))
        if response.result != "OK":
            return False
        await self._call(p.store(str(uid), "+FLAGS.SILENT", r"(\Deleted)", by_uid=True))
        if "UIDPLUS" in p.capabilities:
            await self._call(p.expunge(str(uid), by_uid=True))
        else:
            await self._call(p.expunge())
        return True

    async def wait_for_news(self, timeout: float) -> None:
        """IDLE until the server reports new mail (EXISTS) or ``timeout`` seconds pass."""
        p = self._p
        while not p.idle_queue.empty():
            p.idle_queue.get_nowait()  # reports of an earlier IDLE
        loop = asyncio.get_running_loop()
        idle = asyncio.ensure_future(p.idle())
        ack = asyncio.ensure_future(p.wait_for_idle_response())
        try:
            started: set[asyncio.Future[Any]] = {idle, ack}
            await self._call(asyncio.wait(started, return_when=asyncio.FIRST_COMPLETED))
            if not p.has_pending_idle_command():
                raise ImapError("the server refused IDLE")
            deadline = loop.time() + timeout
            while (remaining := deadline - loop.time()) > 0:
                try:
                    lines = await self._call(p.idle_queue.get(), timeout=remaining)
                except ImapTimeout:
                    break
                if any(b"EXISTS" in bytes(line).upper() for line in lines):
                    break
            p.idle_done()
            await self._call(idle)
        finally:
            ack.cancel()
            if not idle.done():
                idle.cancel()

    async def pause(self, seconds: float) -> None:
        """Wait ``seconds`` (no IDLE): returns early only by raising when the connection drops."""
        try:
            await self._call(asyncio.sleep(seconds), timeout=seconds)
        except ImapTimeout:
            return

    async def close(self) -> None:
        """Log out if the connection is still there, then close it."""
        p = self._p
        if not self._lost.is_set() and p.state in ("AUTH", "SELECTED", "NONAUTH"):
            try:
                await asyncio.wait_for(p.logout(), 2.0)
            except (TimeoutError, aioimaplib.AioImapException, OSError):
                pass
        if p.transport is not None:
            p.transport.close()

    async def _call(self, awaitable: Awaitable[T], timeout: float | None = TIMEOUT) -> T:
        """Await one protocol step, failing fast when the connection drops or the server stalls.

        aioimaplib never fails a pending command when the connection is lost,
        so every step races the connection-lost event.
        """
        task: asyncio.Future[T] = asyncio.ensure_future(awaitable)
        lost = asyncio.ensure_future(self._lost.wait())
        racing: set[asyncio.Future[Any]] = {task, lost}
        try:
            done, _ = await asyncio.wait(racing, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        except asyncio.CancelledError:
            task.cancel()
            raise
        finally:
            lost.cancel()
        if task in done:
            try:
                return task.result()
            except aioimaplib.AioImapException as err:
                raise ImapError(f"IMAP protocol error: {type(err).__name__}") from err
            except (OSError, ssl.SSLError) as err:
                raise ImapError(f"connection error: {_why(err)}") from err
        task.cancel()
        if self._lost.is_set():
            raise ImapError("the server closed the connection")
        raise ImapTimeout("the server did not answer in time")


class ImapInbound:
    """The receive loop: connect, take in what is there, wait for more, reconnect after failures.

    :param settings: the IMAP settings.
    :param on_mail: takes one mail in (see :data:`MailHandler`).
    :param report: the connection's health.
    :param load_state: ``ChannelContext.load_state``.
    :param save_state: ``ChannelContext.save_state``.
    :param max_size: mails larger than this go to the error folder unread.
    """

    def __init__(
        self,
        settings: ImapConfig,
        on_mail: MailHandler,
        report: HealthReport,
        load_state: LoadState,
        save_state: SaveState,
        log: logging.Logger,
        *,
        max_size: int,
    ) -> None:
        self.settings = settings
        self.on_mail = on_mail
        self.report = report
        self.load_state = load_state
        self.save_state = save_state
        self.log = log
        self.max_size = max_size
        self._rng = random.Random()
        self._session: ImapSession | None = None
        self._validity = 0
        self._last_uid = 0

    @property
    def state_key(self) -> str:
        """The ``load_state`` key of the folder read."""
        return f"imap:{self.settings.folder}"

    async def run(self) -> None:
        """Receive until cancelled; never returns on its own."""
        delay = BACKOFF_FIRST
        loop = asyncio.get_running_loop()
        host = f"{self.settings.host}:{self.settings.port}"
        self.report(ChannelState.STARTING, "connecting to the IMAP server")
        while True:
            try:
                session = await ImapSession.open(self.settings)
            except ImapAuthRefused as err:
                self.log.error("IMAP %s refused our login (%s): check channels.email.imap_username/password", host, err)
                self.report(ChannelState.BAD_CREDENTIALS, "IMAP login refused")
                delay = max(delay, AUTH_RETRY_FIRST)
                await self._backoff(delay)
                delay = min(delay * 2, BACKOFF_MAX)
                continue
            except ImapError as err:
                self.log.warning("IMAP %s: %s; reconnecting", host, err)
                self.report(ChannelState.TRANSIENT_DISCONNECT, f"reconnecting: {err}")
                await self._backoff(delay)
                delay = min(delay * 2, BACKOFF_MAX)
                continue
            self._session = session
            started = loop.time()
            try:
                await self._serve(session)
            except ImapError as err:
                self.log.warning("IMAP %s: %s; reconnecting", host, err)
                self.report(ChannelState.TRANSIENT_DISCONNECT, f"reconnecting: {err}")
            except Exception as err:  # boundary: the core failed to take a mail in; it stays and is retried
                self.log.exception("IMAP: a mail could not be taken in; it stays in the folder and is tried again")
                self.report(ChannelState.DEGRADED, f"a mail could not be stored ({type(err).__name__})")
            finally:
                self._session = None
                await session.close()
            if loop.time() - started >= STABLE_AFTER:
                delay = BACKOFF_FIRST
            await self._backoff(delay)
            delay = min(delay * 2, BACKOFF_MAX)

    async def stop(self) -> None:
        """Close the connection (the run task is cancelled by the caller)."""
        session, self._session = self._session, None
        if session is not None:
            await session.close()

    async def _backoff(self, delay: float) -> None:
        await asyncio.sleep(delay * self._rng.uniform(0.5, 1.0))

    async def _serve(self, session: ImapSession) -> None:
        settings = self.settings
        for folder in (settings.done_folder, settings.error_folder):
            await session.ensure_folder(folder)
        validity = await session.select(settings.folder)
        await self._load(validity)
        self.report(ChannelState.CONNECTED, None)
        mode = "IDLE" if session.has_idle else f"polling every {settings.poll_interval:g}s"
        self.log.info("IMAP %s:%d: reading %r (%s)", settings.host, settings.port, settings.folder, mode)
        while True:
            await self._drain(session)
            if session.has_idle:
                await session.wait_for_news(IDLE_RENEW)
            else:
                await session.pause(settings.poll_interval)

    async def _drain(self, session: ImapSession) -> None:
        """Take in every mail above the saved UID, until a look finds none new; file leftovers."""
        seen: set[int] = set()
        while True:
            uids = await session.uids()
            leftovers = [uid for uid in uids if uid <= self._last_uid]
            fresh = [uid for uid in uids if uid > self._last_uid and uid not in seen]
            for uid in fresh:
                seen.add(uid)  # looked at once per drain, whatever happened to it
                await self._take(session, uid)
            for uid in leftovers:
                # Taken in before, but the move did not happen (a crash or a drop in between).
                await self._file(session, uid, Disposition.STORED)
            if not fresh:
                return

    async def _take(self, session: ImapSession, uid: int) -> None:
        size = await session.size(uid)
        if size is None:
            return  # gone (another client moved it)
        if size > self.max_size:
            self.log.warning(
                "IMAP: mail UID %d is %d bytes, over max_mail_size (%d): moved to %r unread",
                uid, size, self.max_size, self.settings.error_folder,
            )  # fmt: skip
            disposition = Disposition.TOO_LARGE
        else:
            raw = await session.body(uid)
            if raw is None:
                self.log.warning(
                    "IMAP: the server gave no body for mail UID %d: moved to %r", uid, self.settings.error_folder
                )
                disposition = Disposition.UNPARSEABLE
            else:
                disposition = await self.on_mail(raw)
        await self._save(uid)
        await self._file(session, uid, disposition)

    async def _file(self, session: ImapSession, uid: int, disposition: Disposition) -> None:
        folder = self.settings.done_folder if disposition.taken else self.settings.error_folder
        if not await session.file(uid, folder, seen=disposition.taken):
            self.log.warning("IMAP: mail UID %d could not be moved to %r; it stays where it is", uid, folder)

    async def _load(self, validity: int) -> None:
        text = await self.load_state(self.state_key)
        saved = _parse_state(text)
        if saved is not None and saved[0] == validity:
            self._validity, self._last_uid = saved
            return
        if saved is not None:
            self.log.warning(
                "IMAP: the UIDVALIDITY of %r changed: every mail in it is looked at again"
                " (the ones already stored are dropped as duplicates)", self.settings.folder,
            )  # fmt: skip
        self._validity, self._last_uid = validity, 0

    async def _save(self, uid: int) -> None:
        self._last_uid = max(self._last_uid, uid)
        await self.save_state(self.state_key, json.dumps({"uidvalidity": self._validity, "last_uid": self._last_uid}))


def _parse_state(text: str | None) -> tuple[int, int] | None:
    if not text:
        return None
    try:
        data = json.loads(text)
        return int(data["uidvalidity"]), int(data["last_uid"])
    except (ValueError, KeyError, TypeError):
        return None


def _text(lines: Iterable[Any]) -> str:
    """A server's answer for a log line: short, one line, bytes decoded."""
    words = " ".join(bytes(line).decode("utf-8", "replace") for line in lines if isinstance(line, (bytes, bytearray)))
    return re.sub(r"\s+", " ", words)[:200]


def _why(err: BaseException) -> str:
    if isinstance(err, OSError) and err.strerror:
        return err.strerror
    return str(err) or type(err).__name__
