"""Relay core over a real store and real in-process channels: ingest, routing, replies, windows."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from bridge import hookimpl
from bridge.errors import ConfigError
from bridge.models import Attachment, Finding, InboundMessage, StatusUpdate
from tests.e2e.harness import add_agent, login, make_bridge, outbox_rows, wait_for

FAST = '[delivery]\nretry_base = "10ms"\nretry_max = "40ms"\nmax_attempts = 3\n'


async def test_customer_message_reaches_online_agent_with_prefix_and_reply_returns(tmp_path: Path) -> None:
    bridge = await make_bridge(tmp_path, FAST)
    try:
        mem, second = bridge.channels["memory"], bridge.channels["second"]
        _agent, secret = await add_agent(bridge, "alice", "second:alice-psid")
        await login(bridge, "second", "alice-psid", secret)
        await mem.inbound("cust-1", "Hello, my order is late", sender_name="Jan")
        await wait_for(lambda: "[#1 Jan · Memory] Hello, my order is late" in second.texts_to("alice-psid"))
        await second.inbound("alice-psid", "We are on it!")
        await wait_for(lambda: mem.texts_to("cust-1") == ["We are on it!"], what="reply")
        assert bridge.metrics.messages_stored.labels(channel="memory", direction="in")._value.get() == 1
        assert bridge.metrics.messages_stored.labels(channel="memory", direction="out")._value.get() == 1
        conv = await bridge.store.read(lambda tx: tx.conversations.get(1))
        assert conv.status == "assigned" and conv.queue == "default"
    finally:
        await bridge.close()


async def test_duplicates_are_stored_once_and_relayed_once(tmp_path: Path) -> None:
    bridge = await make_bridge(tmp_path, FAST)
    try:
        mem, second = bridge.channels["memory"], bridge.channels["second"]
        _agent, secret = await add_agent(bridge, "alice", "second:alice")
        await login(bridge, "second", "alice", secret)
        await mem.inbound("cust", "same", external_id="wamid.1")
        await mem.inbound("cust", "same", external_id="wamid.1")
        await second.inbound("alice", "answer", external_id="agent.1")
        await second.inbound("alice", "answer", external_id="agent.1")
        await wait_for(lambda: mem.texts_to("cust") == ["answer"])
        count = await bridge.store.read(
            lambda tx: tx._session.conn.execute("SELECT COUNT(*) FROM messages").fetchone()[0]
        )
        assert count == 2
        assert sum("same" in t for t in second.texts_to("alice")) == 1
    finally:
        await bridge.close()


async def test_nobody_online_queues_with_one_notice_then_login_assigns_oldest_first(tmp_path: Path) -> None:
    bridge = await make_bridge(tmp_path, FAST)
    try:
        mem, second = bridge.channels["memory"], bridge.channels["second"]
        await mem.inbound("early", "first customer", sender_name="Ann")
        await mem.inbound("early", "still waiting")
        await mem.inbound("late", "second customer")
        await wait_for(lambda: len(mem.sent) == 2, what="two notices")
        assert len(mem.texts_to("early")) == 1 and "busy" in mem.texts_to("early")[0]
        _agent, secret = await add_agent(bridge, "bob", "second:bob")
        await login(bridge, "second", "bob", secret)
        await wait_for(lambda: len([t for t in second.texts_to("bob") if t.startswith("[#")]) == 3)
        relayed = [t for t in second.texts_to("bob") if t.startswith("[#")]
        assert relayed == [
            "[#1 Ann · Memory] first customer",
            "[#1 Ann · Memory] still waiting",
            "[#2 Customer 2 · Memory] second customer",
        ]
        status = await bridge.store.read(
            lambda tx: tx._session.conn.execute("SELECT status FROM messages WHERE direction='system'").fetchall()
        )
        assert [s[0] for s in status] == ["sent", "sent"]
    finally:
        await bridge.close()


async def test_not_logged_in_agent_gets_told_and_nothing_is_relayed(tmp_path: Path) -> None:
    bridge = await make_bridge(tmp_path, FAST)
    try:
        mem, second = bridge.channels["memory"], bridge.channels["second"]
        await add_agent(bridge, "alice", "second:alice")
        await mem.inbound("cust", "hello")
        await second.inbound("alice", "can I answer?")
        await wait_for(lambda: "You are not logged in. Send /login CODE." in second.texts_to("alice"))
        assert not any("hello" in t for t in second.texts_to("alice"))
        convs = await bridge.store.read(
            lambda tx: tx._session.conn.execute("SELECT COUNT(*) FROM conversations").fetchone()[0]
        )
        assert convs == 1  # agent traffic never opens a customer conversation
    finally:
        await bridge.close()


async def test_reply_context_beats_current_conversation_and_ambiguity_is_asked(tmp_path: Path) -> None:
    bridge = await make_bridge(tmp_path, FAST)
    try:
        mem, second = bridge.channels["memory"], bridge.channels["second"]
        agent, secret = await add_agent(bridge, "alice", "second:alice")
        await login(bridge, "second", "alice", secret)
        await mem.inbound("c1", "from one", external_id="c1-m1")
        await wait_for(lambda: any("from one" in t for t in second.texts_to("alice")))
        await mem.inbound("c2", "from two")
        await wait_for(lambda: any("from two" in t for t in second.texts_to("alice")))
        quoted = next(m for m in second.sent if "from one" in m.text)
        external = second.receipts[quoted.delivery_id]
        await second.inbound("alice", "answer to one", reply_to=external)
        await second.inbound("alice", "answer to current")
        await wait_for(lambda: mem.texts_to("c1") == ["answer to one"] and mem.texts_to("c2") == ["answer to current"])
        # the quoted reply answers the customer's own message in thread
        assert [m.reply_to for m in mem.sent if m.recipient == "c1"] == ["c1-m1"]
        # with no current conversation the agent is asked, never guessed for
        await bridge.store.write(lambda tx: tx.agents.set_current_conversation(agent.id, None))
        await second.inbound("alice", "to whom?")
        await wait_for(lambda: any(t.startswith("Which conversation") for t in second.texts_to("alice")))
        assert "#1" in next(t for t in second.texts_to("alice") if t.startswith("Which"))
        assert len(mem.texts_to("c1")) == 1 and len(mem.texts_to("c2")) == 1
    finally:
        await bridge.close()


async def test_echo_is_stored_as_outbound_and_not_relayed(tmp_path: Path) -> None:
    bridge = await make_bridge(tmp_path, FAST)
    try:
        mem, second = bridge.channels["memory"], bridge.channels["second"]
        _agent, secret = await add_agent(bridge, "alice", "second:alice")
        await login(bridge, "second", "alice", secret)
        await mem.inbound("cust", "question")
        await mem.inbound("cust", "answered from the page inbox", echo=True)
        await wait_for(lambda: any("question" in t for t in second.texts_to("alice")))
        rows = await bridge.store.read(
            lambda tx: tx._session.conn.execute("SELECT direction FROM messages ORDER BY id").fetchall()
        )
        assert [r[0] for r in rows] == ["in", "out"]
        assert not any("page inbox" in t for t in second.texts_to("alice"))
    finally:
        await bridge.close()


async def test_attachments_are_recorded_and_linked_for_the_agent(tmp_path: Path) -> None:
    bridge = await make_bridge(tmp_path, FAST)
    try:
        mem, second = bridge.channels["memory"], bridge.channels["second"]
        _agent, secret = await add_agent(bridge, "alice", "second:alice")
        await login(bridge, "second", "alice", secret)
        att = Attachment(kind="image", media_id="m-1", mime="image/jpeg", meta={"caption": "broken lid"})
        ext = await mem.inbound("cust", "", attachments=(att,))
        await wait_for(lambda: any("[image]" in t for t in second.texts_to("alice")))
        assert any(t.endswith("[image] broken lid") for t in second.texts_to("alice"))
        await bridge.relay.save_media("memory", ext, 0, b"\xff\xd8jpeg-bytes", "image/jpeg")
        data = await bridge.store.read(lambda tx: tx.attachments.read(1))
        assert data == b"\xff\xd8jpeg-bytes"
    finally:
        await bridge.close()


class _Detector:
    @hookimpl
    def detect_sensitive(self, text: str) -> list[Finding]:
        index = text.find("NL91ABNA")
        return [Finding("iban", index, index + 18)] if index >= 0 else []


async def test_sensitive_messages_are_flagged(tmp_path: Path) -> None:
    bridge = await make_bridge(tmp_path, FAST, plugins=[("detector", _Detector())])
    try:
        mem = bridge.channels["memory"]
        await mem.inbound("cust", "my IBAN is NL91ABNA0417164300")
        await mem.inbound("cust", "thanks")
        flags = await bridge.store.read(
            lambda tx: tx._session.conn.execute(
                "SELECT sensitive FROM messages WHERE direction='in' ORDER BY id"
            ).fetchall()
        )
        assert [f[0] for f in flags] == [1, 0]
    finally:
        await bridge.close()


async def test_rules_pick_the_queue_and_only_its_agents_get_it(tmp_path: Path) -> None:
    rules = tmp_path / "routing.yaml"
    rules.write_text("queues: [billing]\nrules:\n  - queue: billing\n    keywords: [invoice]\n", encoding="utf-8")
    bridge = await make_bridge(tmp_path, FAST + f'[routing]\nrules_file = "{rules}"\n')
    try:
        mem, second = bridge.channels["memory"], bridge.channels["second"]
        _a, sa = await add_agent(bridge, "general", "second:general")
        _b, sb = await add_agent(bridge, "biller", "second:biller", queues=["billing"])
        await login(bridge, "second", "general", sa)
        await login(bridge, "second", "biller", sb)
        await mem.inbound("c1", "Where is my invoice?")
        await mem.inbound("c2", "Hello")
        await wait_for(
            lambda: (
                any("invoice" in t for t in second.texts_to("biller"))
                and any("Hello" in t for t in second.texts_to("general"))
            )
        )
        assert not any("invoice" in t for t in second.texts_to("general"))
    finally:
        await bridge.close()


async def test_round_robin_rotates_across_agents(tmp_path: Path) -> None:
    bridge = await make_bridge(tmp_path, FAST + '[routing]\nstrategy = "round_robin"\n')
    try:
        mem, second = bridge.channels["memory"], bridge.channels["second"]
        for name in ("a1", "a2"):
            _agent, secret = await add_agent(bridge, name, f"second:{name}")
            await login(bridge, "second", name, secret)
        for n in range(4):
            await mem.inbound(f"c{n}", f"customer {n}")
        await wait_for(lambda: len([m for m in second.sent if m.text.startswith("[#")]) == 4)
        owners = await bridge.store.read(
            lambda tx: tx._session.conn.execute("SELECT agent_id FROM conversations ORDER BY id").fetchall()
        )
        assert [o[0] for o in owners] == [1, 2, 1, 2]
    finally:
        await bridge.close()


async def test_delivered_and_read_reports_move_the_message_status(tmp_path: Path) -> None:
    bridge = await make_bridge(tmp_path, FAST)
    try:
        mem, second = bridge.channels["memory"], bridge.channels["second"]
        _agent, secret = await add_agent(bridge, "alice", "second:alice")
        await login(bridge, "second", "alice", secret)
        await mem.inbound("cust", "hi")
        await second.inbound("alice", "one")
        await second.inbound("alice", "two")
        await wait_for(lambda: len(mem.texts_to("cust")) == 2)
        first = mem.receipts[mem.sent[0].delivery_id]
        await bridge.relay.update_status("memory", [StatusUpdate("memory", "read", time.time(), external_id=first)])
        await bridge.relay.update_status(
            "memory", [StatusUpdate("memory", "delivered", time.time(), recipient="cust", watermark=time.time() + 5)]
        )
        statuses = await bridge.store.read(
            lambda tx: tx._session.conn.execute(
                "SELECT status FROM messages WHERE direction='out' ORDER BY id"
            ).fetchall()
        )
        assert [s[0] for s in statuses] == ["read", "delivered"]  # read is never moved back
    finally:
        await bridge.close()


async def test_health_reports_outbox_depth(tmp_path: Path) -> None:
    bridge = await make_bridge(tmp_path, FAST)
    try:
        await bridge.channels["memory"].inbound("cust", "hello")  # queued notice goes out
        await wait_for(lambda: bridge.relay.health()["depth"] == 0 and len(bridge.channels["memory"].sent) == 1)
        health = bridge.relay.health()
        assert health["running"] is True and health["paused_channels"] == {}
        rows = await outbox_rows(bridge)
        assert [r[3] for r in rows] == ["sent"]
    finally:
        await bridge.close()


async def test_failed_status_reaches_the_agent_and_customer_gets_read_marks(tmp_path: Path) -> None:
    bridge = await make_bridge(tmp_path, FAST)
    try:
        mem, second = bridge.channels["memory"], bridge.channels["second"]
        _agent, secret = await add_agent(bridge, "alice", "second:alice")
        await login(bridge, "second", "alice", secret)
        ext = await mem.inbound("cust", "hi", sender_name="Jan")
        await wait_for(lambda: mem.read_marks == [("cust", ext)], what="read mark once the agent has it")
        await second.inbound("alice", "accepted, then undeliverable")
        await wait_for(lambda: len(mem.sent) == 1)
        external = mem.receipts[mem.sent[0].delivery_id]
        failed = StatusUpdate("memory", "failed", time.time(), external_id=external, error_code="131026",
                              error_title="Message undeliverable")  # fmt: skip
        await bridge.relay.update_status("memory", [failed])
        await wait_for(lambda: any("Message undeliverable (code 131026)" in t for t in second.texts_to("alice")))
        status = await bridge.store.read(
            lambda tx: tx._session.conn.execute("SELECT status FROM messages WHERE direction='out'").fetchone()[0]
        )
        assert status == "failed"
    finally:
        await bridge.close()


async def test_platform_echo_of_our_own_send_is_not_stored_again(tmp_path: Path) -> None:
    bridge = await make_bridge(tmp_path, FAST)
    try:
        mem, second = bridge.channels["memory"], bridge.channels["second"]
        _agent, secret = await add_agent(bridge, "alice", "second:alice")
        await login(bridge, "second", "alice", secret)
        await mem.inbound("cust", "hi")
        await second.inbound("alice", "our reply")
        await wait_for(lambda: len(mem.sent) == 1)

        async def recorded() -> bool:
            return [r[3] for r in await outbox_rows(bridge) if r[2] == "contact"] == ["sent"]

        await wait_for(recorded, what="the send's platform id committed")  # the echo comes after it here
        echo_id = mem.receipts[mem.sent[0].delivery_id]
        await mem.inbound("cust", "our reply", echo=True, external_id=echo_id)
        rows = await bridge.store.read(
            lambda tx: tx._session.conn.execute("SELECT direction FROM messages ORDER BY id").fetchall()
        )
        assert [r[0] for r in rows] == ["in", "out"]
    finally:
        await bridge.close()


async def test_reload_with_a_bad_rules_file_keeps_the_running_rules(tmp_path: Path) -> None:
    rules = tmp_path / "routing.yaml"
    rules.write_text("queues: [vip]\nrules:\n  - {queue: vip, keywords: [gold]}\n", encoding="utf-8")
    bridge = await make_bridge(tmp_path, FAST + f'[routing]\nrules_file = "{rules}"\n')
    try:
        rules.write_text("rules:\n  - queue: nowhere\n", encoding="utf-8")
        with pytest.raises(ConfigError, match=f"{rules}:2: queue 'nowhere' is not listed"):
            await bridge.relay.reload(bridge.config)
        await bridge.channels["memory"].inbound("cust", "gold member here")
        queue = await bridge.store.read(lambda tx: tx.conversations.get(1).queue)
        assert queue == "vip"
    finally:
        await bridge.close()


async def test_periodic_checks_forget_old_agent_dedupe_rows(tmp_path: Path) -> None:
    bridge = await make_bridge(tmp_path, FAST)
    try:
        second = bridge.channels["second"]
        await add_agent(bridge, "alice", "second:alice")
        await second.inbound("alice", "/help", external_id="recent")
        await bridge.store.write(
            lambda tx: tx._session.conn.execute(
                "INSERT INTO agent_inbound (channel, external_index, created_at) VALUES ('second', x'00', 1.0)"
            )
        )
        assert await bridge.relay.run_checks() == 0
        rows = await bridge.store.read(
            lambda tx: tx._session.conn.execute("SELECT created_at FROM agent_inbound").fetchall()
        )
        assert len(rows) == 1 and rows[0][0] > 1.0  # the recent one stays, the old one is gone
    finally:
        await bridge.close()


async def test_queued_notice_speaks_the_detected_or_default_language(tmp_path: Path) -> None:
    rules = tmp_path / "routing.yaml"
    rules.write_text("default_language: de\nlanguage_hints:\n  nl: [goedemorgen]\n", encoding="utf-8")
    bridge = await make_bridge(tmp_path, FAST + f'[routing]\nrules_file = "{rules}"\n')
    try:
        mem = bridge.channels["memory"]
        await mem.inbound("dutch", "Goedemorgen, een vraag")
        await mem.inbound("unknown", "???")
        await wait_for(lambda: len(mem.sent) == 2)
        assert "bezet" in mem.texts_to("dutch")[0]
        assert "beschäftigt" in mem.texts_to("unknown")[0]
        languages = await bridge.store.read(
            lambda tx: tx._session.conn.execute("SELECT language FROM conversations ORDER BY id").fetchall()
        )
        assert [row[0] for row in languages] == ["nl", "de"]
    finally:
        await bridge.close()


class _BrokenStrategy:
    @hookimpl(tryfirst=True)
    def choose_agent(self, strategy: str, conversation: object, candidates: list[object]) -> object:
        if strategy == "broken":
            raise RuntimeError("bug in a third-party strategy")
        return None


async def test_a_failing_strategy_plugin_leaves_the_conversation_waiting_not_the_webhook_failing(
    tmp_path: Path,
) -> None:
    extra = FAST + '[routing]\nstrategy = "broken"\n'
    bridge = await make_bridge(tmp_path, extra, plugins=[("broken-strategy", _BrokenStrategy())])
    try:
        mem, second = bridge.channels["memory"], bridge.channels["second"]
        _agent, secret = await add_agent(bridge, "alice", "second:alice")
        await login(bridge, "second", "alice", secret)
        await mem.inbound("cust", "hello")  # stored and acknowledged despite the plugin
        await wait_for(lambda: len(mem.texts_to("cust")) == 1, what="queued notice")
        status = await bridge.store.read(lambda tx: tx.conversations.get(1).status)
        assert status == "queued"
        assert not any("hello" in t for t in second.texts_to("alice"))
    finally:
        await bridge.close()


class _SlowObserver:
    def __init__(self) -> None:
        self.release = asyncio.Event()
        self.seen: list[tuple[str, int]] = []

    @hookimpl
    async def message_received(self, bridge: object, message: InboundMessage, conversation_id: int) -> None:
        await self.release.wait()
        self.seen.append((message.text, conversation_id))


async def test_message_received_observers_run_after_the_webhook_is_answered(tmp_path: Path) -> None:
    observer = _SlowObserver()
    bridge = await make_bridge(tmp_path, FAST, plugins=[("observer", observer)])
    try:
        await asyncio.wait_for(bridge.channels["memory"].inbound("cust", "hello"), timeout=5)  # not held up
        assert observer.seen == []
        observer.release.set()
        await wait_for(lambda: observer.seen == [("hello", 1)], what="observer ran")
    finally:
        await bridge.close()


async def test_agent_copies_carry_thread_meta_and_a_reply_token_picks_the_conversation(tmp_path: Path) -> None:
    bridge = await make_bridge(tmp_path, FAST)
    try:
        mem, second = bridge.channels["memory"], bridge.channels["second"]
        _agent, secret = await add_agent(bridge, "alice", "second:alice")
        await login(bridge, "second", "alice", secret)
        await mem.inbound("jan", "first customer", sender_name="Jan")
        await mem.inbound("eva", "second customer", sender_name="Eva")
        await wait_for(lambda: sum(t.startswith("[#") for t in second.texts_to("alice")) == 2)
        relayed = [m for m in second.sent if m.recipient == "alice" and m.text.startswith("[#")]
        assert [m.meta["subject"] for m in relayed] == ["[#1 Jan · Memory]", "[#2 Eva · Memory]"]
        tokens = [m.meta["reply_token"] for m in relayed]
        assert len(set(tokens)) == 2 and all(len(t) >= 20 for t in tokens), "opaque, one per conversation"
        # Eva's conversation is the current one; the token names Jan's.
        await second.inbound("alice", "for Jan", meta={"reply_token": tokens[0]})
        await second.inbound("alice", "for Eva")
        await wait_for(lambda: mem.texts_to("jan") == ["for Jan"] and mem.texts_to("eva") == ["for Eva"])
    finally:
        await bridge.close()


async def test_a_login_from_an_unknown_address_is_relayed_to_nobody_and_stored_nowhere(tmp_path: Path) -> None:
    bridge = await make_bridge(tmp_path, FAST)
    try:
        mem, second = bridge.channels["memory"], bridge.channels["second"]
        _agent, secret = await add_agent(bridge, "alice", "second:alice")
        await login(bridge, "second", "alice", secret)
        # Someone who believes they are an agent writes from an address that is no agent's.
        await mem.inbound("stranger", "/login 123456", external_id="m.login")
        await mem.inbound("stranger", "/login 123456", external_id="m.login")  # a platform's re-delivery
        await wait_for(lambda: mem.texts_to("stranger") != [], what="the answer")
        assert mem.texts_to("stranger")[0].startswith("That code is not valid.")
        assert not any("123456" in t for t in second.texts_to("alice")), "a code is never relayed to an agent"
        stored = await bridge.store.read(
            lambda tx: tx._session.conn.execute("SELECT COUNT(*) FROM messages").fetchone()[0]
        )
        assert stored == 0, "neither the code nor a conversation was stored"
        rows = [r for r in await outbox_rows(bridge) if r[2] == "contact"]
        assert len(rows) == 1, "a re-delivery is answered once (both deliveries were committed before this read)"
    finally:
        await bridge.close()
