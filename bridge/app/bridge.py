"""The Bridge: wiring of config, plugins, store, relay and channels, and their lifecycle.

Why one object: every long-lived resource (the store, the shared HTTP
session, the scheduler, channel tasks, plugin lifespans) is created here and
released here in reverse order, so a start-up that fails half way and a
normal shutdown run the same code. No platform or routing logic lives here.

Usage::

    bridge = await Bridge.create(config, registry)   # opens resources, starts nothing
    app = make_app(bridge)                             # bridge.web: start/stop ride the app's cleanup_ctx
    ...
    await bridge.close()                               # stops (if started) and releases everything
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine, Mapping
from contextlib import AsyncExitStack
from datetime import datetime, timedelta
from functools import partial
from typing import TYPE_CHECKING, Any

import aiohttp

from bridge.app.events import EventHub
from bridge.app.masking import Masker
from bridge.app.metrics import Metrics
from bridge.app.preflight import channel_problems
from bridge.channel import Channel, ChannelContext
from bridge.config import Config
from bridge.errors import (
    ChannelAuthError,
    ChannelUnavailable,
    ConfigError,
    PluginLoadError,
)
from bridge.models import ChannelState
from bridge.plugins import PluginRegistry
from bridge.plugins.hooks import Hooks
from bridge.store import open_store

if TYPE_CHECKING:
    from apscheduler.schedulers.asyncio import AsyncIOScheduler

    from bridge.relay import Relay
    from bridge.store import Store

log = logging.getLogger(__name__)

RETRY_FIRST = 1.0
RETRY_MAX = 300.0
PURGE_INTERVAL = timedelta(hours=24)
PURGE_FIRST_DELAY = timedelta(minutes=1)
ANCHOR_INTERVAL = timedelta(hours=24)
#: The idle auto-close looks this often at most, and at least every tenth of ``close_idle_after``.
IDLE_CHECK_MAX = timedelta(minutes=15)
IDLE_CHECK_MIN = timedelta(seconds=1)
SESSION_CLEANUP_INTERVAL = timedelta(minutes=15)
#: Failed-login counts are kept at least this long (longer when ``[security] lockout`` is).
FAILURES_KEEP = 3600.0


class Bridge:
    """The running core: what plugins and the web app reach as ``bridge``.

    :ivar config: the active configuration (replaced on SIGHUP for reloadable sections).
    :ivar registry: plugins found; ``pm`` is its pluggy manager.
    :ivar store: the encrypted store (``bridge.store.Store``).
    :ivar relay: ingest, routing and the outbox worker (``bridge.relay.Relay``).
    :ivar channels: enabled channels, instantiated, by name.
    :ivar http: the one shared ``aiohttp.ClientSession``.
    :ivar metrics: Prometheus metrics every part adds to.
    :ivar scheduler: the apscheduler ``AsyncIOScheduler`` (retention purge, idle auto-close, audit anchors,
        session clean-up).
    :ivar events: live updates for console sessions (``bridge.app.events.EventHub``).
    :ivar masker: hides sensitive values in what the console shows.
    """

    store: Store
    relay: Relay
    http: aiohttp.ClientSession
    scheduler: AsyncIOScheduler
    events: EventHub

    def __init__(self, config: Config, registry: PluginRegistry, clock: Callable[[], float] | None = None) -> None:
        """Hold the wiring; use ``await Bridge.create(...)`` to open resources."""
        self.clock = clock
        self.config = config
        self.registry = registry
        self.pm = registry.pm
        self.hooks = Hooks(registry.pm, bridge=self)
        self.metrics = Metrics()
        self.masker = Masker(self.hooks)
        self.channels: dict[str, Channel] = {}
        self._states: dict[str, tuple[ChannelState, str | None]] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._lifespans = AsyncExitStack()
        self._started = False
        self._stopped = False
        self._stop_task: asyncio.Task[None] | None = None
        self._opened: list[str] = []

    @classmethod
    async def create(
        cls, config: Config, registry: PluginRegistry, *, clock: Callable[[], float] | None = None
    ) -> Bridge:
        """Check plugins and channels, open the store, build channels and the relay.

        Must run inside the event loop. Nothing is started (no worker, no
        channel connection) until ``start()``. ``clock`` replaces the store's
        clock (tests of time-bound rules such as lock-outs).

        :raises PluginLoadError: a required plugin, or the plugin of an
            enabled channel, is missing or failed to import.
        :raises ConfigError: a channel section is invalid, or no plugin provides
            the routing strategy.
        :raises StoreError: the store cannot be opened (wrong or missing key, ...).
        """
        problems = channel_problems(config, registry)
        if problems:
            kind = PluginLoadError if any(isinstance(p, PluginLoadError) for p in problems) else ConfigError
            raise kind("; ".join(str(p) for p in problems))
        registry.hooks.configure(config)
        bridge = cls(config, registry, clock)
        try:
            await bridge._open()
        except BaseException:
            await bridge.close()
            raise
        return bridge

    async def _open(self) -> None:
        from apscheduler.schedulers.asyncio import AsyncIOScheduler

        from bridge.relay import Relay

        self.store = await open_store(self.config.store, clock=self.clock)
        self._opened.append("store")
        self.events = EventHub(self.store, self.masker)
        self.metrics.watch_store(self.store.stats, self.store.backend)
        self.http = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60, connect=10))
        self._opened.append("http")
        self.scheduler = AsyncIOScheduler(event_loop=asyncio.get_running_loop())
        self.relay = Relay(self.store, self.config, self.hooks, self.registry.channels, self.channels, _Observer(self))
        for name in self.config.enabled_channels():
            channel_cls = self.registry.channels[name]
            self.channels[name] = channel_cls(self.config.channels[name], self._context(name))
            self._states[name] = (ChannelState.STARTING, None)

    def _context(self, name: str) -> ChannelContext:
        return ChannelContext(
            http=self.http,
            deliver=partial(self.relay.ingest, name),
            update_status=partial(self.relay.update_status, name),
            save_media=partial(self.relay.save_media, name),
            report=partial(self.report_channel, name),
            log=logging.getLogger(f"carebridge.{name}"),
            max_body=self.config.server.max_body,
            public_url=self.config.server.public_url,
            history=partial(self.relay.history, name),
            load_state=partial(self._load_state, name),
            save_state=partial(self._save_state, name),
        )

    async def _load_state(self, channel: str, key: str) -> str | None:
        """``ChannelContext.load_state`` of ``channel``: its own bookkeeping, from the store."""
        return await self.store.read(lambda tx: tx.channel_state.load(channel, key))

    async def _save_state(self, channel: str, key: str, value: str) -> None:
        """``ChannelContext.save_state`` of ``channel``; returns once committed."""
        await self.store.write(lambda tx: tx.channel_state.save(channel, key, value))

    # --- channel health ------------------------------------------------------

    def channel_state(self, name: str) -> tuple[ChannelState, str | None]:
        """Return a channel's state and the reason given with it."""
        return self._states.get(name, (ChannelState.STARTING, None))

    def report_channel(self, name: str, state: ChannelState, reason: str | None = None) -> None:
        """Record a channel's health (channels call this through ``ctx.report``)."""
        if self._states.get(name) != (state, reason):
            level = logging.INFO if state is ChannelState.CONNECTED else logging.WARNING
            log.log(level, "channel %s: %s%s", name, state.value, f" ({reason})" if reason else "")
        self._states[name] = (state, reason)

    # --- lifecycle -------------------------------------------------------------

    async def start(self) -> None:
        """Start the relay, plugin lifespans, channels, their receive loops and the scheduler.

        A channel whose credentials are refused stops start-up; one that is
        unreachable is retried with backoff in the background.

        :raises ChannelAuthError: naming the channel.
        """
        if self._started:
            return
        self._started = True
        try:
            await self.relay.start()
            self._opened.append("relay")
            await self._log_anchor()
            self.events.start()
            self._opened.append("events")
            await self._enter_lifespans()
            for name, channel in self.channels.items():
                await self._start_channel(name, channel)
            self._schedule_jobs()
            self._schedule_session_cleanup()
            self.scheduler.start()
        except BaseException:
            await self.stop()
            raise

    async def _enter_lifespans(self) -> None:
        for _name, cm in self.hooks.lifespans(self):
            await self._lifespans.enter_async_context(cm)

    async def _start_channel(self, name: str, channel: Channel) -> None:
        try:
            await channel.start()
        except ChannelAuthError as err:
            self.report_channel(name, ChannelState.BAD_CREDENTIALS, str(err))
            raise ChannelAuthError(f"channel {name}: the platform refused the credentials: {err}") from err
        except ChannelUnavailable as err:
            self.report_channel(name, ChannelState.TRANSIENT_DISCONNECT, str(err))
            self.spawn(self._retry_start(name, channel), name=f"start-{name}")
            return
        await self._after_start(name, channel)

    async def _after_start(self, name: str, channel: Channel) -> None:
        """A channel is up: mark it connected, start its receive loop, hand it unfetched media.

        ``relay.resume_media`` is called directly (a Relay without it is a
        wiring error, raised here): media an earlier run acknowledged but never
        fetched must not be forgotten. Channels schedule those downloads and
        return (see ``Channel.resume_media``), so start-up is not held up.
        """
        if self.channel_state(name)[0] is not ChannelState.CONNECTED:
            self.report_channel(name, ChannelState.CONNECTED)
        if type(channel).run is not Channel.run:
            self.spawn(self._supervise_run(name, channel), name=f"run-{name}")
        await self.relay.resume_media(name, channel)

    async def _retry_start(self, name: str, channel: Channel) -> None:
        delay = RETRY_FIRST
        while True:
            await asyncio.sleep(delay)
            delay = min(delay * 2, RETRY_MAX)
            try:
                await channel.start()
            except ChannelUnavailable as err:
                self.report_channel(name, ChannelState.TRANSIENT_DISCONNECT, str(err))
                continue
            except ChannelAuthError as err:
                self.report_channel(name, ChannelState.BAD_CREDENTIALS, str(err))
                return
            except Exception as err:  # boundary: keep the daemon up, show the failure in /healthz
                log.exception("channel %s: start failed", name)
                self.report_channel(name, ChannelState.DEGRADED, f"{type(err).__name__}: {err}")
                continue
            await self._after_start(name, channel)
            return

    async def _supervise_run(self, name: str, channel: Channel) -> None:
        """Keep a pull channel's receive loop running; back off after failures."""
        delay = RETRY_FIRST
        while True:
            try:
                await channel.run()
                return
            except ChannelAuthError as err:
                self.report_channel(name, ChannelState.BAD_CREDENTIALS, str(err))
                return
            except ChannelUnavailable as err:
                self.report_channel(name, ChannelState.TRANSIENT_DISCONNECT, str(err))
            except Exception as err:  # boundary: a crashing receive loop is restarted, not fatal
                log.exception("channel %s: receive loop failed", name)
                self.report_channel(name, ChannelState.DEGRADED, f"{type(err).__name__}: {err}")
            await asyncio.sleep(delay)
            delay = min(delay * 2, RETRY_MAX)

    def spawn(self, coro: Coroutine[Any, Any, None], *, name: str) -> None:
        """Run ``coro`` as a background task that ``stop()`` cancels and awaits."""
        task = asyncio.get_running_loop().create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("background task %s failed: %r", task.get_name(), task.exception())

    def _schedule_jobs(self) -> None:
        """The daily purge, the idle auto-close and the daily audit anchor (each only when configured)."""
        retention = self.config.retention
        if retention.closed_after_days > 0:
            self.scheduler.add_job(
                self._purge, "interval", seconds=PURGE_INTERVAL.total_seconds(),
                next_run_time=datetime.now() + PURGE_FIRST_DELAY, id="retention", coalesce=True,
            )  # fmt: skip
        if retention.close_idle_after > 0:
            every = min(
                IDLE_CHECK_MAX.total_seconds(), max(IDLE_CHECK_MIN.total_seconds(), retention.close_idle_after / 10)
            )
            self.scheduler.add_job(
                self._close_idle, "interval", seconds=every,
                next_run_time=datetime.now() + timedelta(seconds=every), id="close_idle", coalesce=True,
            )  # fmt: skip
        self.scheduler.add_job(
            self._log_anchor, "interval", seconds=ANCHOR_INTERVAL.total_seconds(),
            next_run_time=datetime.now() + ANCHOR_INTERVAL, id="audit_anchor", coalesce=True,
        )  # fmt: skip

    async def _purge(self) -> None:
        """Run the retention purge; a failure is logged and retried next interval."""
        days = self.config.retention.closed_after_days
        try:
            async with self.store.exclusive("retention") as mine:  # one daemon of several on one database
                if not mine:
                    return
                counts = await self.store.purge_closed(days)
        except Exception:  # boundary: a failed purge must not stop the scheduler
            log.exception("retention purge failed")
            return
        log.info(
            "retention: purged %d conversation(s) closed more than %d days ago (%d message(s), %d outbox row(s),"
            " %d event(s), %d media file(s), %d contact(s) with their keys)",
            counts["conversations"], days, counts["messages"], counts["outbox"], counts["events"], counts["files"],
            counts["contacts"],
        )  # fmt: skip

    async def _close_idle(self) -> None:
        """Close conversations idle for ``[retention] close_idle_after``; a failure is retried next run."""
        from bridge.relay.routing import close_idle

        rctx = self.relay.rctx
        if rctx is None:
            return
        idle_for = self.config.retention.close_idle_after
        try:
            async with self.store.exclusive("close_idle") as mine:
                if not mine:
                    return
                closed = await self.relay.write(lambda tx: close_idle(tx, rctx, idle_for))
        except Exception:  # boundary: a failed run must not stop the scheduler
            log.exception("closing idle conversations failed")
            return
        if closed:
            log.info("retention: closed %d idle conversation(s)", len(closed))

    async def _log_anchor(self) -> None:
        """Log the audit chain's anchor, so the journal keeps copies outside the store (see ``audit verify``)."""
        try:
            digest, count = await self.store.read(lambda tx: tx.audit.anchor())
        except Exception:  # boundary: an unreadable log is for `audit verify` to report, not a reason to stop
            log.exception("cannot read the audit anchor")
            return
        log.info("audit anchor %s:%d (check later with: carebridge audit verify --anchor %s:%d)",
                 digest, count, digest, count)  # fmt: skip

    def _schedule_session_cleanup(self) -> None:
        self.scheduler.add_job(
            self.cleanup_sessions,
            "interval",
            seconds=SESSION_CLEANUP_INTERVAL.total_seconds(),
            next_run_time=datetime.now() + PURGE_FIRST_DELAY,
            id="sessions",
            coalesce=True,
        )

    async def cleanup_sessions(self) -> tuple[int, int]:
        """Drop expired console sessions and old failed-login counts; return how many of each.

        A failure is logged and retried next interval (the scheduler calls this).
        """
        keep = max(FAILURES_KEEP, self.config.security.lockout)
        try:
            async with self.store.exclusive("sessions") as mine:
                if not mine:
                    return 0, 0
                removed: tuple[int, int] = await self.store.write(
                    lambda tx: tx.sessions.purge(tx.now(), tx.now() - keep)
                )
        except Exception:  # boundary: a failed clean-up must not stop the scheduler
            log.exception("session clean-up failed")
            return 0, 0
        if any(removed):
            log.info("sessions: removed %d expired session(s) and %d old failed-login record(s)", *removed)
        return removed

    async def stop(self) -> None:
        """Stop intake, then the relay, then channels and lifespans (idempotent).

        Order matters: receive loops stop first so nothing new arrives, the
        relay's worker then finishes in-flight sends while channels still
        work, and channels close last. The shutdown runs as its own task:
        cancelling a caller (a grace period running out) does not cut it
        short, and a later ``stop()`` or ``close()`` waits for the same one,
        so the store is never closed under a running worker.
        """
        if not self._started:
            return
        if self._stop_task is None:
            self._stopped = True
            self._stop_task = asyncio.get_running_loop().create_task(self._shutdown(), name="bridge-stop")
        await asyncio.shield(self._stop_task)

    async def _shutdown(self) -> None:
        if getattr(self, "scheduler", None) is not None and self.scheduler.running:
            self.scheduler.shutdown(wait=False)
        if "events" in self._opened:
            self._opened.remove("events")
            await self.events.stop()
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if "relay" in self._opened:
            self._opened.remove("relay")
            try:
                await self.relay.stop()
            except Exception:  # boundary: shutdown continues whatever one part does
                log.exception("relay stop failed")
        for name, channel in reversed(self.channels.items()):
            try:
                await channel.stop()
            except Exception:  # boundary: one channel must not keep the others open
                log.exception("channel %s: stop failed", name)
        try:
            await self._lifespans.aclose()
        except Exception:  # boundary: plugin teardown errors are logged, shutdown goes on
            log.exception("a plugin lifespan failed at shutdown")

    async def close(self) -> None:
        """Stop if started, then close the HTTP session and the store."""
        await self.stop()
        if "http" in self._opened:
            self._opened.remove("http")
            await self.http.close()
        if "store" in self._opened:
            self._opened.remove("store")
            await self.store.close()

    # --- health ----------------------------------------------------------------

    def health(self) -> dict[str, Any]:
        """Return the /healthz document (see DESIGN §6)."""
        from bridge import __version__

        plugins = {
            name: {"version": info.version, "channels": sorted(info.channels), "error": info.error}
            for name, info in sorted(self.registry.plugins.items())
        }
        channels = {
            name: {"state": state.value, "reason": reason}
            for name, (state, reason) in ((n, self.channel_state(n)) for n in self.channels)
        }
        store = _safe(self.store.health) if "store" in self._opened else {"status": "closed"}
        outbox = _safe(self.relay.health) if hasattr(self, "relay") else {}
        scheduler = {
            "running": bool(getattr(self, "scheduler", None) and self.scheduler.running),
            "jobs": [
                {"id": job.id, "next_run": job.next_run_time.isoformat() if job.next_run_time else None}
                for job in (self.scheduler.get_jobs() if getattr(self, "scheduler", None) else [])
            ],
        }
        degraded = (
            store.get("status") != "ok"
            or any(info["error"] for info in plugins.values())
            or any(c["state"] != ChannelState.CONNECTED.value for c in channels.values())
            or (self._started and not scheduler["running"] and not self._stopped)
            or bool(outbox.get("degraded"))
        )
        return {
            "status": "degraded" if degraded else "ok",
            "version": __version__,
            "plugins": plugins,
            "channels": channels,
            "store": store,
            "scheduler": scheduler,
            "outbox": outbox,
        }


def _safe(fn: Callable[[], Mapping[str, Any] | None]) -> dict[str, Any]:
    """Call a health function; a failure becomes an error entry, not a 500."""
    try:
        result = fn()
        return dict(result) if result is not None else {}
    except Exception as err:  # boundary: /healthz must answer even when a part is broken
        log.exception("health check failed")
        return {"status": "error", "error": f"{type(err).__name__}: {err}"}


class _Observer:
    """The relay's reports, turned into Prometheus metrics and channel health (``RelayObserver``)."""

    def __init__(self, bridge: Bridge) -> None:
        self._bridge = bridge
        self._metrics = bridge.metrics

    def message_stored(self, channel: str, direction: str) -> None:
        self._metrics.messages_stored.labels(channel=channel, direction=direction).inc()
        # May run on the store's writer thread (after a commit): poke() is thread-safe.
        events = getattr(self._bridge, "events", None)
        if events is not None:
            events.poke()

    def login_refused(self) -> None:
        self._metrics.login_failures.inc()

    def delivery(self, channel: str, outcome: str) -> None:
        self._metrics.deliveries.labels(channel=channel, outcome=outcome).inc()

    def possible_duplicate(self, channel: str) -> None:
        self._metrics.possible_duplicates.labels(channel=channel).inc()

    def outbox(self, depth: int, oldest_age: float) -> None:
        self._metrics.outbox_depth.set(depth)
        self._metrics.outbox_oldest_age.set(oldest_age)

    def inbound_refused(self, channel: str, reason: str) -> None:
        self._metrics.inbound_refused.labels(channel=channel, reason=reason).inc()

    def credentials_refused(self, channel: str, reason: str) -> None:
        # A channel may already have said BAD_CREDENTIALS, which is more precise: keep it.
        if self._bridge.channel_state(channel)[0] is not ChannelState.BAD_CREDENTIALS:
            self._bridge.report_channel(channel, ChannelState.DEGRADED, reason)
