"""The table of agent commands: names, handlers, help, and how a message is split into ``/name args``.

Plugins fill it through the ``register_commands`` hook (the built-ins come
first, from the core's own ``core-commands`` entry point); the relay looks
commands up in it (``bridge.relay.commands``).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from bridge.errors import PluginLoadError
from bridge.plugins.hooks import Hooks

#: ``handler(ctx, args)``: ``ctx`` is a ``bridge.relay.commands.CommandContext``; returns the answer or None.
Handler = Callable[[Any, str], "str | None"]
ESCAPE_HELP = 'To send a customer a text that starts with "/", type it twice: //5 stars sends "/5 stars".'
_NAME = re.compile(r"^[a-z][a-z0-9_-]{0,31}$")


@dataclass(frozen=True)
class Command:
    """One registered command.

    :param public: usable before ``/login`` (only ``/login`` and ``/help``).
    """

    name: str
    handler: Handler
    help: str
    owner: str = "core"
    public: bool = False


@dataclass
class CommandTable:
    """The commands agents can send, built-ins first, then plugins'."""

    commands: dict[str, Command] = field(default_factory=dict)

    @classmethod
    def build(cls, hooks: Hooks) -> CommandTable:
        """Return the table of every plugin's ``register_commands``, built-ins (``core-commands``) first.

        :raises PluginLoadError: a plugin registers a malformed or taken name.
        """
        table = cls()
        hooks.register_commands(table.register)
        return table

    def register(
        self,
        name: str,
        handler: Handler,
        help: str,
        *,
        owner: str = "core",
        public: bool = False,  # noqa: A002
    ) -> None:
        """Add ``/name``; ``handler(ctx, args)`` returns the answer text or None.

        :raises PluginLoadError: malformed name, not callable, or already registered.
        """
        name = name.lstrip("/")
        if not _NAME.match(name):
            raise PluginLoadError(
                f"plugin {owner!r} registers command {name!r}: use lower-case letters, digits, '-' or '_'"
            )
        if not callable(handler):
            raise PluginLoadError(f"plugin {owner!r} registers command /{name} without a callable handler")
        if name in self.commands:
            raise PluginLoadError(
                f"plugin {owner!r} registers command /{name}, which {self.commands[name].owner!r} already has"
            )
        self.commands[name] = Command(name, handler, " ".join(help.split()), owner=owner, public=public)

    def lookup(self, name: str) -> Command | None:
        """Return the command called ``name`` (with or without ``/``, any case), or None."""
        return self.commands.get(name.lstrip("/").lower())

    def help_text(self) -> str:
        """One line per command, in registration order."""
        lines = []
        for c in self.commands.values():
            if c.help.startswith(f"/{c.name}"):  # the help gives its own usage: "/switch ID — ..."
                lines.append(c.help)
            else:
                lines.append(f"/{c.name} — {c.help}" if c.help else f"/{c.name}")
        return "Commands:\n" + "\n".join(lines) + "\n" + ESCAPE_HELP


def parse_command(text: str, *, first_line_only: bool = False) -> tuple[str, str] | None:
    """Split ``/name args`` into ``(name, args)``; None when ``text`` is not a command.

    :param first_line_only: email agents send the command as the first line of
        a body that may carry a quoted reply below it.
    """
    text = text.strip()
    if not text.startswith("/") or len(text) < 2 or text[1].isspace():
        return None
    if first_line_only:
        text = text.splitlines()[0].strip()
    head, _, rest = text[1:].partition(" ")
    head, nl, more = head.partition("\n")
    args = (more + (" " if more and rest else "") + rest) if nl else rest
    return head.lower(), args.strip()
