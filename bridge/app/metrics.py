"""Prometheus metrics: one registry per Bridge that every part adds to.

Why a registry per Bridge rather than prometheus_client's global one: tests
build several bridges in one process, and a global registry would refuse the
second set of metrics with duplicate names.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class Metrics:
    """The daemon's metrics; other modules increment the attributes.

    :ivar http_requests: Counter(route, status) — every HTTP request, by route pattern.
    :ivar webhook_latency: Histogram(channel) — seconds to answer a webhook.
    :ivar messages_stored: Counter(channel, direction) — messages committed to the store.
    :ivar outbox_depth: Gauge — pending outbox rows.
    :ivar outbox_oldest_age: Gauge — age in seconds of the oldest pending row.
    :ivar deliveries: Counter(channel, outcome) — outcome is sent|retry|failed|held.
    :ivar login_failures: Counter — refused logins (chat codes, console passwords and codes, lock-outs).
    :ivar inbound_refused: Counter(channel, reason) — inbound messages refused without effect.
    :ivar store_up: Gauge(backend) — 1 while the store takes writes (PostgreSQL: reachable and a primary).
    :ivar store_pool: Gauge(state) — the store's read connections: size, in_use, max, waiting (PostgreSQL).
    """

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.http_requests = Counter(
            "carebridge_http_requests", "HTTP requests by route and status", ["route", "status"], registry=r
        )
        self.webhook_latency = Histogram(
            "carebridge_webhook_latency_seconds",
            "Time to answer a platform webhook",
            ["channel"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.messages_stored = Counter(
            "carebridge_messages_stored", "Messages committed to the store", ["channel", "direction"], registry=r
        )
        self.outbox_depth = Gauge("carebridge_outbox_depth", "Outbox rows waiting to be delivered", registry=r)
        self.outbox_oldest_age = Gauge(
            "carebridge_outbox_oldest_age_seconds", "Age of the oldest waiting outbox row", registry=r
        )
        self.deliveries = Counter(
            "carebridge_deliveries",
            "Delivery attempts by outcome (sent, retry, failed, held)",
            ["channel", "outcome"],
            registry=r,
        )
        self.login_failures = Counter(
            "carebridge_login_failures",
            "Refused logins: wrong or replayed codes, wrong passwords, lock-outs",
            registry=r,
        )
        self.inbound_refused = Counter(
            "carebridge_inbound_refused",
            "Inbound messages refused without effect (unauthenticated: claimed an agent's address)",
            ["channel", "reason"],
            registry=r,
        )

    def watch_store(self, health: Callable[[], Mapping[str, Any]]) -> None:
        """Read the store's state from its ``health()`` (no I/O: cached by the store) at every scrape."""
        backend = str(health().get("backend", "sqlite"))
        r = self.registry
        self.store_up = Gauge("carebridge_store_up", "1 while the store takes writes", ["backend"], registry=r)
        self.store_up.labels(backend=backend).set_function(lambda: 1.0 if health().get("status") == "ok" else 0.0)
        if "pool" in health():
            self.store_pool = Gauge(
                "carebridge_store_pool_connections", "The store's read connections by state", ["state"], registry=r
            )
            for state in ("size", "in_use", "max", "waiting"):
                self.store_pool.labels(state=state).set_function(functools.partial(_pool_value, health, state))

    def render(self) -> tuple[bytes, str]:
        """Return the Prometheus text exposition and its content type."""
        return generate_latest(self.registry), CONTENT_TYPE_LATEST


def _pool_value(health: Callable[[], Mapping[str, Any]], state: str) -> float:
    """One number of the store's ``pool`` health entry."""
    return float(health().get("pool", {}).get(state, 0))
