"""A real Dovecot IMAP server on loopback, started from a private configuration in a temp directory.

Why Dovecot and not a fake: IDLE, UIDVALIDITY, MOVE, STARTTLS and login
refusals are exactly what a hosted mailbox does, and a fake would only
say what we believe. Debian's ``dovecot-imapd`` runs as root from
``dovecot -c DIR/dovecot.conf`` (TESTING.md): the login process runs as
``dovenull``, mail processes as ``dovecot`` (``first_valid_uid = 100``), so
the maildir belongs to that user. TLS uses a trustme certificate: the
client under test verifies it against ``imap_ca_file`` as it would verify a
provider's certificate, and Dovecot refuses logins before TLS
(``ssl = required``), so no test ever sends a password in clear.

``idle=False`` removes IDLE from the capabilities (``imap_capability``), as
some servers do, to test the polling fall-back. Mail is put in with the
standard library's ``imaplib`` APPEND, as an MTA's delivery would land.
"""

from __future__ import annotations

import asyncio
import imaplib
import os
import pwd
import shutil
import signal
import socket
import ssl
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import trustme

DOVECOT = "/usr/sbin/dovecot"
USER = "support@example.org"
PASSWORD = "imap-test-password"
#: The capabilities Dovecot 2.3 advertises after login, less IDLE.
_NO_IDLE = (
    "IMAP4rev1 SASL-IR LOGIN-REFERRALS ID ENABLE SORT SORT=DISPLAY THREAD=REFERENCES THREAD=REFS"
    " THREAD=ORDEREDSUBJECT MULTIAPPEND URL-PARTIAL CATENATE UNSELECT CHILDREN NAMESPACE UIDPLUS LIST-EXTENDED"
    " I18NLEVEL=1 CONDSTORE QRESYNC ESEARCH ESORT SEARCHRES WITHIN CONTEXT=SEARCH LIST-STATUS BINARY MOVE"
    " SNIPPET=FUZZY PREVIEW=FUZZY PREVIEW STATUS=SIZE SAVEDATE LITERAL+ NOTIFY SPECIAL-USE"
)


def require_dovecot() -> str:
    """The dovecot binary; a missing one fails the test in CI and skips it elsewhere.

    CI installs ``dovecot-imapd`` (``.ci/run``), so there a missing server is a
    broken set-up, never a reason to pass quietly.
    """
    path = shutil.which("dovecot") or (DOVECOT if Path(DOVECOT).exists() else None)
    if path is None:
        reason = "Dovecot is not installed (apt-get install -y dovecot-imapd)"
        if os.environ.get("CI"):
            pytest.fail(reason)
        pytest.skip(reason)
    return path


def server_directory() -> Path:
    """A fresh directory under the system temp dir that Dovecot's unprivileged processes can reach."""
    path = Path(tempfile.mkdtemp(prefix="carebridge-dovecot-"))
    path.chmod(0o711)
    return path


def _alive(pid: int) -> bool:
    """Whether ``pid`` still runs; a zombie does not (the daemonized master is nobody's child to reap)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rpartition(")")[2].split()[0] != "Z"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Dovecot:
    """One Dovecot instance: ``start()``, ``stop()``, ``restart()``; mail in with ``append``.

    :param directory: where its config, runtime files, log and maildir live; the
        mail processes (user ``dovecot``) must be able to traverse every parent,
        which pytest's private ``tmp_path`` does not allow: see :func:`server_directory`.
    :param ca: the CA that signs its certificate (clients trust ``ca_file``).
    :param idle: whether IDLE is advertised.
    """

    directory: Path
    ca: trustme.CA
    idle: bool = True
    password: str = PASSWORD
    port: int = field(default_factory=_free_port)  # STARTTLS
    tls_port: int = field(default_factory=_free_port)  # implicit TLS
    running: bool = False

    @property
    def ca_file(self) -> Path:
        return self.directory / "ca.pem"

    @property
    def log(self) -> str:
        path = self.directory / "dovecot.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def _write_config(self) -> Path:
        d = self.directory
        for sub in ("run", "state", "mail"):
            (d / sub).mkdir(parents=True, exist_ok=True)
        user = pwd.getpwnam("dovecot")
        os.chown(d / "mail", user.pw_uid, user.pw_gid)
        self.ca.cert_pem.write_to_path(str(self.ca_file))
        cert = self.ca.issue_cert("127.0.0.1", "localhost")
        cert.cert_chain_pems[0].write_to_path(str(d / "cert.pem"))
        cert.private_key_pem.write_to_path(str(d / "key.pem"))
        capability = "" if self.idle else f"imap_capability = {_NO_IDLE}\n"
        config = d / "dovecot.conf"
        config.write_text(
            f"""protocols = imap
listen = 127.0.0.1
base_dir = {d}/run
state_dir = {d}/state
log_path = {d}/dovecot.log
info_log_path = {d}/dovecot.log
ssl = required
ssl_cert = <{d}/cert.pem
ssl_key = <{d}/key.pem
ssl_dh = </usr/share/dovecot/dh.pem
disable_plaintext_auth = yes
auth_mechanisms = plain login
auth_failure_delay = 0
first_valid_uid = 100
mail_location = maildir:{d}/mail/%u
{capability}passdb {{
  driver = static
  args = password={self.password}
}}
userdb {{
  driver = static
  args = uid=dovecot gid=dovecot home={d}/mail/%u
}}
service imap-login {{
  inet_listener imap {{
    address = 127.0.0.1
    port = {self.port}
  }}
  inet_listener imaps {{
    address = 127.0.0.1
    port = {self.tls_port}
    ssl = yes
  }}
}}
""",
            encoding="utf-8",
        )
        return config

    async def start(self) -> None:
        """Start the server and wait until it accepts connections."""
        binary = require_dovecot()
        config = self._write_config()
        # The master daemonizes and its children keep their standard streams: a pipe would
        # never reach EOF, so the start-up output goes to a file.
        output = self.directory / "start.log"
        with output.open("wb") as sink:
            proc = await asyncio.create_subprocess_exec(binary, "-c", str(config), stdout=sink, stderr=sink)
            await proc.wait()
        assert proc.returncode == 0, f"dovecot did not start: {output.read_text(errors='replace')}\n{self.log}"
        self.running = True
        deadline = time.monotonic() + 20
        while True:
            try:
                _reader, writer = await asyncio.open_connection("127.0.0.1", self.tls_port)
            except OSError:
                if time.monotonic() > deadline:
                    raise AssertionError(f"dovecot is not listening\n{self.log}") from None
                await asyncio.sleep(0.05)
                continue
            writer.close()
            return

    async def stop(self) -> None:
        """Stop the master process (which drops every connection) and wait until it is gone."""
        if not self.running:
            return
        self.running = False
        pid_file = self.directory / "run" / "master.pid"
        try:
            pid = int(pid_file.read_text().strip())
        except (OSError, ValueError):
            return
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            return
        for _ in range(1000):  # 20 s at most; a process exit has no event to wait on
            if not _alive(pid):
                break
            await asyncio.sleep(0.02)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:  # its children let go of the ports too
            try:
                with socket.create_connection(("127.0.0.1", self.tls_port), timeout=0.2):
                    pass
            except OSError:
                return
            await asyncio.sleep(0.05)

    async def restart(self) -> None:
        await self.stop()
        await self.start()

    # -- mailbox access, as an MTA and a mail client would ----------------------

    def _client(self, user: str = USER) -> imaplib.IMAP4_SSL:
        context = ssl.create_default_context(cafile=str(self.ca_file))
        client = imaplib.IMAP4_SSL("127.0.0.1", self.tls_port, ssl_context=context, timeout=10)
        client.login(user, self.password)
        return client

    def _append(self, raw: bytes, folder: str) -> None:
        client = self._client()
        try:
            client.create(folder)  # no harm when it exists
            status, _ = client.append(folder, "", imaplib.Time2Internaldate(time.time()), raw)
            assert status == "OK"
        finally:
            client.logout()

    async def append(self, raw: bytes, folder: str = "INBOX") -> None:
        """Deliver ``raw`` into ``folder`` (INBOX: where an MTA's delivery lands)."""
        await asyncio.to_thread(self._append, raw, folder)

    def _count(self, folder: str, criteria: str) -> int:
        client = self._client()
        try:
            status, _ = client.select(folder, readonly=True)
            if status != "OK":
                return 0
            status, data = client.uid("SEARCH", criteria)
            assert status == "OK"
            return len((data[0] or b"").split())
        finally:
            client.logout()

    async def count(self, folder: str = "INBOX", criteria: str = "ALL") -> int:
        """How many mails in ``folder`` match the IMAP SEARCH ``criteria`` (0 for a missing folder)."""
        return await asyncio.to_thread(self._count, folder, criteria)
