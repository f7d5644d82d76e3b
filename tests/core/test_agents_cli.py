"""``carebridge agent ...`` as a real subprocess against a real store file."""

from __future__ import annotations

import os
import subprocess
import sys
import urllib.parse
from pathlib import Path

import pytest

from bridge import agents
from bridge.agents import passwords
from bridge.config import load_config
from bridge.store import Store, open_store
from tests.core.agentkit import db_bytes, make_conversation

CONFIG = """\
[store]
path = "var/carebridge.db"
key = "file:master.key"

[security]
totp_issuer = "Care Desk"

[channels.whatsapp]
enabled = false

[channels.messenger]
enabled = false

[channels.email]
enabled = false
"""


@pytest.fixture
def cfg(tmp_path: Path) -> Path:
    path = tmp_path / "bridge.toml"
    path.write_text(CONFIG)
    return path


def cli(cfg: Path, *args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "CAREBRIDGE_CONFIG"}
    return subprocess.run(
        [sys.executable, "-m", "bridge", "agent", *args, "-c", str(cfg)],
        input=stdin, capture_output=True, text=True, env=env, cwd=cfg.parent, timeout=60, check=False,
    )  # fmt: skip


async def open_configured(cfg: Path) -> Store:
    return await open_store(load_config(cfg).store, create_missing_key=False, must_exist=True)


async def test_add_prints_uri_and_qr_and_stores_only_ciphertext(cfg: Path) -> None:
    result = cli(cfg, "add", "alice", "--channel", "whatsapp:31612345678", "--email", "alice@example.org",
                 "--queue", "billing", "--queue", "vip", "--capacity", "3", "--role", "admin",
                 "--password-stdin", stdin="correct horse battery\n")  # fmt: skip
    assert result.returncode == 0, result.stderr
    uri = result.stdout.splitlines()[0]
    parsed = urllib.parse.urlparse(uri)
    assert parsed.scheme == "otpauth" and urllib.parse.unquote(parsed.path) == "/Care Desk:alice"
    secret = urllib.parse.parse_qs(parsed.query)["secret"][0]
    assert len(secret) == 32
    assert "█" in result.stdout  # the terminal QR code
    assert "Agent alice added (admin, whatsapp:+3161****78, queues billing, vip, capacity 3)" in result.stderr
    assert "31612345678" not in result.stderr

    store = await open_configured(cfg)
    try:
        alice = await store.read(lambda tx: tx.agents.get_by_name("alice"))
        assert alice is not None and alice.preferred.address == "+31612345678" and alice.queues == ("billing", "vip")
        assert await store.read(lambda tx: tx.agents.totp_secret(alice.id)) == secret
        stored_hash = await store.read(lambda tx: tx.agents.password_hash(alice.id))
        assert stored_hash is not None and passwords.check_password("correct horse battery", stored_hash)
        (entry,) = [e for e in await store.read(lambda tx: tx.audit.entries()) if e.action == "agent.add"]
        assert entry.subject == f"agent:{alice.id}" and entry.actor.startswith("cli")
    finally:
        await store.close()
    raw = db_bytes(cfg.parent / "var" / "carebridge.db")
    for plaintext in ("31612345678", "alice@example.org", secret, "correct horse battery"):
        assert plaintext.encode() not in raw, plaintext


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--channel", "whatsapp:12"), "carebridge: --channel: not an E.164 phone number: '12'"),
        (("--channel", "signal:55"), "carebridge: --channel: unknown channel 'signal'"),
        (("--channel", "whatsapp"), "carebridge: --channel: expected CHANNEL:ADDRESS"),
    ],
)
def test_add_refuses_a_bad_address_with_the_reason(cfg: Path, args: tuple[str, ...], message: str) -> None:
    result = cli(cfg, "add", "alice", *args, "--password-stdin", stdin="correct horse battery\n")
    assert result.returncode == 1
    assert result.stderr.startswith(message) and "otpauth" not in result.stdout


async def test_add_without_a_terminal_asks_for_password_stdin_instead_of_crashing(cfg: Path) -> None:
    result = cli(cfg, "add", "alice", "--channel", "console", stdin="")
    assert result.returncode == 1
    assert result.stderr.strip() == (
        "carebridge: no terminal to ask for the console password on: pass it with --password-stdin"
    )
    listing = cli(cfg, "list")
    assert "alice" not in listing.stdout


async def test_add_refuses_duplicates_and_short_passwords(cfg: Path) -> None:
    ok = cli(cfg, "add", "alice", "--channel", "messenger:1001", "--password-stdin", stdin="correct horse battery\n")
    assert ok.returncode == 0, ok.stderr
    good = "correct horse battery\n"
    cases = [
        (("bob", "--channel", "messenger:1001"), good, "messenger address already belongs to agent 'alice'"),
        (("alice", "--channel", "console"), good, "an agent named 'alice' already exists"),
        (("bob", "--channel", "console"), "short\n", "password too short"),
    ]
    for args, stdin, message in cases:
        result = cli(cfg, "add", *args, "--password-stdin", stdin=stdin)
        assert result.returncode == 1 and message in result.stderr, (args, result.stderr)
        assert "otpauth" not in result.stdout
    store = await open_configured(cfg)
    try:
        assert [a.name for a in await store.read(lambda tx: tx.agents.all())] == ["alice"]
    finally:
        await store.close()


async def test_list_set_channel_and_disable_while_the_store_is_in_use(cfg: Path) -> None:
    for name, channel in (("alice", "whatsapp:+31612345678"), ("bob", "messenger:1001")):
        result = cli(cfg, "add", name, "--channel", channel, "--password-stdin", stdin="correct horse battery\n")
        assert result.returncode == 0, result.stderr
    # The store stays open here, as the running daemon holds it, while the CLI changes agents.
    store = await open_configured(cfg)
    try:
        alice = await store.read(lambda tx: tx.agents.get_by_name("alice"))
        bob = await store.read(lambda tx: tx.agents.get_by_name("bob"))
        assert alice is not None and bob is not None
        now = store._clock()  # noqa: SLF001 - the store's own clock, so shifts line up

        def setup(tx: object) -> int:
            agents.start_shift(tx, alice.id, now, 3600.0)
            agents.start_shift(tx, bob.id, now, 3600.0)
            return make_conversation(tx, name="Jan", channel="whatsapp", address="+31600000001", agent_id=alice.id)

        conv = await store.write(setup)

        listing = cli(cfg, "list")
        assert listing.returncode == 0, listing.stderr
        assert listing.stdout.splitlines() == [
            "NAME   ROLE   CHANNEL               QUEUES   CAPACITY  ONLINE  DISABLED  IDENTITIES",
            "alice  agent  whatsapp:+3161****78  default  5         yes     no        whatsapp:+3161****78",
            "bob    agent  messenger:****        default  5         yes     no        messenger:****",
        ]

        moved = cli(cfg, "set-channel", "alice", "email:Alice@Example.org")
        assert moved.returncode == 0 and moved.stdout.strip() == (
            "alice now receives conversations on email:a***@example.org. The previous address is retired."
        )
        taken = cli(cfg, "set-channel", "alice", "messenger:1001")
        assert taken.returncode == 1 and "already belongs to agent 'bob'" in taken.stderr
        unknown = cli(cfg, "set-channel", "zed", "console")
        assert unknown.returncode == 1 and unknown.stderr.strip() == "carebridge: no agent named 'zed'"

        disabled = cli(cfg, "disable", "alice")
        assert disabled.returncode == 0, disabled.stderr
        assert "1 open conversation(s) went to colleagues" in disabled.stdout
        # The open store sees the CLI's changes at once.
        after = await store.read(lambda tx: tx.agents.get(alice.id))
        assert after is not None and after.disabled and after.preferred.channel == "email"
        assert not await store.read(lambda tx: agents.is_online(tx, alice.id, now + 1))
        assert (await store.read(lambda tx: tx.conversations.get(conv))).agent_id == bob.id
        handoff = await store.read(
            lambda tx: tx._session.conn.execute(
                "SELECT COUNT(*) FROM outbox WHERE recipient_kind = 'agent' AND recipient_id = ?", (bob.id,)
            ).fetchone()[0]
        )
        assert handoff >= 1
        actions = [e.action for e in await store.read(lambda tx: tx.audit.entries())]
        assert actions == ["agent.add", "agent.add", "agent.set_channel", "agent.disable"]
        again = cli(cfg, "disable", "alice")
        assert again.returncode == 0 and again.stdout.strip() == "alice was already disabled."
    finally:
        await store.close()


def test_list_before_any_store_exists_says_so(cfg: Path) -> None:
    result = cli(cfg, "list")
    assert result.returncode == 1
    assert result.stderr.strip() == f"carebridge: no store at {cfg.parent / 'var' / 'carebridge.db'}"
    assert not (cfg.parent / "var" / "carebridge.db").exists()


def test_add_refuses_a_bad_email_and_a_taken_name_before_asking_for_a_password(cfg: Path) -> None:
    bad = cli(cfg, "add", "alice", "--channel", "console", "--email", "alice-at-example", "--password-stdin",
              stdin="correct horse battery\n")  # fmt: skip
    assert bad.returncode == 1 and bad.stderr.strip() == "carebridge: --email: not an email address: 'alice-at-example'"
    assert (
        cli(cfg, "add", "alice", "--channel", "console", "--password-stdin", stdin="correct horse battery\n").returncode
        == 0
    )
    # No --password-stdin and nothing on stdin: a prompt would fail, but the name check comes first.
    taken = cli(cfg, "add", "alice", "--channel", "console")
    assert taken.returncode == 1 and taken.stderr.strip() == "carebridge: an agent named 'alice' already exists"


async def test_identities_listed_added_and_retired_while_the_store_is_in_use(cfg: Path) -> None:
    result = cli(cfg, "add", "alice", "--channel", "whatsapp:+31612345678", "--password-stdin",
                 stdin="correct horse battery\n")  # fmt: skip
    assert result.returncode == 0, result.stderr
    store = await open_configured(cfg)  # held open, as the running daemon does
    try:
        added = cli(cfg, "identity", "add", "alice", "email:Alice@Example.org")
        assert (added.returncode, added.stdout.strip()) == (0, "alice can now write from email:a***@example.org.")
        again = cli(cfg, "identity", "add", "alice", "email:alice@example.org")
        assert again.stdout.strip() == "email:a***@example.org already was alice's."
        listing = cli(cfg, "list")
        assert listing.stdout.splitlines()[1].endswith("whatsapp:+3161****78,email:a***@example.org")
        found = await store.read(lambda tx: agents.find_agent_by_identity(tx, "email", "alice@example.org"))
        assert found is not None and found.name == "alice"
        preferred = cli(cfg, "identity", "remove", "alice", "whatsapp:+31612345678")
        assert preferred.returncode == 1 and "where alice receives conversations" in preferred.stderr
        removed = cli(cfg, "identity", "remove", "alice", "email:alice@example.org")
        assert removed.returncode == 0, removed.stderr
        assert "retired" in removed.stdout
        assert await store.read(lambda tx: agents.find_agent_by_identity(tx, "email", "alice@example.org")) is None
        gone = cli(cfg, "identity", "remove", "alice", "email:alice@example.org")
        assert gone.returncode == 1 and "not an identity of alice" in gone.stderr
        actions = [e.action for e in await store.read(lambda tx: tx.audit.entries())]
        assert actions == ["agent.add", "agent.identity_add", "agent.identity_remove"]
    finally:
        await store.close()
