"""Strategies and the relayed-message format."""

from __future__ import annotations

from dataclasses import dataclass

from bridge.agents import Addresses
from bridge.plugins import make_plugin_manager
from bridge.relay import strategies
from bridge.relay.format import attachment_line, format_prefix, relay_text
from tests.core.agentkit import INSTALLED


@dataclass(frozen=True)
class FakeAgent:
    id: int


@dataclass(frozen=True)
class Cand:
    agent: FakeAgent
    open_conversations: int
    idle_since: float
    last_assigned_at: float | None = None


def test_least_busy_prefers_fewest_open_then_longest_idle() -> None:
    a = Cand(FakeAgent(1), 2, 100.0)
    b = Cand(FakeAgent(2), 1, 300.0)
    c = Cand(FakeAgent(3), 1, 200.0)
    assert strategies.least_busy([a, b, c]) is c
    assert strategies.least_busy([]) is None


def test_round_robin_rotates_by_last_assignment() -> None:
    a = Cand(FakeAgent(1), 0, 0.0, last_assigned_at=50.0)
    b = Cand(FakeAgent(2), 3, 0.0, last_assigned_at=10.0)
    c = Cand(FakeAgent(3), 0, 0.0, last_assigned_at=None)
    assert strategies.round_robin([a, b, c]) is c
    assert strategies.round_robin([a, b]) is b


def test_hook_answers_only_its_own_strategy_names() -> None:
    registry = make_plugin_manager(load_entry_points=False, plugins=[("core-routing", strategies)])
    cands = [Cand(FakeAgent(1), 1, 5.0, 9.0), Cand(FakeAgent(2), 0, 9.0, 10.0)]
    hook = registry.pm.hook.choose_agent
    assert hook(strategy="least_busy", conversation=None, candidates=cands) is cands[1]
    assert hook(strategy="round_robin", conversation=None, candidates=cands) is cands[0]
    assert hook(strategy="something_else", conversation=None, candidates=cands) is None


def test_core_routing_is_registered_through_the_entry_point() -> None:
    registry = make_plugin_manager()
    assert "core-routing" in registry.plugins
    assert registry.plugins["core-routing"].error is None


def test_prefix_and_attachment_lines() -> None:
    assert format_prefix(42, "Jan", "WhatsApp") == "[#42 Jan · WhatsApp]"
    assert format_prefix(7, None, "Messenger") == "[#7 Customer 7 · Messenger]"
    labels = Addresses(INSTALLED)  # each platform names itself (Channel.label)
    assert [labels.label(c) for c in ("whatsapp", "messenger", "email", "console", "acme")] == [
        "WhatsApp",
        "Messenger",
        "Email",
        "Console",
        "Acme",
    ]
    assert attachment_line("image", 9, "https://care.example/", {"caption": "broken"}) == (
        "[image] https://care.example/console/media/9 broken"
    )
    assert attachment_line("image", 9, "") == "[image] (open the console to view)"
    assert attachment_line("location", None, "", {"latitude": 52.1, "longitude": 4.3}) == "[location] 52.1,4.3"
    assert relay_text("[#1 A · Email]", "hi", ["[file] x"]) == "[#1 A · Email] hi\n[file] x"
