"""One run of the daemon process: the bridge, the web runner, signals and sd_notify.

Sequence: load the config, log which one, load plugins, open the bridge,
start the app (which starts the bridge), listen (and on ``[server]
admin_listen`` for /healthz and /metrics), ``READY=1``. Every listener puts
the edge limits in front of aiohttp (``bridge.web.edge``). SIGTERM/SIGINT:
``STOPPING=1``, stop listening, let in-flight requests finish, stop workers
and channels, exit 0 — all within ``server.shutdown_timeout``. SIGHUP:
``RELOADING=1``, re-read the file, apply what can change live, log each
changed key that needs a restart, ``READY=1``.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import signal
import ssl
from typing import TYPE_CHECKING, Any

from aiohttp import web

from bridge.config import Config, load_config
from bridge.daemon.logs import mask_secrets, secrets_in, set_level
from bridge.daemon.notify import Notifier
from bridge.errors import BridgeError, ConfigError
from bridge.plugins import PluginRegistry

if TYPE_CHECKING:
    from bridge.app.bridge import Bridge
    from bridge.web.edge import ConnectionGate

log = logging.getLogger("carebridge.daemon")

# Sections applied on SIGHUP; every other change is logged as needing a restart.
RELOADABLE = ("logging", "routing", "templates", "sensitive")


def changed_keys(old: Config, new: Config) -> list[str]:
    """List the dotted keys whose values differ between two configurations."""
    keys: list[str] = []
    for f in dataclasses.fields(Config):
        if f.name in ("path", "base_dir"):
            continue
        a, b = getattr(old, f.name), getattr(new, f.name)
        if f.name == "channels":
            for name in sorted(set(a) | set(b)):
                sa, sb = a.get(name, {}), b.get(name, {})
                keys.extend(f"channels.{name}.{k}" for k in sorted(set(sa) | set(sb)) if sa.get(k) != sb.get(k))
            continue
        for sub in dataclasses.fields(a):
            if getattr(a, sub.name) != getattr(b, sub.name):
                keys.append(f"{f.name}.{sub.name}")
    return keys


def _ssl_context(config: Config) -> ssl.SSLContext | None:
    cert, key = config.server.tls_cert, config.server.tls_key
    if cert is None or key is None:
        return None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    try:
        context.load_cert_chain(cert, key)
    except (OSError, ssl.SSLError) as err:
        raise ConfigError(f"server.tls_cert/tls_key: cannot load {cert} / {key}: {err}") from err
    return context


class Daemon:
    """One run of the daemon: owns the bridge, the web runner and the signals."""

    def __init__(self, config: Config, config_arg: str | None, registry: PluginRegistry | None = None) -> None:
        self.config = config
        self.config_arg = config_arg
        self.registry = registry
        self.notifier = Notifier()
        self.stop_requested = asyncio.Event()
        self.ready = False
        self._reloads: set[asyncio.Task[None]] = set()

    async def serve(self) -> int:
        """Run until SIGTERM/SIGINT; return the exit status."""
        from bridge.app.bridge import Bridge
        from bridge.plugins import make_plugin_manager

        config = self.config
        registry = self.registry or make_plugin_manager()
        for name, reason in sorted(registry.failures.items()):
            log.warning("plugin %s failed to load: %s", name, reason)
        ssl_context = _ssl_context(config)
        # From here a SIGTERM asks for a clean stop instead of killing a half-open store.
        self._install_signals()
        try:
            bridge = await Bridge.create(config, registry)
            self.bridge = bridge
            try:
                await self._run_app(bridge, ssl_context)
            finally:
                await bridge.close()
        finally:
            self._remove_signals()
            self.notifier.close()
        log.info("stopped")
        return 0

    async def _run_app(self, bridge: Bridge, ssl_context: ssl.SSLContext | None) -> None:
        """Start the app (and with it the bridge), listen, serve until asked to stop."""
        from bridge.web.app import make_admin_app, make_app
        from bridge.web.edge import ConnectionGate, EdgeLimits

        server = self.config.server
        timeout = server.shutdown_timeout
        limits = EdgeLimits.from_server(server)
        gate = ConnectionGate(limits.max_connections_per_address)  # one count per address across listeners
        # A quarter of the grace period for in-flight requests (webhooks answer in
        # well under a second by design); the rest for the relay's observers and sends.
        options: dict[str, Any] = {
            "handle_signals": False,
            "access_log": None,
            "shutdown_timeout": timeout * 0.25,
            **limits.runner_options(),
        }
        runner = web.AppRunner(make_app(bridge), **options)
        admin = web.AppRunner(make_admin_app(bridge), **options) if server.admin_listen else None
        try:
            await runner.setup()
            await self._listen(runner, (server.host, server.port), gate, ssl_context, "server.port")
            if admin is not None and server.admin_listen is not None:
                await admin.setup()
                await self._listen(admin, server.admin_listen, gate, ssl_context, "server.admin_listen")
            watchdog = asyncio.get_running_loop().create_task(self.notifier.watchdog(), name="watchdog")
            self.ready = True
            self.notifier.ready(self._status())
            await self.stop_requested.wait()
            log.info("stopping (grace period %.0fs)", timeout)
            self.notifier.stopping()
            watchdog.cancel()
            await asyncio.gather(watchdog, *self._reloads, return_exceptions=True)
        finally:
            if admin is not None:
                await admin.cleanup()
            await self._cleanup(runner)

    async def _listen(
        self,
        runner: web.AppRunner,
        address: tuple[str, int],
        gate: ConnectionGate,
        ssl_context: ssl.SSLContext | None,
        key: str,
    ) -> None:
        from bridge.web.edge import GuardedSite

        host, port = address
        site = GuardedSite(runner, host, port, gate, ssl_context=ssl_context)
        try:
            await site.start()
        except OSError as err:
            raise ConfigError(f"{key}: cannot listen on {host}:{port}: {err.strerror}") from err
        what = "admin endpoints (/healthz, /metrics)" if key == "server.admin_listen" else "listening"
        log.info("%s on %s", what, site.name)

    async def _cleanup(self, runner: web.AppRunner) -> None:
        """Stop listening, finish in-flight requests, stop the bridge, bounded by the grace period.

        Past the grace period the wait is abandoned with a warning; the
        bridge's own shutdown still completes in ``bridge.close()`` (each of
        its parts has its own share of the grace period).
        """
        try:
            await asyncio.wait_for(runner.cleanup(), timeout=self.config.server.shutdown_timeout)
        except TimeoutError:
            log.warning("shutdown grace period of %.0fs exceeded; closing anyway", self.config.server.shutdown_timeout)

    def _status(self) -> str:
        channels = ", ".join(self.bridge.channels) or "none"
        return f"listening on {self.config.server.host}:{self.config.server.port}; channels: {channels}"

    def _install_signals(self) -> None:
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGTERM, self._request_stop)
        loop.add_signal_handler(signal.SIGINT, self._request_stop)
        loop.add_signal_handler(signal.SIGHUP, self._schedule_reload)

    def _request_stop(self) -> None:
        if self.stop_requested.is_set():
            log.info("already stopping")
        self.stop_requested.set()

    def _remove_signals(self) -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            loop.remove_signal_handler(sig)

    def _schedule_reload(self) -> None:
        if not self.ready or self.stop_requested.is_set():
            log.info("SIGHUP ignored: not running yet, or stopping")
            return
        task = asyncio.get_running_loop().create_task(self.reload(), name="reload")
        self._reloads.add(task)
        task.add_done_callback(self._reloads.discard)

    async def reload(self) -> None:
        """Apply a SIGHUP: logging level, routing/templates/sensitive sections, relay.reload().

        The new file, rules, templates and strategy are checked first; if any
        is wrong, nothing changes and the error is logged.
        """
        from bridge.app.preflight import strategy_problem
        from bridge.relay import config_problems

        self.notifier.reloading()
        log.info("reloading %s", self.config.describe())
        try:
            new = load_config(self.config_arg)
            # All or nothing: a broken rules/templates file or strategy keeps every section as it was.
            problems = config_problems(new)
            strategy = strategy_problem(new, self.bridge.registry)
            if strategy is not None:
                problems.append(str(strategy))
            if problems:
                raise ConfigError("; ".join(problems))
            old = self.bridge.config
            applied = dataclasses.replace(old, **{section: getattr(new, section) for section in RELOADABLE})
            self.bridge.hooks.configure(applied)  # plugins keep their previous settings if they refuse
        except BridgeError as err:
            log.error("reload failed, keeping the running configuration: %s", err)
            self.notifier.ready(self._status())
            return
        channels = self.bridge.registry.channels
        mask_secrets([*secrets_in(self.bridge.config.channels, channels), *secrets_in(new.channels, channels)])
        for key in changed_keys(old, new):
            if key.split(".", 1)[0] in RELOADABLE:
                log.info("%s changed: applied", key)
            else:
                log.warning("%s changed: needs a restart to take effect", key)
        self.bridge.config = applied
        set_level(applied.logging.level)
        try:
            await self.bridge.relay.reload(applied)
        except Exception as err:  # boundary: a failing reload must not take the daemon down
            log.error("reload of rules/templates failed, keeping the previous ones: %s", err)
        self.notifier.ready(self._status())
        log.info("reload complete")
