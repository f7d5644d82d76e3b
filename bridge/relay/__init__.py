"""The relay: inbound messages in, routing, and the durable outbox out.

``Relay(bridge)`` is built by ``bridge.app.bridge.Bridge``; channels reach it
through their ``ChannelContext`` (``deliver`` → ``ingest``, ``update_status``,
``save_media``). Every change happens inside one ``store.write`` function, so
it commits whole; the outbox worker is woken after the commit.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Coroutine, Mapping, Sequence
from typing import Any, TypeVar

from bridge.channel import Channel, HistoryEntry
from bridge.config import Config
from bridge.errors import ConfigError
from bridge.models import InboundMessage, StatusUpdate
from bridge.plugins.hooks import Hooks
from bridge.relay import fallbacks, media, secure
from bridge.relay.command_table import CommandTable
from bridge.relay.context import RelayContext, RelayObserver, SilentObserver
from bridge.relay.history import customer_history
from bridge.relay.ingest import IngestResult, ingest_batch
from bridge.relay.rules import Rules, load_rules
from bridge.relay.status import apply_status_updates
from bridge.relay.templates import Templates, load_templates
from bridge.relay.worker import OutboxWorker
from bridge.store import Store, Tx

__all__ = ["Relay", "RelayContext", "RelayObserver", "SilentObserver", "config_problems"]

log = logging.getLogger(__name__)
T = TypeVar("T")

#: How often the periodic checks run (agent window warnings, old dedupe rows).
CHECK_INTERVAL = 60.0
#: Agent-message dedupe rows older than this are dropped (Meta retries for up to 7 days).
DEDUPE_KEEP = 8 * 86400.0
#: Share of ``server.shutdown_timeout`` that in-flight sends get to finish at a stop. The web
#: runner may have used a quarter for requests; the rest records cut-off sends and closes.
SEND_GRACE = 0.6


def config_problems(config: Config) -> list[str]:
    """Problems in the rules and templates files that ``start()`` would stop on (for check-config).

    Each is ``FILE:LINE: reason``; an empty list means the relay will start.
    """
    problems: list[str] = []
    for loader, path in ((load_rules, config.routing.rules_file), (load_templates, config.templates.file)):
        try:
            loader(path)
        except ConfigError as err:
            problems.append(str(err))
    return problems


class Relay:
    """Ingest, routing and delivery for one bridge.

    :param store: the encrypted store.
    :param config: the configuration (``reload`` takes a new one).
    :param hooks: typed plugin hook calls (strategies, detectors, commands, observers).
    :param installed: every installed channel class (labels and address rules).
    :param channels: the enabled channels' instances (the worker sends through them).
    :param observer: where metrics and channel health go.
    """

    def __init__(
        self,
        store: Store,
        config: Config,
        hooks: Hooks,
        installed: Mapping[str, type[Channel]],
        channels: Mapping[str, Channel],
        observer: RelayObserver,
    ) -> None:
        self.store = store
        self.config = config
        self.hooks = hooks
        self.installed = installed
        self.channels = channels
        self.observer = observer
        self.rctx: RelayContext | None = None
        self.worker: OutboxWorker | None = None
        self._periodic: asyncio.Task[None] | None = None
        self._observers: set[asyncio.Task[None]] = set()

    # --- lifecycle -------------------------------------------------------------

    def _context(self, rules: Rules, templates: Templates, commands: CommandTable) -> RelayContext:
        return RelayContext.build(
            self.config, self.hooks, self.installed, self.channels,
            templates=templates, rules=rules, commands=commands, observer=self.observer,
        )  # fmt: skip

    async def start(self) -> None:
        """Load rules and templates, resume the outbox, start the worker and timers.

        :raises ConfigError: the rules or templates file is wrong (FILE:LINE).
        :raises PluginLoadError: a plugin registers a malformed or taken command.
        """
        rules = load_rules(self.config.routing.rules_file)
        templates = load_templates(self.config.templates.file)
        rctx = self._context(rules, templates, CommandTable.build(self.hooks))
        self.rctx = rctx
        channels = sorted(rctx.channels)
        released = await self.write(lambda tx: tx.outbox.release_channels(channels))
        if released:
            log.info("outbox: %d delivery(ies) held for a missing channel are pending again", released)
        self.worker = OutboxWorker(self.store, rctx, self.channels, self.hooks, self.config.delivery)
        self.worker.start()
        self._periodic = asyncio.create_task(self._run_periodic(), name="carebridge-relay-checks")

    async def stop(self) -> None:
        """Stop timers and the worker; in-flight sends get most of the shutdown grace (``SEND_GRACE``).

        Sends still running then are cut off and recorded as uncertain (see
        ``OutboxWorker.stop``); observers of stored messages get a quarter of
        the grace, at the same time.
        """
        if self._periodic is not None:
            self._periodic.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._periodic
            self._periodic = None
        grace = self.config.server.shutdown_timeout
        worker, self.worker = self.worker, None
        await asyncio.gather(
            self._stop_observers(max(1.0, grace / 4)),
            worker.stop(timeout=max(1.0, grace * SEND_GRACE)) if worker is not None else asyncio.sleep(0),
        )

    async def _stop_observers(self, timeout: float) -> None:
        if not self._observers:
            return
        await asyncio.wait(list(self._observers), timeout=timeout)
        for task in list(self._observers):
            task.cancel()
        await asyncio.gather(*self._observers, return_exceptions=True)

    async def reload(self, config: Config) -> None:
        """Re-read rules and templates (SIGHUP) and resume channels paused for bad credentials.

        :raises ConfigError: a file is wrong; the previous rules and templates stay.
        """
        rules = load_rules(config.routing.rules_file)
        templates = load_templates(config.templates.file)
        self.config = config
        commands = self.rctx.commands if self.rctx is not None else CommandTable.build(self.hooks)
        rctx = self._context(rules, templates, commands)
        self.rctx = rctx
        if self.worker is not None:
            self.worker.rctx = rctx
            for name in list(self.worker.stopped_channels):
                self.worker.resume_channel(name)
        channels = sorted(rctx.channels)
        await self.write(lambda tx: tx.outbox.release_channels(channels))
        log.info("relay: reloaded rules (%s) and templates (%s)", rules.source, templates.source)

    def _require(self) -> RelayContext:
        if self.rctx is None:
            raise RuntimeError("the relay is not started")
        return self.rctx

    async def write(self, fn: Callable[[Tx], T]) -> T:
        """Run ``fn(tx)`` in the store's writer and wake the worker if it enqueued something.

        Other parts (the console) call relay helpers through this.
        """
        result: T = await self.store.write(fn)
        if self.rctx is not None and self.rctx.take_wake() and self.worker is not None:
            self.worker.wake()
        return result

    # --- channel callbacks --------------------------------------------------------

    async def ingest(self, channel: str, messages: Sequence[InboundMessage]) -> None:
        """Store and route one webhook's messages; returns once they are committed."""
        if not messages:
            return
        rctx = self._require()
        batch = list(messages)
        result: IngestResult = await self.write(lambda tx: ingest_batch(tx, rctx, channel, batch))
        for name, direction in result.stored:
            self.observer.message_stored(name, direction)
        for message, conversation_id in result.customer:
            # Observers run after the answer: a slow plugin must not delay the platform's 200.
            self._spawn(self.hooks.message_received(message, conversation_id))

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(coro, name="carebridge-message-received")
        self._observers.add(task)
        task.add_done_callback(self._observers.discard)

    async def update_status(self, channel: str, updates: Sequence[StatusUpdate]) -> None:
        """Apply delivery/read/failure reports to our messages and deliveries."""
        if not updates:
            return
        rctx = self._require()
        batch = list(updates)
        await self.write(lambda tx: apply_status_updates(tx, rctx, channel, batch))

    async def save_media(self, channel: str, external_id: str, index: int, data: bytes, mime: str | None) -> None:
        """Store the bytes of attachment ``index`` of an already ingested message, encrypted.

        :raises UnknownRecordError: no such message or attachment was ingested.
        """
        await self.write(lambda tx: media.save_media(tx, channel, external_id, index, data, mime))

    async def resume_media(self, channel_name: str, channel: Channel) -> int:
        """Hand ``channel`` the media an earlier run left unfetched; return how many.

        Called once after the channel started. A channel that fails here is
        logged; the daemon keeps running and the rows stay for the next start.
        """
        pending = await self.store.read(lambda tx: media.pending_media(tx, channel_name))
        if not pending:
            return 0
        log.info("%s: resuming %d unfetched media file(s)", channel_name, len(pending))
        try:
            await channel.resume_media(pending)
        except Exception:  # boundary: a plugin's failure must not stop the daemon
            log.exception("%s: resuming media failed", channel_name)
        return len(pending)

    async def history(self, channel: str, address: str, limit: int) -> list[HistoryEntry]:
        """A customer's own conversation on ``channel``, for the channel to show them (read-only).

        ``address`` is normalized by its channel first; one the channel refuses has no history.
        """
        try:
            canonical = self._require().addresses.normalize(channel, address)
        except ValueError:
            return []
        return await self.store.read(lambda tx: customer_history(tx, channel, canonical, limit))

    # --- periodic checks and health ------------------------------------------------

    async def check_windows(self) -> int:
        """Warn agents whose reply window closes soon; return how many were warned."""
        rctx = self._require()
        return await self.write(lambda tx: fallbacks.check_window_warnings(tx, rctx))

    async def run_checks(self) -> int:
        """One round of the periodic checks; return how many agents were warned."""
        warned = await self.check_windows()
        await self.write(_forget_old_bookkeeping)
        rctx = self._require()
        await self.write(lambda tx: secure.sweep(tx, rctx))  # expired /secure requests, delivered /secure mails
        return warned

    async def _run_periodic(self) -> None:
        interval = min(CHECK_INTERVAL, max(1.0, self.config.routing.window_warning / 4))
        while True:
            await asyncio.sleep(interval)
            try:
                await self.run_checks()
            except Exception:  # boundary: a failed check is retried at the next tick
                log.exception("relay periodic check failed")

    def health(self) -> dict[str, Any]:
        """The outbox for /healthz: depth, oldest pending age, paused and failing channels, ``degraded``.

        ``degraded`` names why deliveries lag: the oldest pending delivery is
        older than ``[delivery] max_backlog_age``, a channel keeps failing, or
        outcomes wait for the store.
        """
        worker = self.worker
        if worker is None:
            return {"running": False}
        limit = self.config.delivery.max_backlog_age
        found = worker.health()
        reasons = []
        if limit > 0 and worker.oldest_age > limit:
            reasons.append(f"the oldest waiting delivery is {worker.oldest_age:.0f}s old (limit {limit:.0f}s)")
        reasons.extend(f"deliveries on {name} keep failing" for name in found["failing_channels"])
        if found["unrecorded"]:
            reasons.append(f"{found['unrecorded']} outcome(s) wait for the store")
        return {
            "running": True,
            "depth": worker.depth,
            "oldest_age": round(worker.oldest_age, 3),
            "in_flight": len(worker.inflight),
            "paused_channels": dict(worker.stopped_channels),
            **found,
            "degraded": reasons,
        }


def _forget_old_bookkeeping(tx: Tx) -> None:
    """Drop agent-message dedupe rows older than any platform still retries, and spent window warnings.

    Early status reports older than a day are about messages we never recorded
    (sent by other tools on the same number).
    """
    cutoff = tx.now() - DEDUPE_KEEP
    tx.relay.forget_old(
        dedupe_before=cutoff, flag_name=fallbacks.WARNED, flags_before=cutoff, reports_before=tx.now() - 86400.0
    )
