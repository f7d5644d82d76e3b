"""Issue 10 end to end: sensitive data kept off the chat platforms, and ``/secure`` by email, in the real daemon.

``carebridge run`` runs as a subprocess (tests/daemon.py) with the installed
plugins found through their entry points, the detectors included. The
customer writes on WhatsApp and the agent on Messenger through the fake
Graph APIs (signed webhooks in, checked sends out); mail leaves over SMTP
(STARTTLS, AUTH) to a real aiosmtpd server. What the fakes and the SMTP
server received, the daemon's log, the export and the store are then
searched for the values.
"""

from __future__ import annotations

import json
import re
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pyotp
import pytest

from bridge.config import load_config
from bridge.store import open_store
from tests.daemon import DaemonProcess, run_cli, write_config
from tests.e2e.conftest import FAST
from tests.e2e.harness import wait_for
from tests.e2e.world import World, channel_sections, store_rows
from tests.fakes.smtp_server import FakeSmtpServer, ReceivedMail
from tests.plugins.email.conftest import (  # noqa: F401 - ca, ca_file, server_tls and smtp are fixtures used here
    FROM,
    SMTP_PASSWORD,
    SMTP_USER,
    ca,
    ca_file,
    free_port,
    server_tls,
    smtp,
)

ENV = {"SENSITIVE_E2E_SMTP_PASSWORD": SMTP_PASSWORD}
ANN = "+15550003333"  # customer on WhatsApp
BOB = "7000000000000042"  # agent on Messenger
ANN_MAIL = "ann.unique@customer.test"
CUSTOMER_IBAN = "NL91 ABNA 0417 1643 00"
CUSTOMER_IBAN_COMPACT = "NL91ABNA0417164300"
SECRET_IBAN = "GB82WEST12345698765432"
SECRET = f"Refund sent from {SECRET_IBAN}, reference RF-99213"


@pytest.fixture
def config(world: World, tmp_path: Path, smtp: FakeSmtpServer, ca_file: Path) -> Path:
    email = (
        "[channels.email]\n"
        f'smtp_host = "127.0.0.1"\nsmtp_port = {smtp.port}\nsmtp_tls = "starttls"\n'
        f'smtp_username = "{SMTP_USER}"\nsmtp_password = "env:SENSITIVE_E2E_SMTP_PASSWORD"\n'
        f'smtp_ca_file = "{ca_file}"\nfrom_address = "{FROM}"\ninbound = "lmtp"\n'
        f'lmtp_host = "127.0.0.1"\nlmtp_port = {free_port()}\n'
    )
    return write_config(tmp_path, channel_sections(*world.graph_urls()) + email + FAST)


async def enrol(config: Path) -> str:
    """``carebridge agent add bob --channel messenger:…``; return the TOTP secret."""
    status, out, err = await run_cli(
        "agent", "add", "bob", "--channel", f"messenger:{BOB}", "--password-stdin", "-c", str(config),
        env=ENV, stdin=b"correct horse battery staple\n",
    )  # fmt: skip
    assert status == 0, err
    found = re.search(r"secret=([A-Z2-7]+)", out)
    assert found, out
    return found.group(1)


def has(texts: Callable[[], list[str]], part: str) -> Callable[[], bool]:
    return lambda: any(part in t for t in texts())


def mails_to(smtp: FakeSmtpServer, address: str) -> list[ReceivedMail]:
    return [m for m in smtp.received if address in m.rcpt_tos]


def chat_traffic(world: World) -> str:
    """Everything both chat APIs were asked to send, as one text."""
    whatsapp = [s.payload for s in (*world.wa.sent, *world.wa.failed)]
    return json.dumps(whatsapp, ensure_ascii=False) + json.dumps(world.graph.requests, ensure_ascii=False)


async def start(config: Path, world: World) -> DaemonProcess:
    daemon = DaemonProcess(config, env=ENV)
    await daemon.start()
    world.point_at(daemon.url("/"))
    return daemon


async def ask_secure_and_give_address(world: World, smtp: FakeSmtpServer) -> str:
    """Bob sends ``/secure``, Ann gives her address; return the code mailed to it."""
    await world.messenger(BOB, f"/secure {SECRET}")
    await wait_for(has(lambda: world.wa_texts(ANN), "reply with just your email address"), what="address asked")
    await world.whatsapp(ANN, ANN_MAIL)
    await wait_for(lambda: len(mails_to(smtp, ANN_MAIL)) == 1, what="the code mailed")
    content = mails_to(smtp, ANN_MAIL)[0].message.get_content()
    assert SECRET_IBAN not in content and "RF-99213" not in content
    found = re.search(r"\b(\d{6})\b", content)
    assert found, content
    await wait_for(has(lambda: world.wa_texts(ANN), "6-digit code to a***@customer.test"), what="code notice")
    return found.group(1)


async def test_masking_refused_reply_and_secure_round_trip_through_the_daemon(
    world: World, config: Path, smtp: FakeSmtpServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    secret = await enrol(config)
    db = tmp_path / "var" / "carebridge.db"
    daemon = await start(config, world)
    try:
        await world.messenger(BOB, f"/login {pyotp.TOTP(secret).now()}")
        await wait_for(has(lambda: world.fb_texts(BOB), "logged in"), what="bob's login answer")

        # An IBAN from the WhatsApp customer reaches the Messenger agent masked; she is asked to use email.
        await world.whatsapp(ANN, f"Hi, my IBAN is {CUSTOMER_IBAN} for the refund", name="Ann")
        relayed = "[#1 Ann · WhatsApp] Hi, my IBAN is NL91 **** **** **** 4300 [IBAN hidden] for the refund"
        await wait_for(lambda: relayed in world.fb_texts(BOB), what="the masked relay")
        await wait_for(has(lambda: world.wa_texts(ANN), "please do not send bank account numbers"), what="notice")

        # The agent's reply with an IBAN reaches no chat API; the agent is told, without the value.
        await world.messenger(BOB, f"Thanks, I will refund to {CUSTOMER_IBAN_COMPACT} today")
        await wait_for(has(lambda: world.fb_texts(BOB), "Your message was not sent"), what="the refusal")
        refusal = next(t for t in world.fb_texts(BOB) if "Your message was not sent" in t)
        assert "(IBAN)" in refusal and "/secure" in refusal and "4300" not in refusal

        # /secure: address captured in chat, a code mailed, one wrong code, the right one, then the text.
        code = await ask_secure_and_give_address(world, smtp)
        wrong = f"{(int(code) + 1) % 1_000_000:06d}"
        await world.whatsapp(ANN, wrong)
        await wait_for(has(lambda: world.wa_texts(ANN), "That code is not right"), what="wrong code answer")
        await world.whatsapp(ANN, code)
        await wait_for(lambda: len(mails_to(smtp, ANN_MAIL)) == 2, what="the text mailed")
        await wait_for(lambda: "The information was mailed to a***@customer.test." in world.wa_texts(ANN),
                       what="the customer told where it went")  # fmt: skip
        await wait_for(has(lambda: world.fb_texts(BOB), "confirmed a***@customer.test"), what="bob told")

        # Once every delivery has its outcome, any touch erases the mailed texts from the outbox.
        def all_sent() -> bool:
            rows = store_rows(db, "SELECT status FROM outbox WHERE channel = 'email'")
            return len(rows) == 2 and all(r == ("sent",) for r in rows)

        await wait_for(all_sent, what="both mails recorded as sent")
        await world.whatsapp(ANN, "Got it, thanks!")
        await wait_for(lambda: "[#1 Ann · WhatsApp] Got it, thanks!" in world.fb_texts(BOB), what="relay")
        await wait_for(lambda: store_rows(db, "SELECT count(*) FROM secure_mails") == [(0,)], what="mails erased")
    finally:
        await daemon.stop()
    assert daemon.returncode == 0

    # The text went only into the last mail, which went out over TLS with AUTH.
    code_mail, text_mail = mails_to(smtp, ANN_MAIL)
    assert SECRET in text_mail.message.get_content() and text_mail.tls and text_mail.login == SMTP_USER
    assert text_mail.message["Subject"] == "The information you asked for"
    assert SECRET_IBAN not in code_mail.data.decode()
    assert len(smtp.received) == 2
    traffic = chat_traffic(world)
    for value in (SECRET_IBAN, "RF-99213", CUSTOMER_IBAN, CUSTOMER_IBAN_COMPACT, code, ANN_MAIL):
        assert value not in traffic, f"{value!r} reached a chat API"
    # The wrong code was typed by the customer and is never echoed back.
    assert wrong not in json.dumps(world.graph.requests)
    for value in (SECRET_IBAN, "RF-99213", CUSTOMER_IBAN, CUSTOMER_IBAN_COMPACT, "0417", code, ANN_MAIL, "ann.unique"):
        assert value not in daemon.stderr, f"{value!r} in the daemon's log"

    # The raw text stays in the store, and the export marks it sensitive.
    status, out, err = await run_cli("gdpr", "export", f"whatsapp:{ANN}", "-c", str(config), env=ENV)
    assert status == 0, err
    exported = [m for c in json.loads(out)["conversations"] for m in c["messages"]]
    first = exported[0]
    assert (first["direction"], first["text"], first["sensitive"]) == (
        "in", f"Hi, my IBAN is {CUSTOMER_IBAN} for the refund", True
    )  # fmt: skip
    assert all(SECRET_IBAN not in (m["text"] or "") for m in exported)
    # ... and nowhere does the store keep the /secure text or the code any more.
    monkeypatch.setenv(*next(iter(ENV.items())))  # the configuration names the SMTP password
    store = await open_store(load_config(config).store)
    try:

        def bodies(tx: Any) -> list[str]:
            ids = [r[0] for r in tx._session.conn.execute("SELECT id FROM outbox ORDER BY id").fetchall()]
            return [tx.outbox.load(i).text for i in ids]

        texts = await store.read(bodies)
        contact = await store.read(lambda tx: tx.contacts.get(tx.contacts.find_by_email(ANN_MAIL)[0]))
    finally:
        await store.close()
    assert all(SECRET_IBAN not in t and code not in t for t in texts)
    assert (contact.email, contact.email_verified) == (ANN_MAIL, True)
    assert store_rows(db, "SELECT count(*) FROM secure_pending") == [(0,)]
    for path in (tmp_path / "var").rglob("*"):
        if path.is_file():
            assert SECRET_IBAN.encode() not in path.read_bytes(), f"the text in plaintext in {path.name}"


async def test_an_expired_code_mails_nothing_even_across_a_restart(
    world: World, config: Path, smtp: FakeSmtpServer, tmp_path: Path
) -> None:
    secret = await enrol(config)
    db = tmp_path / "var" / "carebridge.db"
    daemon = await start(config, world)
    try:
        await world.messenger(BOB, f"/login {pyotp.TOTP(secret).now()}")
        await wait_for(has(lambda: world.fb_texts(BOB), "logged in"), what="bob's login answer")
        await world.whatsapp(ANN, "Hello, can you send me the refund details?", name="Ann")
        await wait_for(has(lambda: world.fb_texts(BOB), "refund details"), what="relay")
        code = await ask_secure_and_give_address(world, smtp)
    finally:
        await daemon.stop()
    first_log = daemon.stderr
    # The request survives the restart, sealed; its code's time runs out meanwhile (a plain column).
    assert store_rows(db, "SELECT state FROM secure_pending") == [("code",)]
    with sqlite3.connect(db) as conn:
        conn.execute("UPDATE secure_pending SET expires_at = 0")
    conn.close()

    restarted = await start(config, world)
    try:
        await world.whatsapp(ANN, code)
        await wait_for(has(lambda: world.wa_texts(ANN), "could not be confirmed, so nothing was sent"), what="expiry")
        await wait_for(has(lambda: world.fb_texts(BOB), "the code expired"), what="bob told of the expiry")
        assert store_rows(db, "SELECT count(*) FROM secure_pending") == [(0,)]
    finally:
        await restarted.stop()
    assert len(mails_to(smtp, ANN_MAIL)) == 1, "only the code was mailed"
    assert SECRET_IBAN not in chat_traffic(world) and code not in json.dumps(world.graph.requests)
    for value in (SECRET_IBAN, "RF-99213", code, ANN_MAIL):
        assert value not in first_log and value not in restarted.stderr, f"{value!r} in the daemon's log"
