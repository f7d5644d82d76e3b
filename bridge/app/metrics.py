"""Prometheus metrics: one registry per Bridge that every part adds to.

Why a registry per Bridge rather than prometheus_client's global one: tests
build several bridges in one process, and a global registry would refuse the
second set of metrics with duplicate names.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class Metrics:
    """The daemon's metrics; other modules increment the attributes.

    :ivar http_requests: Counter(route, status) — every HTTP request, by route pattern.
    :ivar webhook_latency: Histogram(channel) — seconds to answer a webhook.
    :ivar messages_stored: Counter(channel, direction) — messages committed to the store.
    :ivar outbox_depth: Gauge — pending outbox rows.
    :ivar outbox_oldest_age: Gauge — age in seconds of the oldest pending row.
    :ivar deliveries: Counter(channel, outcome) — outcome is sent|retry|failed|held|uncertain|confirmed.
    :ivar possible_duplicates: Counter(channel) — a send the platform accepted after an earlier
        attempt of the same delivery ended without an answer (the recipient may have it twice).
    :ivar login_failures: Counter — refused logins (chat codes, console passwords and codes, lock-outs).
    :ivar inbound_refused: Counter(channel, reason) — inbound messages refused without effect.

    ``watch_store`` adds the store's own figures, read at each scrape:
    ``carebridge_store_up{backend}`` (1 while the store takes writes; on
    PostgreSQL also reachable and a primary), ``carebridge_store_failed_commits_total``,
    ``carebridge_store_writable``; SQLite: ``carebridge_store_wal_bytes`` and
    ``carebridge_store_checkpoints_total{result}``; PostgreSQL:
    ``carebridge_store_pool_connections{state}`` (size, in_use, max, waiting).
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
            "Delivery attempts by outcome (sent, retry, failed, held, uncertain, confirmed)",
            ["channel", "outcome"],
            registry=r,
        )
        self.possible_duplicates = Counter(
            "carebridge_deliveries_possible_duplicates",
            "Sends accepted after an earlier attempt of the same delivery lost its answer",
            ["channel"],
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

    def watch_store(self, stats: Callable[[], Mapping[str, float]], backend: str) -> None:
        """Expose the store's figures (``Store.stats``), read at every scrape."""
        self.registry.register(_StoreCollector(stats, backend))

    def render(self) -> tuple[bytes, str]:
        """Return the Prometheus text exposition and its content type."""
        return generate_latest(self.registry), CONTENT_TYPE_LATEST


class _StoreCollector(Collector):
    """The store's counters as Prometheus metrics, read when scraped (they live on the writer thread)."""

    def __init__(self, stats: Callable[[], Mapping[str, float]], backend: str) -> None:
        self._stats = stats
        self._backend = backend

    def collect(self) -> Iterator[Metric]:
        stats = self._stats()
        up = GaugeMetricFamily("carebridge_store_up", "1 while the store takes writes", labels=["backend"])
        up.add_metric([self._backend], stats["up"])
        yield up
        yield CounterMetricFamily(
            "carebridge_store_failed_commits",
            "Writes the store could not commit (disk full or read-only, I/O error, lock held too long)",
            value=stats["failed_commits"],
        )
        yield GaugeMetricFamily("carebridge_store_writable", "1 while the store can write", value=stats["writable"])
        if "pool_max" in stats:  # PostgreSQL: the pooled read connections
            pool = GaugeMetricFamily(
                "carebridge_store_pool_connections", "The store's read connections by state", labels=["state"]
            )
            for state in ("size", "in_use", "max", "waiting"):
                pool.add_metric([state], stats[f"pool_{state}"])
            yield pool
        if "wal_bytes" not in stats:  # SQLite only: its write-ahead log and checkpoints
            return
        yield GaugeMetricFamily("carebridge_store_wal_bytes", "Size of the write-ahead log", value=stats["wal_bytes"])
        checkpoints = CounterMetricFamily(
            "carebridge_store_checkpoints",
            "Deliberate WAL checkpoints: restart (the WAL starts over) or deferred (readers were busy)",
            labels=["result"],
        )
        checkpoints.add_metric(["restart"], stats["checkpoint_restarts"])
        checkpoints.add_metric(["deferred"], stats["checkpoint_deferred"])
        yield checkpoints
