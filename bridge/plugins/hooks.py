"""Every call of a plugin hook goes through this module.

Why one place: pluggy is synchronous, and Carebridge mixes sync hooks
(registrations, decisions) with async-allowed notifications; the rules for
each kind (who is called, in which order, what a failing plugin costs) live
here once, and so will the change when pluggy gains async hook calls. The
hook specifications themselves are in :mod:`bridge.hookspecs`.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractAsyncContextManager
from typing import TYPE_CHECKING, Any

import pluggy

from bridge.errors import PluginLoadError
from bridge.models import Finding

if TYPE_CHECKING:
    import argparse

    from bridge.errors import DeliveryError
    from bridge.models import DeliveryReceipt, InboundMessage, OutboundMessage

log = logging.getLogger(__name__)


def implementations(hook: pluggy.HookCaller) -> Iterator[pluggy.HookImpl]:
    """The plain implementations of ``hook`` in registration order (pluggy's wrappers skipped)."""
    for impl in hook.get_hookimpls():
        if not (impl.hookwrapper or impl.wrapper):
            yield impl


def call_impl(impl: pluggy.HookImpl, **kwargs: Any) -> Any:
    """Call one implementation with the arguments it declares (pluggy lets impls take a subset)."""
    return impl.function(**{name: kwargs[name] for name in impl.argnames})


class Hooks:
    """Typed calls of the plugin hooks on one plugin manager.

    :ivar pm: the pluggy manager (registration and discovery use it directly).
    :ivar bridge: what notification hooks receive as their ``bridge`` argument
        (the running daemon's Bridge; None outside the daemon).
    """

    def __init__(self, pm: pluggy.PluginManager, bridge: object | None = None) -> None:
        self.pm = pm
        self.bridge = bridge

    # -- sync hooks ---------------------------------------------------------
    def configure(self, config: Any) -> None:
        """Let every plugin read and check its part of ``config``.

        :raises ConfigError: from the first plugin that refuses it (the message names the key or FILE:LINE).
        """
        for impl in implementations(self.pm.hook.configure):
            call_impl(impl, config=config)

    def detect_sensitive(self, text: str) -> list[Finding]:
        """Every plugin's findings in ``text``, sorted by position (overlaps are kept)."""
        found: list[Finding] = []
        for result in self.pm.hook.detect_sensitive(text=text):
            if result:
                found.extend(f for f in result if isinstance(f, Finding))
        found.sort(key=lambda f: (f.start, -f.end))
        return found

    def choose_agent(self, strategy: str, conversation: Any, candidates: Sequence[Any]) -> Any:
        """The first strategy's choice (firstresult): None when no plugin answers to ``strategy``."""
        return self.pm.hook.choose_agent(strategy=strategy, conversation=conversation, candidates=candidates)

    def register_commands(self, register: Callable[..., None]) -> None:
        """Let each plugin add agent commands; ``register`` receives ``owner=<plugin name>`` too.

        Plugins are asked in pluggy's call order, so the built-ins (``tryfirst``)
        come first: ``/help`` lists them first and a plugin cannot take their names.

        :raises PluginLoadError: a plugin's registration fails (naming the plugin).
        """
        for impl in reversed(list(implementations(self.pm.hook.register_commands))):

            def bound(
                name: str, handler: Any, help: str, *, public: bool = False, _owner: str = impl.plugin_name
            ) -> None:  # noqa: A002 (the hook's contract names it help)
                register(name, handler, help, owner=_owner, public=public)

            try:
                call_impl(impl, register=bound)
            except PluginLoadError:
                raise
            except Exception as err:  # boundary: a plugin's bug is reported by name
                raise PluginLoadError(f"plugin {impl.plugin_name!r}: register_commands failed: {err!r}") from err

    def register_cli(self, subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> list[str]:
        """Let each plugin add CLI subcommands; return one line per plugin that failed (the others count)."""
        failures: list[str] = []
        for impl in implementations(self.pm.hook.register_cli):
            try:
                call_impl(impl, subparsers=subparsers)
            except Exception as err:  # boundary: a plugin's bug must not take the whole CLI (and --help) down
                failures.append(f"plugin {impl.plugin_name!r}: register_cli failed: {err!r}")
        return failures

    def lifespans(self, bridge: object) -> list[tuple[str, AbstractAsyncContextManager[None]]]:
        """Each plugin's lifespan context, in registration order (enter in order, leave in reverse).

        :raises PluginLoadError: a plugin returned something that is not an async context manager.
        """
        out: list[tuple[str, AbstractAsyncContextManager[None]]] = []
        for impl in implementations(self.pm.hook.lifespan):
            cm = call_impl(impl, bridge=bridge)
            if cm is None:
                continue
            if not (hasattr(cm, "__aenter__") and hasattr(cm, "__aexit__")):
                raise PluginLoadError(
                    f"plugin {impl.plugin_name!r}: lifespan returned {type(cm).__name__}, not an async context manager"
                )
            out.append((impl.plugin_name, cm))
        return out

    # -- notifications (async-allowed) ----------------------------------------
    async def message_received(self, message: InboundMessage, conversation_id: int) -> None:
        """Tell observers an inbound customer message was committed."""
        await self._notify(self.pm.hook.message_received, message=message, conversation_id=conversation_id)

    async def message_sent(self, message: OutboundMessage, receipt: DeliveryReceipt) -> None:
        """Tell observers a platform accepted a delivery."""
        await self._notify(self.pm.hook.message_sent, message=message, receipt=receipt)

    async def delivery_failed(self, message: OutboundMessage, error: DeliveryError) -> None:
        """Tell observers a delivery failed for good."""
        await self._notify(self.pm.hook.delivery_failed, message=message, error=error)

    async def _notify(self, hook: pluggy.HookCaller, **kwargs: Any) -> None:
        """Run every implementation (sync or async) concurrently; log a failing plugin by name."""
        kwargs["bridge"] = self.bridge

        async def one(impl: pluggy.HookImpl) -> None:
            try:
                result = call_impl(impl, **kwargs)
                if inspect.isawaitable(result):
                    await result
            except Exception:  # boundary: one plugin must not break delivery for the others
                log.exception("plugin %r failed in hook %s", impl.plugin_name, hook.name)

        await asyncio.gather(*(one(i) for i in reversed(list(implementations(hook)))))
