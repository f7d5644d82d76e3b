"""The edge's bookkeeping (bridge.web.edge) and the documented reverse-proxy example."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from bridge.web.edge import BodyBudget, ConnectionGate, client_key

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(
    ("address", "key"),
    [
        ("203.0.113.7", "203.0.113.7"),
        ("::ffff:203.0.113.7", "203.0.113.7"),
        ("2001:db8:1:2:aaaa::1", "2001:db8:1:2::/64"),
        ("2001:db8:1:2:bbbb::9", "2001:db8:1:2::/64"),
        ("fe80::1%eth0", "fe80::/64"),
        (None, ""),
        ("not-an-ip", "not-an-ip"),
    ],
)
def test_clients_are_counted_by_address_and_ipv6_by_its_64(address: str | None, key: str) -> None:
    assert client_key(address) == key


def test_the_connection_gate_counts_per_address_and_forgets_closed_ones() -> None:
    gate = ConnectionGate(2)
    assert gate.admit("a") and gate.admit("a") and not gate.admit("a")
    assert gate.admit("b"), "another address has its own count"
    gate.release("a")
    assert gate.admit("a")
    for key in ("a", "a", "b"):
        gate.release(key)
    assert gate.open == {}, "no entry stays behind for an address that left"


def test_a_gate_without_limit_admits_everyone() -> None:
    gate = ConnectionGate(0)
    assert all(gate.admit("a") for _ in range(1000)) and gate.open == {"a": 1000}


def test_the_body_budget_refuses_per_address_then_in_total_and_gives_back() -> None:
    budget = BodyBudget(total=100, per_address=60)
    assert budget.reserve("a", 60) is None
    refused = budget.reserve("a", 1)
    assert refused is not None and refused.status == 429
    assert budget.reserve("b", 40) is None
    refused = budget.reserve("c", 1)
    assert refused is not None and refused.status == 503 and refused.headers["Retry-After"] == "1"
    budget.release("a", 60)
    assert budget.reserve("c", 50) is None
    budget.release("b", 40)
    budget.release("c", 50)
    assert (budget.total, budget.by_address) == (0, {})


def _nginx_example() -> str:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    match = re.search(r"```nginx\n(.*?)```", readme, re.DOTALL)
    assert match, "README.md shows an nginx example"
    return match.group(1)


def test_the_reverse_proxy_example_forwards_only_the_public_paths() -> None:
    forwarded: set[str] = set()
    refused: set[str] = set()
    for location, body in re.findall(r"location\s+([^{]+?)\s*\{(.*?)\}", _nginx_example(), re.DOTALL):
        (forwarded if "proxy_pass" in body else refused).add(location.strip())
    assert forwarded == {"/webhooks/", "/api/", "= /chat", "= /"}
    assert refused == {"/"}, "everything else, /healthz and /metrics included, stays behind the proxy"
    assert "healthz" not in "".join(forwarded) and "metrics" not in "".join(forwarded)
