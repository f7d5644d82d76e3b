"""The outbox worker: sends due deliveries through their channels, durably.

One loop reads the due rows (``outbox.due``: oldest first, one per recipient
stream, so order holds), starts a task per row within each channel's
concurrency limit, and sleeps until woken (a commit that enqueued something,
a finished task) or until the next retry is due. Each outcome is committed
in one write: the platform's message ids with status ``sent``; a retry time;
``failed`` and a notice to the agent; or a hold for a closed window or a
missing channel. A crash between a platform's 2xx and that commit (or a store
refusing that commit, retried after ``retry_max``) is the only way a delivery
is sent twice; nothing is ever lost, since rows stay pending.
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
import secrets
import socket
from collections import Counter
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from bridge.errors import (
    ChannelAuthFailed,
    DeliveryError,
    IntegrityError,
    WindowClosedError,
)
from bridge.models import DeliveryReceipt, OutboundMessage
from bridge.plugins.hooks import Hooks
from bridge.relay import fallbacks, reads, retry, status
from bridge.store import Delivery, Store, Tx
from bridge.store.scrub import scrub_error

if TYPE_CHECKING:
    from bridge.channel import Channel
    from bridge.config import DeliveryConfig
    from bridge.relay.context import RelayContext

log = logging.getLogger(__name__)

#: Longest sleep when nothing is due: a safety net for rows written by other
#: processes (the CLI) or paths that did not wake us.
IDLE_POLL = 2.0
CONSOLE = "console"


class OutboxWorker:
    """Deliver outbox rows; ``start()``/``stop()`` pair with the relay's."""

    def __init__(
        self,
        store: Store,
        rctx: RelayContext,
        channels: Mapping[str, Channel],
        hooks: Hooks,
        delivery: DeliveryConfig,
        *,
        clock: Callable[[], float] | None = None,
    ) -> None:
        self.store = store
        self.rctx = rctx
        self.channels = channels
        self.hooks = hooks
        self.clock = clock or rctx.now
        self.delivery = delivery
        self.stopped_channels: dict[str, str] = {}
        self._event = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._inflight: dict[int, asyncio.Task[None]] = {}
        #: deliveries whose failure could not even be recorded (store refusing writes): not before this time
        self._cooldown: dict[int, float] = {}
        self._per_channel: Counter[str] = Counter()
        self._rng = random.Random()
        self._stopping = False
        self._subscribed = False
        self._renewed_at = 0.0
        #: who holds this worker's leases when daemons share a database (host, process, a random tag)
        self.owner = f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"
        self.depth = 0
        self.oldest_age = 0.0

    @property
    def inflight(self) -> list[int]:
        """Ids of the deliveries being sent right now."""
        return list(self._inflight)

    def start(self) -> None:
        """Start the loop (idempotent); pending rows from before a restart go first."""
        if not self._subscribed:  # deliveries another daemon on the same database enqueued
            self.store.subscribe("outbox", self.wake)
            self._subscribed = True
        if self._task is None:
            self._stopping = False
            self._task = asyncio.create_task(self._run(), name="carebridge-outbox")

    def wake(self) -> None:
        """Look at the outbox again now."""
        self._event.set()

    async def stop(self, timeout: float = 5.0) -> None:
        """Stop the loop, give in-flight sends ``timeout`` seconds, then cancel them."""
        self._stopping = True
        self._event.set()
        if self._task is not None:
            await self._task
            self._task = None
        tasks = list(self._inflight.values())
        if tasks:
            _done, pending = await asyncio.wait(tasks, timeout=timeout)
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)

    def resume_channel(self, name: str) -> None:
        """Send on ``name`` again after its credentials were fixed (reload)."""
        self.stopped_channels.pop(name, None)
        self._event.set()

    async def _run(self) -> None:
        while not self._stopping:
            self._event.clear()
            try:
                delay = await self._dispatch()
            except Exception:  # boundary: a store hiccup must not kill the worker
                log.exception("outbox worker: reading due deliveries failed; retrying")
                delay = IDLE_POLL
            if self._stopping:
                break
            try:
                await asyncio.wait_for(self._event.wait(), timeout=delay)
            except TimeoutError:
                pass

    async def _dispatch(self) -> float:
        """Start what is due; return how long to sleep at most."""
        now = self.clock()
        concurrency = self.delivery.concurrency
        for delivery_id, until in list(self._cooldown.items()):
            if until <= now:
                del self._cooldown[delivery_id]
        exclude = (*self._inflight, *self._cooldown)
        skip = tuple(self.stopped_channels)
        plan = await self.store.read(
            lambda tx: tx.outbox.due(now, exclude=exclude, per_channel=concurrency, skip_channels=skip)
        )
        rows, next_at = plan.rows, plan.next_at
        if self.store.shared:
            rows = await self._claim(rows, now)
        if self._cooldown:
            soonest = min(self._cooldown.values())
            next_at = soonest if next_at is None else min(next_at, soonest)
        for delivery_id, channel, behind_hold in rows:
            if self._per_channel[channel] >= concurrency:
                continue
            self._per_channel[channel] += 1
            task = asyncio.create_task(
                self._deliver(delivery_id, channel, behind_hold), name=f"carebridge-delivery-{delivery_id}"
            )
            self._inflight[delivery_id] = task
        await self._update_gauges(now)
        sleep = IDLE_POLL if next_at is None else min(IDLE_POLL, next_at - now)
        return max(0.0, sleep)

    async def _claim(self, rows: list[tuple[int, str, bool]], now: float) -> list[tuple[int, str, bool]]:
        """Several daemons on one database: keep only the rows this one could lease, renew the leases it holds.

        Rows another daemon holds wait (in ``_cooldown``) until its lease runs
        out, which is when a dead daemon's deliveries come to the others.
        """
        until = now + self.delivery.lease
        inflight = list(self._inflight)
        wanted = [r[0] for r in rows if self._per_channel[r[1]] < self.delivery.concurrency]
        if not wanted and not (inflight and now - self._renewed_at >= self.delivery.lease / 3):
            return []
        owner = self.owner

        def claim(tx: Tx) -> tuple[list[int], dict[int, float]]:
            if inflight:
                tx.outbox.renew(inflight, owner, until)
            got = tx.outbox.claim(wanted, owner, until)
            return got, tx.outbox.leased_elsewhere([i for i in wanted if i not in got], owner)

        got, elsewhere = await self.store.write(claim)
        if inflight:
            self._renewed_at = now
        self._cooldown.update(elsewhere)
        mine = set(got)
        return [r for r in rows if r[0] in mine]

    async def _update_gauges(self, now: float) -> None:
        depth, oldest = await self.store.read(lambda tx: tx.outbox.stats(now))
        self.depth, self.oldest_age = depth, oldest
        self.rctx.observer.outbox(depth, oldest)

    async def _deliver(self, delivery_id: int, channel_name: str, behind_hold: bool) -> None:
        try:
            await self._deliver_one(delivery_id, channel_name, behind_hold)
        except Exception as err:  # boundary: one delivery's failure must not stop the others
            log.exception("outbox: delivery %s failed unexpectedly; it is retried later", delivery_id)
            await self._backoff_after_bug(delivery_id, channel_name, err)
        finally:
            self._inflight.pop(delivery_id, None)
            self._per_channel[channel_name] -= 1
            self._event.set()

    async def _backoff_after_bug(self, delivery_id: int, channel_name: str, err: Exception) -> None:
        """Count an unexpected failure as an attempt, so a persistent one cannot spin the worker."""
        reason = f"internal error: {type(err).__name__}"

        def record(tx: Any) -> None:
            delivery = tx.outbox.load_unsealed(delivery_id)
            if delivery is None or delivery.status != "pending":
                return
            attempts = delivery.attempts + 1
            if attempts >= self.delivery.max_attempts:
                fallbacks.on_failed(tx, self.rctx, delivery, reason)  # the agent is told, as for any failure
                return
            wait = retry.retry_delay(attempts, self.delivery.retry_base, self.delivery.retry_max, None, self._rng)
            tx.outbox.mark_retry(delivery_id, self.clock() + wait, reason)

        try:
            await self._write(record)
        except Exception:  # boundary: the store refuses writes (disk full?): never resend in a tight loop
            self._cooldown[delivery_id] = self.clock() + self.delivery.retry_max
            log.exception(
                "outbox: could not record the failure of delivery %s; next try in %.0fs",
                delivery_id, self.delivery.retry_max,
            )  # fmt: skip
        self._count(channel_name, "retry")

    async def _deliver_one(self, delivery_id: int, channel_name: str, behind_hold: bool = False) -> None:
        store = self.store
        try:
            loaded = await store.read(lambda tx: fallbacks.load_for_send(tx, delivery_id))
        except IntegrityError as err:
            damaged = err  # bound for the closure: ``err`` itself is unbound when the except block ends
            await self._write(lambda tx: fallbacks.on_unreadable(tx, self.rctx, delivery_id, damaged))
            self._count(channel_name, "failed")
            return
        if loaded is None:
            return
        delivery, last_inbound = loaded
        if delivery.status != "pending":
            return
        if delivery.channel == CONSOLE:
            # The console reads conversations from the store; nothing to send.
            await self._write(lambda tx: tx.outbox.mark_sent(delivery, ()))
            self._count(delivery.channel, "sent")
            return
        channel = self.channels.get(delivery.channel)
        if channel is None or not self.rctx.channel_enabled(delivery.channel):
            await self._write(lambda tx: fallbacks.on_channel_unavailable(tx, self.rctx, delivery))
            self._count(delivery.channel, "held")
            return
        if behind_hold:
            reason = "held behind an earlier message: the recipient's window is closed"
            await self._write(lambda tx: fallbacks.on_window_closed(tx, self.rctx, delivery, reason))
            self._count(delivery.channel, "held")
            return
        message = OutboundMessage(
            delivery_id=delivery.id,
            channel=delivery.channel,
            recipient=delivery.recipient,
            text=delivery.text,
            reply_to=delivery.reply_to,
            last_inbound_at=last_inbound,
            template=delivery.template,
            conversation_id=delivery.conversation_id,
            meta=delivery.meta,
        )
        try:
            receipt = await channel.send(message)
        except WindowClosedError as closed:
            reason = str(closed) or "the recipient's window is closed"
            await self._write(lambda tx: fallbacks.on_window_closed(tx, self.rctx, delivery, reason))
            self._count(delivery.channel, "held")
        except ChannelAuthFailed as err:
            await self._auth_failed(delivery, err)
        except DeliveryError as err:
            await self._failed_attempt(delivery, message, err)
        except Exception as err:  # boundary: a plugin bug is treated as a retryable failure
            log.exception("channel %s raised while sending delivery %s", delivery.channel, delivery.id)
            await self._failed_attempt(delivery, message, DeliveryError(f"{type(err).__name__}", retryable=True))
        else:
            await self._sent(delivery, message, receipt)

    async def _sent(self, delivery: Delivery, message: OutboundMessage, receipt: DeliveryReceipt) -> None:
        ids = list(receipt.external_ids)

        def record(tx: Any) -> None:
            tx.outbox.mark_sent(delivery, ids)
            status.apply_early(tx, self.rctx, delivery.id, delivery.channel, ids)

        await self._write(record)
        self._count(delivery.channel, "sent")
        await self.hooks.message_sent(message, receipt)
        if delivery.recipient_kind == "agent" and delivery.message_id is not None:
            await self._mark_read(delivery.message_id)

    async def _mark_read(self, message_id: int) -> None:
        """The agent has the customer's message: show the customer it was read (where the platform can)."""
        target = await self.store.read(lambda tx: reads.read_mark_target(tx, message_id))
        if target is None:
            return
        channel_name, sender, external_id = target
        channel = self.channels.get(channel_name)
        if channel is None:
            return
        try:
            await channel.mark_read(sender, external_id)
        except Exception as err:  # noqa: BLE001 - boundary: a read mark is a courtesy, never a failed delivery
            log.warning("channel %s: marking a message read failed: %s", channel_name, type(err).__name__)

    async def _failed_attempt(self, delivery: Delivery, message: OutboundMessage, err: DeliveryError) -> None:
        attempts = delivery.attempts + 1
        reason = _describe(err)
        if err.retryable and attempts < self.delivery.max_attempts:
            wait = retry.retry_delay(
                attempts, self.delivery.retry_base, self.delivery.retry_max, err.retry_after, self._rng
            )
            log.warning(
                "delivery %s on %s failed (attempt %d/%d, %s); retrying in %.1fs",
                delivery.id, delivery.channel, attempts, self.delivery.max_attempts, reason, wait,
            )  # fmt: skip
            next_at = self.clock() + wait
            await self._write(lambda tx: tx.outbox.mark_retry(delivery.id, next_at, reason))
            self._count(delivery.channel, "retry")
            return
        log.warning(
            "delivery %s on %s failed for good after %d attempt(s): %s", delivery.id, delivery.channel, attempts, reason
        )
        await self._write(lambda tx: fallbacks.on_failed(tx, self.rctx, delivery, reason))
        self._count(delivery.channel, "failed")
        await self.hooks.delivery_failed(message, err)

    async def _auth_failed(self, delivery: Delivery, err: ChannelAuthFailed) -> None:
        name = delivery.channel
        reason = f"the platform refused the credentials of channel {name} (code {err.code or 'unknown'})"
        if name not in self.stopped_channels:
            self.stopped_channels[name] = reason
            log.error(
                "OPERATOR ALERT: %s; deliveries on %s are paused until the bridge is reloaded or restarted",
                reason,
                name,
            )
            self.rctx.observer.credentials_refused(name, reason)
        # The row stays pending (not an attempt the recipient is to blame for).
        await self._write(lambda tx: tx.outbox.set_last_error(delivery.id, reason))

    async def _write(self, fn: Callable[[Tx], object]) -> None:
        await self.store.write(fn)
        if self.rctx.take_wake():
            self._event.set()

    def _count(self, channel: str, outcome: str) -> None:
        self.rctx.observer.delivery(channel, outcome)


def _describe(err: DeliveryError) -> str:
    """The error as logged, stored in ``outbox.last_error`` and told to the agent.

    Platform and mail-server texts may name the recipient, so addresses,
    numbers and ids are redacted here, once, for every place it goes.
    """
    text = str(err) or type(err).__name__
    text = f"{text} (code {err.code})" if err.code and str(err.code) not in text else text
    return scrub_error(text) or type(err).__name__
