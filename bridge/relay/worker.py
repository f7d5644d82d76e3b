"""The outbox worker: sends due deliveries through their channels, durably.

One loop reads the due rows (``outbox.due``: oldest first, one per recipient
stream, so order holds; a few index seeks whatever the history), starts a
task per row within each channel's concurrency limit, and sleeps until woken
(a commit that enqueued something, a finished task, the store writable
again) or until the next retry is due. Each outcome is committed in one
write: the platform's message ids with status ``sent``; a retry time;
``failed`` and a notice to the agent; a hold for a closed window or a missing
channel; or ``uncertain`` when the answer was lost.

Duplicates, and where they can still come from:

- A send whose answer was lost (``DeliveryUncertain``: the request was
  written, the connection dropped) is not retried blindly: the row waits
  ``[delivery] confirm_wait`` for the platform's own report naming it
  (``fallbacks.confirm_by_report``); a later send the platform accepts is
  counted in ``carebridge_deliveries_possible_duplicates_total``.
- At shutdown in-flight sends get the grace period; those still running are
  cut off and recorded as uncertain in the same way.
- An outcome the store refuses to commit is kept in memory
  (``unrecorded.Unrecorded``) and committed once the store can write; while it
  cannot, no new send starts (its outcome could not be recorded either).

So a delivery is sent twice only when the process dies between a platform's
answer and that commit (a crash, or a stop while the disk stays full), or
when a lost answer is never confirmed, and then it is counted. Nothing is
ever lost, since rows stay pending until an outcome is committed.

Several daemons on one PostgreSQL database (``store.shared``): the planned
rows are leased (``outbox.claim``, ``[delivery] lease``) before any send, and
the leases of sends under way and of unrecorded outcomes are renewed, so
each delivery is sent by one daemon; a dead daemon's rows go to the others
when its leases run out. Other daemons' enqueues wake this one (NOTIFY).
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
    DeliveryUncertain,
    IntegrityError,
    StoreWriteError,
    WindowClosedError,
)
from bridge.models import DeliveryReceipt, OutboundMessage
from bridge.plugins.hooks import Hooks
from bridge.relay import fallbacks, reads, retry, status
from bridge.relay.unrecorded import STORE_RETRY, Unrecorded
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
#: Fewest seconds between two updates of the depth gauges (counting reads every waiting row).
GAUGE_EVERY = 1.0
#: Consecutive failed attempts on one channel after which /healthz says it keeps failing.
FAILING_AFTER = 5
CONSOLE = "console"
CUT_OFF = "the send was cut off at shutdown before the platform answered"


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
        self._unrecorded = Unrecorded(delivery.retry_base, delivery.retry_max)
        self._per_channel: Counter[str] = Counter()
        self._rng = random.Random()
        self._stopping = False
        self._unsubscribe: Callable[[], None] | None = None
        self._gauges_at = float("-inf")
        self._subscribed = False
        self._renewed_at = float("-inf")
        #: rows another daemon on the same database holds a live lease on: not before this time
        self._leased_elsewhere: dict[int, float] = {}
        #: who holds this worker's leases when daemons share a database (host, process, a random tag)
        self.owner = f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"
        self.depth = 0
        self.oldest_age = 0.0
        #: consecutive failed attempts per channel since its last success, and the last reason
        self.failing: dict[str, tuple[int, str]] = {}

    @property
    def inflight(self) -> list[int]:
        """Ids of the deliveries being sent right now."""
        return list(self._inflight)

    @property
    def unrecorded(self) -> list[int]:
        """Ids of deliveries whose outcome waits for the store to accept it."""
        return self._unrecorded.ids

    def start(self) -> None:
        """Start the loop (idempotent); pending rows from before a restart go first."""
        if not self._subscribed:  # deliveries another daemon on the same database enqueued
            self.store.subscribe("outbox", self.wake)
            self._subscribed = True
        if self._task is None:
            self._stopping = False
            loop = asyncio.get_running_loop()

            def recovered() -> None:  # on the store's writer thread
                loop.call_soon_threadsafe(self._store_recovered)

            self._unsubscribe = self.store.on_writable(recovered)
            self._task = asyncio.create_task(self._run(), name="carebridge-outbox")

    def wake(self) -> None:
        """Look at the outbox again now."""
        self._event.set()

    def _store_recovered(self) -> None:
        """The store commits again: record what waited and resume sending at once."""
        self._unrecorded.try_all_now()
        self._event.set()

    async def stop(self, timeout: float = 5.0) -> None:
        """Stop taking rows; give in-flight sends ``timeout`` seconds, then cut them off as uncertain.

        A cut-off send is recorded like a lost answer (``mark_uncertain``), so
        after a restart it is not sent again before the platform had
        ``confirm_wait`` to report it.
        """
        self._stopping = True
        self._event.set()
        if self._task is not None:
            await self._task
            self._task = None
        tasks = list(self._inflight.values())
        if tasks:
            _done, pending = await asyncio.wait(tasks, timeout=timeout)
            if pending:
                log.warning(
                    "outbox: %d send(s) still running after the %.1fs shutdown grace are cut off;"
                    " they wait for the platform's report before any resend", len(pending), timeout,
                )  # fmt: skip
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
        self._unrecorded.try_all_now()  # a last chance for what the store refused
        await self._flush_unrecorded(self.clock())
        if len(self._unrecorded):
            log.error(
                "outbox: stopping with %d outcome(s) the store never accepted (%s); those deliveries"
                " may be sent again after the restart", len(self._unrecorded), self.store.write_error,
            )  # fmt: skip
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None

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
        """Record what waited, start what is due; return how long to sleep at most."""
        now = self.clock()
        await self._flush_unrecorded(now)
        await self._update_gauges(now)
        if self.store.write_error is not None:
            # Whatever is sent now could not be recorded: wait until a write succeeds.
            if not len(self._unrecorded):
                await self.store.probe()
            if self.store.write_error is not None:
                return STORE_RETRY
        concurrency = self.delivery.concurrency
        for delivery_id, until in list(self._leased_elsewhere.items()):
            if until <= now:
                del self._leased_elsewhere[delivery_id]
        exclude = (*self._inflight, *self._unrecorded.ids, *self._leased_elsewhere)
        skip = tuple(self.stopped_channels)
        plan = await self.store.read(
            lambda tx: tx.outbox.due(now, exclude=exclude, per_channel=concurrency, skip_channels=skip)
        )
        rows = plan.rows
        if self.store.shared:
            rows = await self._claim(rows, now)
        for delivery_id, channel, behind_hold in rows:
            if self._per_channel[channel] >= concurrency:
                continue
            self._per_channel[channel] += 1
            task = asyncio.create_task(
                self._deliver(delivery_id, channel, behind_hold), name=f"carebridge-delivery-{delivery_id}"
            )
            self._inflight[delivery_id] = task
        lease_ends = min(self._leased_elsewhere.values(), default=None)
        soonest = [t for t in (plan.next_at, self._unrecorded.next_try(), lease_ends) if t is not None]
        sleep = min([IDLE_POLL, *(t - now for t in soonest)])
        return max(0.0, sleep)

    async def _claim(self, rows: list[tuple[int, str, bool]], now: float) -> list[tuple[int, str, bool]]:
        """Several daemons on one database: keep only the rows this one could lease, renew the leases it holds.

        Rows another daemon holds wait (in ``_leased_elsewhere``) until its
        lease runs out, which is when a dead daemon's deliveries come to the
        others. The leases renewed are those of the sends under way and of the
        outcomes kept until the store takes them (``unrecorded``): no other
        daemon sends those meanwhile.
        """
        until = now + self.delivery.lease
        inflight = [*self._inflight, *self._unrecorded.ids]
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
        self._leased_elsewhere.update(elsewhere)
        mine = set(got)
        return [r for r in rows if r[0] in mine]

    async def _flush_unrecorded(self, now: float) -> None:
        for delivery_id, write, what in self._unrecorded.due(now):
            try:
                await self._write(write)
            except Exception as err:  # noqa: BLE001 - boundary: it stays kept and is tried again
                self._unrecorded.failed(delivery_id, now, store_refused=isinstance(err, StoreWriteError))
                continue
            self._unrecorded.done(delivery_id)
            log.info("outbox: the %s outcome of delivery %s is recorded now", what, delivery_id)

    async def _update_gauges(self, now: float) -> None:
        if now - self._gauges_at < GAUGE_EVERY:
            return
        self._gauges_at = now
        depth, oldest = await self.store.read(lambda tx: (tx.outbox.waiting(), tx.outbox.oldest_pending_age(now)))
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

        def record(tx: Tx) -> None:
            delivery = tx.outbox.load_unsealed(delivery_id)
            if delivery is None or delivery.status != "pending":
                return
            attempts = delivery.attempts + 1
            if attempts >= self.delivery.max_attempts:
                fallbacks.on_failed(tx, self.rctx, delivery, reason)  # the agent is told, as for any failure
                return
            wait = retry.retry_delay(attempts, self.delivery.retry_base, self.delivery.retry_max, None, self._rng)
            tx.outbox.mark_retry(delivery_id, self.clock() + wait, reason)

        await self._record(delivery_id, record, "retry", keep_any_failure=True)
        self._count(channel_name, "retry", reason)

    async def _record(
        self, delivery_id: int, write: Callable[[Tx], object], what: str, *, keep_any_failure: bool = False
    ) -> bool:
        """Commit an outcome; if the store refuses it, keep it (the row is not sent again meanwhile).

        Other failures are bugs in the outcome itself: raised, so the boundary
        counts an attempt, unless ``keep_any_failure`` (that attempt's own record).
        """
        try:
            await self._write(write)
        except Exception as err:
            if not (keep_any_failure or isinstance(err, StoreWriteError)):
                raise
            self._unrecorded.keep(delivery_id, write, what, self.clock())
            log.error(
                "outbox: could not record the %s outcome of delivery %s (%s); it is kept and not sent"
                " again until the store takes it", what, delivery_id, err,
            )  # fmt: skip
            return False
        return True

    async def _deliver_one(self, delivery_id: int, channel_name: str, behind_hold: bool = False) -> None:
        store = self.store
        try:
            loaded = await store.read(lambda tx: fallbacks.load_for_send(tx, delivery_id))
        except IntegrityError as err:
            damaged = err  # bound for the closure: ``err`` itself is unbound when the except block ends
            await self._record(delivery_id, lambda tx: fallbacks.on_unreadable(tx, self.rctx, delivery_id, damaged),
                               "failed")  # fmt: skip
            self._count(channel_name, "failed", "unreadable")
            return
        if loaded is None:
            return
        delivery, last_inbound = loaded
        if delivery.status != "pending":
            return
        if delivery.channel == CONSOLE:
            # The console reads conversations from the store; nothing to send.
            await self._record(delivery.id, lambda tx: tx.outbox.mark_sent(delivery, ()), "sent")
            self._count(delivery.channel, "sent")
            return
        channel = self.channels.get(delivery.channel)
        if channel is None or not self.rctx.channel_enabled(delivery.channel):
            await self._record(
                delivery.id, lambda tx: fallbacks.on_channel_unavailable(tx, self.rctx, delivery), "held"
            )
            self._count(delivery.channel, "held")
            return
        if behind_hold:
            reason = "held behind an earlier message: the recipient's window is closed"
            await self._record(delivery.id, lambda tx: fallbacks.on_window_closed(tx, self.rctx, delivery, reason),
                               "held")  # fmt: skip
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
        except asyncio.CancelledError:
            await self._cut_off(delivery)
            raise
        except WindowClosedError as closed:
            reason = str(closed) or "the recipient's window is closed"
            await self._record(delivery.id, lambda tx: fallbacks.on_window_closed(tx, self.rctx, delivery, reason),
                               "held")  # fmt: skip
            self._count(delivery.channel, "held")
        except ChannelAuthFailed as err:
            await self._auth_failed(delivery, err)
        except DeliveryUncertain as err:
            await self._uncertain(delivery, message, err)
        except DeliveryError as err:
            await self._failed_attempt(delivery, message, err)
        except Exception as err:  # boundary: a plugin bug is treated as a retryable failure
            log.exception("channel %s raised while sending delivery %s", delivery.channel, delivery.id)
            await self._failed_attempt(delivery, message, DeliveryError(f"{type(err).__name__}", retryable=True))
        else:
            await self._sent(delivery, message, receipt)

    async def _sent(self, delivery: Delivery, message: OutboundMessage, receipt: DeliveryReceipt) -> None:
        ids = list(receipt.external_ids)

        def record(tx: Tx) -> None:
            tx.outbox.mark_sent(delivery, ids)
            status.apply_early(tx, self.rctx, delivery.id, delivery.channel, ids)

        await self._record(delivery.id, record, "sent")
        self._count(delivery.channel, "sent")
        if delivery.uncertain_at is not None:
            # An earlier attempt lost its answer and no report settled it: the recipient may have it twice.
            log.warning("delivery %s on %s: sent again after a lost answer (possible duplicate)",
                        delivery.id, delivery.channel)  # fmt: skip
            self.rctx.observer.possible_duplicate(delivery.channel)
        await self.hooks.message_sent(message, receipt)
        if delivery.recipient_kind == "agent" and delivery.message_id is not None:
            await self._mark_read(delivery.message_id)

    async def _uncertain(self, delivery: Delivery, message: OutboundMessage, err: DeliveryUncertain) -> None:
        """The request went out and its answer was lost: wait for the platform's report before any resend."""
        attempts = delivery.attempts + 1
        reason = _describe(err)
        if attempts >= self.delivery.max_attempts:
            await self._failed_attempt(delivery, message, err)
            return
        if err.confirmable:
            wait = max(self.delivery.confirm_wait, err.retry_after or 0.0)
        else:
            wait = retry.retry_delay(attempts, self.delivery.retry_base, self.delivery.retry_max, err.retry_after,
                                     self._rng)  # fmt: skip
        log.warning(
            "delivery %s on %s: the platform's answer was lost (%s); the platform may have it,"
            " next step in %.0fs", delivery.id, delivery.channel, reason, wait,
        )  # fmt: skip
        next_at = self.clock() + wait
        await self._record(delivery.id, lambda tx: tx.outbox.mark_uncertain(delivery.id, next_at, reason), "uncertain")
        self._count(delivery.channel, "uncertain", reason)

    async def _cut_off(self, delivery: Delivery) -> None:
        """A send cancelled at shutdown: the request may have reached the platform; record it as uncertain."""
        next_at = self.clock() + self.delivery.confirm_wait
        try:
            await self._record(
                delivery.id, lambda tx: tx.outbox.mark_uncertain(delivery.id, next_at, CUT_OFF), "uncertain"
            )
        except Exception:  # boundary: shutdown goes on; the row stays pending
            log.exception("outbox: recording the cut-off send of delivery %s failed", delivery.id)
        self._count(delivery.channel, "uncertain", CUT_OFF)

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
            await self._record(delivery.id, lambda tx: tx.outbox.mark_retry(delivery.id, next_at, reason), "retry")
            self._count(delivery.channel, "retry", reason)
            return
        log.warning(
            "delivery %s on %s failed for good after %d attempt(s): %s", delivery.id, delivery.channel, attempts, reason
        )
        await self._record(delivery.id, lambda tx: fallbacks.on_failed(tx, self.rctx, delivery, reason), "failed")
        self._count(delivery.channel, "failed", reason)
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

    def _count(self, channel: str, outcome: str, reason: str = "") -> None:
        """Report an outcome; track consecutive failed attempts per channel for /healthz."""
        self.rctx.observer.delivery(channel, outcome)
        if outcome == "sent":
            self.failing.pop(channel, None)
        elif outcome in ("retry", "failed", "uncertain"):
            count = self.failing.get(channel, (0, ""))[0] + 1
            self.failing[channel] = (count, reason)

    def health(self) -> dict[str, Any]:
        """Failing channels (at least ``FAILING_AFTER`` failed attempts in a row) and unrecorded outcomes."""
        return {
            "failing_channels": {
                name: {"consecutive_failures": count, "last_error": reason}
                for name, (count, reason) in sorted(self.failing.items())
                if count >= FAILING_AFTER
            },
            "unrecorded": len(self._unrecorded),
        }


def _describe(err: DeliveryError) -> str:
    """The error as logged, stored in ``outbox.last_error`` and told to the agent.

    Platform and mail-server texts may name the recipient, so addresses,
    numbers and ids are redacted here, once, for every place it goes.
    """
    text = str(err) or type(err).__name__
    text = f"{text} (code {err.code})" if err.code and str(err.code) not in text else text
    return scrub_error(text) or type(err).__name__
