"""Agent commands through the relay's real ingest path, on a real encrypted store."""

from __future__ import annotations

from pathlib import Path

import pytest

from bridge import agents
from bridge.errors import PluginLoadError
from bridge.hookspecs import hookimpl
from bridge.plugins import make_plugin_manager
from bridge.relay.command_table import CommandTable, parse_command
from bridge.relay.commands import (
    CommandContext,
    CommandRefused,
    own_conversation,
)
from bridge.relay.context import SilentObserver
from tests.core.agentkit import Desk, db_bytes

ALICE = "whatsapp:+31612345678"
BOB = "messenger:1001"
JAN = "whatsapp:+31600000001"
PIET = "messenger:2002"


@pytest.fixture
async def desk(tmp_path: Path) -> Desk:  # type: ignore[misc]
    d = await Desk.open(tmp_path)
    yield d
    await d.close()


async def audit_actions(desk: Desk) -> list[str]:
    return [e.action for e in await desk.store.read(lambda tx: tx.audit.entries())]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("/login 123456", ("login", "123456")),
        ("  /LIST  ", ("list", "")),
        ("/note line one\nline two", ("note", "line one\nline two")),
        ("/note\nbody", ("note", "body")),
        ("/ list", None),
        ("hello", None),
        ("/", None),
    ],
)
def test_parse_command(text: str, expected: tuple[str, str] | None) -> None:
    assert parse_command(text) == expected


def test_email_commands_use_the_first_line_only() -> None:
    assert parse_command("/note call back\n> quoted mail", first_line_only=True) == ("note", "call back")


async def test_commands_before_login_are_refused_except_login_and_help(desk: Desk) -> None:
    await desk.add_agent("alice", ALICE)
    for command in ("/list", "/logout", "/switch 1", "/close", "/note hi", "/transfer bob", "/decline"):
        await desk.say("alice", command)
        assert await desk.sent_to("alice") == ["You are not logged in. Send /login CODE."], command
    await desk.say("alice", "/help")
    (help_text,) = await desk.sent_to("alice")
    assert "/login CODE" in help_text and "/transfer AGENT|QUEUE [note]" in help_text and "/decline" in help_text
    assert 'type it twice: //5 stars sends "/5 stars"' in help_text
    await desk.say("alice", "/frobnicate now")
    assert await desk.sent_to("alice") == ["Unknown command /frobnicate. Send /help."]


async def test_login_with_totp_starts_shift_and_delivers_waiting_conversations_oldest_first(desk: Desk) -> None:
    await desk.add_agent("alice", ALICE)
    first = await desk.customer(JAN, "Where is my parcel?", name="Jan")
    desk.clock.advance(5)
    second = await desk.customer(PIET, "Hallo, ik heb een vraag", name="Piet")
    assert (await desk.conversation(first)).status == "queued"
    await desk.sent_to("alice")
    texts = await desk.login("alice")
    assert texts[0] == "You are logged in for 8 hours. 2 waiting conversation(s) follow."
    assert texts[1] == f"[#{first} Jan · WhatsApp] Where is my parcel?"
    assert texts[2] == f"[#{second} Piet · Messenger] Hallo, ik heb een vraag"
    alice = await desk.agent("alice")
    assert await desk.store.read(lambda tx: agents.is_online(tx, alice.id, desk.clock.now))
    assert (await desk.conversation(first)).agent_id == alice.id
    assert "agent.login" in await audit_actions(desk)


async def test_login_refuses_wrong_malformed_and_replayed_codes(desk: Desk) -> None:
    alice = await desk.add_agent("alice", ALICE)
    counted: list[int] = []

    class Counting(SilentObserver):
        def login_refused(self) -> None:  # what feeds the login_failures metric
            counted.append(1)

    desk.rctx.observer = Counting()
    code = desk.code("alice")
    wrong = f"{(int(code) + 1) % 1_000_000:06d}"
    await desk.say("alice", f"/login {wrong}")
    assert "not valid" in (await desk.sent_to("alice"))[0]
    await desk.say("alice", "/login 12ab")
    assert (await desk.sent_to("alice"))[0].startswith("Send /login followed by the 6-digit code")
    assert not await desk.store.read(lambda tx: agents.is_online(tx, alice.id, desk.clock.now))
    await desk.say("alice", f"/login {code}")
    assert (await desk.sent_to("alice"))[0].startswith("You are logged in")
    await desk.say("alice", "/logout")
    await desk.sent_to("alice")
    await desk.say("alice", f"/login {code}")  # same code, same time step: a replay
    assert (await desk.sent_to("alice")) == [
        "That code was already used. Wait for the next code in your app, then send /login again."
    ]
    assert not await desk.store.read(lambda tx: agents.is_online(tx, alice.id, desk.clock.now))
    # An older code after a newer success is a replay too.
    desk.clock.advance(30)
    await desk.say("alice", f"/login {desk.code('alice', desk.clock.now - 30)}")
    assert "already used" in (await desk.sent_to("alice"))[0]
    await desk.say("alice", f"/login {desk.code('alice')}")
    assert (await desk.sent_to("alice"))[0].startswith("You are logged in")
    actions = await audit_actions(desk)
    assert actions.count("agent.login_failed") == 1 and actions.count("agent.login_replayed") == 2
    assert actions.count("agent.login") == 2
    assert len(counted) == 3, "every refused code is counted once, after its commit"


async def test_disabled_agent_gets_told_and_cannot_log_in(desk: Desk) -> None:
    alice = await desk.add_agent("alice", ALICE)
    await desk.store.write(lambda tx: agents.disable(tx, alice.id))
    await desk.say("alice", f"/login {desk.code('alice')}")
    assert await desk.sent_to("alice") == ["Your agent account is disabled. Ask an administrator."]


async def test_list_switch_and_replies_go_to_the_current_conversation(desk: Desk) -> None:
    await desk.add_agent("alice", ALICE)
    await desk.login("alice")
    jan = await desk.customer(JAN, "Hi", name="Jan")
    piet = await desk.customer(PIET, "Hoi", name="Piet")
    await desk.sent_to("alice")
    await desk.say("alice", "/list")
    (listing,) = await desk.sent_to("alice")
    assert listing.splitlines() == [
        "Your conversations:",
        f"#{piet} Piet · Messenger · assigned  ← current",
        f"#{jan} Jan · WhatsApp · assigned",
    ]
    await desk.say("alice", f"/switch #{jan}")
    assert await desk.sent_to("alice") == [f"Now answering [#{jan} Jan · WhatsApp]. Your messages go to this customer."]
    await desk.say("alice", "Your parcel arrives tomorrow.")
    to_jan = [d for d in await desk.deliveries() if d.recipient_kind == "contact" and d.conversation_id == jan]
    assert [d.text for d in to_jan] == ["Your parcel arrives tomorrow."] and to_jan[0].recipient == "+31600000001"
    await desk.say("alice", "/switch 999")
    assert await desk.sent_to("alice") == ["Conversation #999 is not one of yours. Send /list to see yours."]
    await desk.say("alice", "/switch soon")
    assert "followed by a conversation number" in (await desk.sent_to("alice"))[0]


async def test_note_is_stored_but_never_sent(desk: Desk, tmp_path: Path) -> None:
    await desk.add_agent("alice", ALICE)
    await desk.login("alice")
    jan = await desk.customer(JAN, "Hi", name="Jan")
    await desk.sent_to("alice")
    before = len(await desk.deliveries())
    await desk.say("alice", "/note Customer sounds upset about invoice 4471")
    assert await desk.sent_to("alice") == [f"Note added to [#{jan} Jan · WhatsApp]. The customer does not see it."]
    after = await desk.deliveries()
    assert len(after) == before + 1 and after[-1].recipient_kind == "agent"  # only the answer to alice
    messages = await desk.store.read(lambda tx: tx.messages.of_conversation(jan))
    notes = [m for m in messages if m.direction == "note"]
    assert [n.text for n in notes] == ["Customer sounds upset about invoice 4471"]
    await desk.say("alice", "/note")
    assert (await desk.sent_to("alice")) == ["Send /note followed by the text of the note."]
    await desk.close()  # idempotent: the fixture closes it again
    assert b"invoice 4471" not in db_bytes(tmp_path / "var" / "carebridge.db")


async def test_close_tells_the_customer_and_clears_current(desk: Desk) -> None:
    await desk.add_agent("alice", ALICE)
    await desk.login("alice")
    jan = await desk.customer(JAN, "Thanks, that was all", name="Jan")
    await desk.sent_to("alice")
    await desk.say("alice", "/close")
    assert await desk.sent_to("alice") == [f"Closed [#{jan} Jan · WhatsApp]."]
    conv = await desk.conversation(jan)
    assert conv.status == "closed" and conv.closed_at is not None
    last = (await desk.deliveries())[-2]
    assert last.recipient_kind == "contact" and last.text.startswith("This conversation is now closed.")
    assert (await desk.agent("alice")).current_conversation_id is None
    await desk.say("alice", "/close")
    assert await desk.sent_to("alice") == ["You have no current conversation. Send /list, then /switch ID."]
    events = await desk.store.read(
        lambda tx: tx._session.conn.execute("SELECT kind FROM events WHERE conversation_id = ?", (jan,)).fetchall()
    )
    assert ("closed",) in [tuple(e) for e in events]


async def test_logout_requeues_open_conversations_to_another_online_agent(desk: Desk) -> None:
    await desk.add_agent("alice", ALICE)
    await desk.login("alice")
    jan = await desk.customer(JAN, "Hello?", name="Jan")
    await desk.add_agent("bob", BOB)
    await desk.login("bob")
    await desk.sent_to("alice")
    await desk.sent_to("bob")
    await desk.say("alice", "/logout")
    assert await desk.sent_to("alice") == ["You are logged out. 1 conversation(s) went back to the queue."]
    bob = await desk.agent("bob")
    assert (await desk.conversation(jan)).agent_id == bob.id
    texts = await desk.sent_to("bob")
    assert texts == [f"[#{jan} Jan · WhatsApp] Handed over to you.\nLast 1 message(s):\nJan: Hello?"]
    await desk.say("alice", "/list")
    assert await desk.sent_to("alice") == ["You are not logged in. Send /login CODE."]


async def test_plugin_commands_plug_into_the_table(tmp_path: Path) -> None:
    class CallbackPlugin:
        @hookimpl
        def register_commands(self, register: object) -> None:
            def callback(ctx: CommandContext, args: str) -> str:
                return f"callback for {ctx.agent.name}: {len(args)} chars"

            register("callback", callback, "/callback TEXT — ask for a call back")  # type: ignore[operator]

    desk = await Desk.open(tmp_path, pm_plugins=(("callback", CallbackPlugin()),))
    try:
        await desk.add_agent("alice", ALICE)
        await desk.say("alice", "/callback 12345")
        assert await desk.sent_to("alice") == ["You are not logged in. Send /login CODE."]
        await desk.login("alice")
        await desk.say("alice", "/callback 12345")
        assert await desk.sent_to("alice") == ["callback for alice: 5 chars"]
        await desk.say("alice", "/help")
        assert "/callback TEXT — ask for a call back" in (await desk.sent_to("alice"))[0]
    finally:
        await desk.close()


def test_duplicate_or_malformed_plugin_commands_are_refused() -> None:
    class Clash:
        @hookimpl
        def register_commands(self, register: object) -> None:
            register("login", lambda ctx, args: None, "mine")  # type: ignore[operator]

    registry = make_plugin_manager(load_entry_points=False, plugins=[("clash", Clash())])
    with pytest.raises(PluginLoadError, match="'clash' registers command /login, which 'core-commands' already has"):
        CommandTable.build(registry.hooks)
    table = CommandTable()
    with pytest.raises(PluginLoadError, match="use lower-case letters"):
        table.register("Bad Name", lambda ctx, args: None, "")
    with pytest.raises(PluginLoadError, match="callable"):
        table.register("x", "nope", "")  # type: ignore[arg-type]


async def test_a_refused_command_keeps_nothing_it_did(tmp_path: Path) -> None:
    """A handler that changes things and then refuses leaves no trace but its answer."""

    class Careless:
        @hookimpl
        def register_commands(self, register: object) -> None:
            def tag(ctx: CommandContext, args: str) -> str:
                conv = own_conversation(ctx, None)
                ctx.tx.messages.insert(conv.id, direction="note", channel="whatsapp", text=args, agent_id=ctx.agent.id)
                ctx.tx.agents.set_current_conversation(ctx.agent.id, None)
                raise CommandRefused(f"cannot tag with {args!r}")

            register("tag", tag, "/tag WORD")  # type: ignore[operator]

    desk = await Desk.open(tmp_path, pm_plugins=(("careless", Careless()),))
    try:
        await desk.add_agent("alice", ALICE)
        await desk.login("alice")
        jan = await desk.customer(JAN, "Hi", name="Jan")
        await desk.sent_to("alice")
        await desk.say("alice", "/tag urgent")
        assert await desk.sent_to("alice") == ["cannot tag with 'urgent'"]
        assert (await desk.agent("alice")).current_conversation_id == jan
        messages = await desk.store.read(lambda tx: tx.messages.of_conversation(jan))
        assert [m.direction for m in messages] == ["in"]
        # The agent's message itself was still recorded (dedupe row), so a re-delivery is dropped.
        (seen,) = await desk.store.read(
            lambda tx: tx._session.conn.execute("SELECT COUNT(*) FROM agent_inbound").fetchone()
        )
        assert seen >= 2
    finally:
        await desk.close()


async def test_transfer_to_nobody_is_refused_and_changes_nothing(desk: Desk) -> None:
    await desk.add_agent("alice", ALICE)
    await desk.login("alice")
    jan = await desk.customer(JAN, "Hi", name="Jan")
    await desk.sent_to("alice")
    await desk.say("alice", "/transfer nobody-here")
    (answer,) = await desk.sent_to("alice")
    assert "no agent or queue named 'nobody-here'" in answer
    alice = await desk.agent("alice")
    assert alice.current_conversation_id == jan and (await desk.conversation(jan)).agent_id == alice.id


async def test_repeated_wrong_codes_lock_the_account_for_the_lockout_time(desk: Desk) -> None:
    alice = await desk.add_agent("alice", ALICE)
    wrong = f"{(int(desk.code('alice')) + 500_000) % 1_000_000:06d}"
    for _ in range(5):  # [security] login_max_attempts = 5
        await desk.say("alice", f"/login {wrong}")
        desk.clock.advance(1)
    assert all("not valid" in t for t in await desk.sent_to("alice"))
    await desk.say("alice", f"/login {desk.code('alice')}")
    assert await desk.sent_to("alice") == ["Too many failed logins. Try again in 15 minutes."]
    assert not await desk.store.read(lambda tx: agents.is_online(tx, alice.id, desk.clock.now))
    desk.clock.advance(15 * 60)
    await desk.say("alice", f"/login {desk.code('alice')}")
    assert (await desk.sent_to("alice"))[0].startswith("You are logged in")
    # A success resets the count: one more mistake does not lock again.
    await desk.say("alice", f"/login {wrong}")
    desk.clock.advance(30)
    await desk.say("alice", f"/login {desk.code('alice')}")
    assert (await desk.sent_to("alice"))[-1].startswith("You are logged in")
    actions = await audit_actions(desk)
    assert actions.count("agent.login_failed") == 6 and actions.count("agent.login_locked") == 1


async def test_close_after_the_customer_window_closed_sends_no_notice(tmp_path: Path) -> None:
    desk = await Desk.open(tmp_path)
    desk.rctx.windows = {"whatsapp": 24 * 3600.0}
    try:
        await desk.add_agent("alice", ALICE)
        await desk.login("alice")
        jan = await desk.customer(JAN, "Hi", name="Jan")
        desk.clock.advance(25 * 3600)
        await desk.login("alice")  # the shift had expired too
        await desk.say("alice", f"/switch {jan}")
        await desk.say("alice", "/close")
        assert (await desk.sent_to("alice"))[-1] == f"Closed [#{jan} Jan · WhatsApp]."
        assert (await desk.conversation(jan)).status == "closed"
        assert [d for d in await desk.deliveries() if d.recipient_kind == "contact" and "closed" in d.text] == []
    finally:
        await desk.close()


async def test_login_at_capacity_says_how_many_wait_and_takes_only_what_fits(desk: Desk) -> None:
    await desk.add_agent("alice", ALICE, capacity=2)
    convs = [await desk.customer(f"whatsapp:+3160000000{i}", f"Question {i}", name=f"C{i}") for i in range(1, 4)]
    texts = await desk.login("alice")
    assert texts[0] == (
        "You are logged in for 8 hours. 3 conversation(s) are waiting; you have room for 2 (capacity 2),"
        " so the oldest of them follow."
    )
    assert [t.split("]")[0] + "]" for t in texts[1:]] == [
        f"[#{convs[0]} C1 · WhatsApp]",
        f"[#{convs[1]} C2 · WhatsApp]",
    ]
    assert (await desk.conversation(convs[2])).status == "queued"
    await desk.say("alice", "/list")
    assert (await desk.sent_to("alice"))[0].endswith("\n1 conversation(s) waiting in your queues.")
    await desk.say("alice", f"/login {desk.code('alice')}")  # a new code extends the shift
    assert (await desk.sent_to("alice")) == [
        "You are logged in for 8 hours. 1 conversation(s) are waiting, but you already have 2 open, your maximum."
    ]


async def test_a_double_slash_sends_the_customer_a_text_starting_with_one_slash(desk: Desk) -> None:
    await desk.add_agent("alice", ALICE)
    await desk.login("alice")
    jan = await desk.customer(JAN, "How do I rate you?", name="Jan")
    await desk.sent_to("alice")
    await desk.say("alice", "//5 stars, or /stop to unsubscribe")
    await desk.say("alice", "  //help")
    assert await desk.sent_to("alice") == []  # no command ran, no "Unknown command"
    to_jan = [d.text for d in await desk.deliveries() if d.recipient_kind == "contact" and d.conversation_id == jan]
    assert to_jan[-2:] == ["/5 stars, or /stop to unsubscribe", "/help"]
    # Before login, an escaped text is a reply like any other: refused, never sent.
    await desk.say("alice", "/logout")
    await desk.sent_to("alice")
    await desk.say("alice", "//still here")
    assert await desk.sent_to("alice") == ["You are not logged in. Send /login CODE."]
