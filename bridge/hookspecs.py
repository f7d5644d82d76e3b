"""Hook specifications: the complete Carebridge plugin API.

A plugin is a module (or object) with functions marked ``@hookimpl``,
registered through the ``carebridge`` entry-point group::

    [project.entry-points.carebridge]
    myplatform = "myplatform_package"

Sync hooks return promptly and do no I/O. *Async-allowed* hooks may be
``async def``; the core awaits every implementation concurrently and logs a
failing plugin's exception by name without stopping the others. No hook is
both async-allowed and ``firstresult``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import AbstractAsyncContextManager
from typing import TYPE_CHECKING, Any

import pluggy

if TYPE_CHECKING:
    import argparse

    from bridge.channel import RegisterChannel
    from bridge.errors import DeliveryError
    from bridge.models import DeliveryReceipt, Finding, InboundMessage, OutboundMessage

hookspec = pluggy.HookspecMarker("carebridge")
hookimpl = pluggy.HookimplMarker("carebridge")

RegisterCommand = Callable[..., None]


@hookspec
def register_channels(register: RegisterChannel) -> None:
    """Register the Channel classes this plugin provides.

    Call ``register(MyChannel)`` once per class. The class's ``name`` is the
    channel name used in addresses (``myplatform:ID``), in the config section
    ``[channels.myplatform]`` and in the webhook path ``/webhooks/myplatform``.

    :param register: callback. A class that is not a ``Channel`` subclass, a
        name another plugin already registered, or an exception from this
        hook makes the whole plugin fail to load: it is reported by name in
        ``carebridge plugins`` and ``/healthz``, and start-up stops only if one
        of its channels is enabled.
    """


@hookspec
def configure(config: Any) -> None:
    """Read and check the parts of the configuration this plugin uses (sync, no network).

    Called after the configuration is loaded: by ``carebridge check-config``,
    at start-up and again on every SIGHUP with the new configuration. Keep
    what you read (a plugin object can hold it) and use it from your other
    hooks. Raise ``ConfigError`` naming the key, or ``FILE:LINE`` for a file
    the configuration points to: ``check-config`` prints it, start-up stops,
    and a SIGHUP keeps the previous configuration.

    :param config: the whole, read-only configuration (``config.sensitive``,
        ``config.channels[...]``, …).
    """


@hookspec
def lifespan(bridge: Any) -> AbstractAsyncContextManager[None] | None:
    """Return an async context manager entered at start-up and left at shutdown.

    Contexts are entered in plugin registration order and left in reverse,
    after the channels have stopped. Use it for background resources that are
    not a channel (a scheduler job, a connection pool). Returning anything but
    an async context manager (or None) stops start-up naming the plugin.

    :param bridge: the running ``bridge.app.bridge.Bridge``.
    """


@hookspec
def message_received(bridge: Any, message: InboundMessage, conversation_id: int) -> None:
    """Async-allowed. Observe an inbound customer message after it was committed.

    Runs in a background task after the webhook was answered, so a slow
    observer never delays the platform; tasks still running at shutdown are
    awaited, then cancelled.

    :param message: the message as the channel parsed it.
    :param conversation_id: the conversation it was stored in.
    """


@hookspec
def message_sent(bridge: Any, message: OutboundMessage, receipt: DeliveryReceipt) -> None:
    """Async-allowed. Observe a delivery the platform accepted.

    :param receipt: the platform's message id(s).
    """


@hookspec
def delivery_failed(bridge: Any, message: OutboundMessage, error: DeliveryError) -> None:
    """Async-allowed. Observe a delivery that failed for good (after its last retry).

    :param error: the last error; ``error.code`` is the platform's code.
    """


@hookspec
def detect_sensitive(text: str) -> Sequence[Finding] | None:
    """Return the sensitive spans (bank account numbers, login codes, …) in ``text``.

    Every implementation runs; findings are merged. Must be fast and pure:
    it runs on every message before it is stored.
    """


@hookspec(firstresult=True)
def choose_agent(strategy: str, conversation: Any, candidates: Sequence[Any]) -> Any | None:
    """Pick the agent for a conversation that needs one (firstresult, sync).

    Return None unless ``strategy`` is the name of your strategy; the first
    non-None answer wins. Built-ins: ``least_busy``, ``round_robin``.

    :param strategy: the configured ``[routing] strategy``.
    :param conversation: the conversation to assign (id, queue, channel).
    :param candidates: online agents serving its queue, under capacity.
    :returns: one of ``candidates``, or None to leave it waiting.
    """


@hookspec
def register_commands(register: RegisterCommand) -> None:
    """Register extra agent commands (``/name args`` in any agent channel).

    Call ``register(name, handler, help)``. ``handler(ctx, args)`` is a plain
    (sync) function run inside the store transaction that records the agent's
    message, so a command and its effects commit together or not at all. It
    gets a ``bridge.relay.commands.CommandContext`` (the agent, the
    transaction, relay helpers) and the text after the command name, and
    returns the text answered to the agent, or None.
    """


@hookspec
def register_cli(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add subcommands to the ``carebridge`` CLI.

    Create a parser with ``subparsers.add_parser(...)``, give it
    ``-c/--config`` with ``bridge.add_config_option(parser)`` and set
    ``func=callable(args) -> int`` with ``parser.set_defaults``. Raise a
    ``BridgeError`` for a user error: the CLI prints it as one line and exits
    1. ``args.plugin_registry`` holds the plugins already loaded. An
    exception from this hook is reported on stderr and the other commands
    still work.
    """
