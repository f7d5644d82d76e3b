"""What relay code needs inside a transaction, and what it reports, without a back-reference to the daemon.

``RelayContext`` is read from the store's writer thread inside
``store.write`` functions, so it holds only settings that do not change
during a transaction (a reload builds a new one) plus a thread-safe wake
flag. ``RelayObserver`` is what the relay tells the outside world (metrics,
channel health); the daemon implements it.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

from bridge.agents.addresses import Addresses
from bridge.plugins.hooks import Hooks
from bridge.relay.rules import Rules
from bridge.relay.templates import Templates

if TYPE_CHECKING:
    from bridge.channel import Channel
    from bridge.config import Config
    from bridge.relay.command_table import CommandTable
    from bridge.store import Tx


class RelayObserver(Protocol):
    """What the relay reports as it works (the daemon turns it into metrics and /healthz)."""

    def message_stored(self, channel: str, direction: str) -> None:
        """A message was committed (``in``, ``out``, ``system``, …)."""

    def login_refused(self) -> None:
        """A login code was refused (wrong, replayed or locked)."""

    def delivery(self, channel: str, outcome: str) -> None:
        """A delivery attempt ended.

        ``outcome``: ``sent``, ``retry``, ``failed``, ``held``, ``uncertain``
        (the answer was lost) or ``confirmed`` (a platform report settled a lost answer).
        """

    def possible_duplicate(self, channel: str) -> None:
        """A send was accepted after an earlier attempt of the same delivery lost its answer."""

    def outbox(self, depth: int, oldest_age: float) -> None:
        """The outbox holds ``depth`` rows waiting; the oldest pending one is ``oldest_age`` seconds old."""

    def credentials_refused(self, channel: str, reason: str) -> None:
        """A platform refused the channel's credentials while sending; deliveries there pause."""

    def inbound_refused(self, channel: str, reason: str) -> None:
        """A message was refused without changing anything (``unauthenticated``: it claimed an agent's address)."""


class SilentObserver:
    """A :class:`RelayObserver` that reports nowhere (the CLI's one-shot relay work)."""

    def message_stored(self, channel: str, direction: str) -> None:
        """Ignore."""

    def login_refused(self) -> None:
        """Ignore."""

    def delivery(self, channel: str, outcome: str) -> None:
        """Ignore."""

    def possible_duplicate(self, channel: str) -> None:
        """Ignore."""

    def outbox(self, depth: int, oldest_age: float) -> None:
        """Ignore."""

    def credentials_refused(self, channel: str, reason: str) -> None:
        """Ignore."""

    def inbound_refused(self, channel: str, reason: str) -> None:
        """Ignore."""


@dataclass
class RelayContext:
    """Settings and services for sync relay code running inside a transaction.

    :param addresses: every installed channel's address rules and label.
    :param windows: each enabled channel's reply window in seconds (None: no window).
    :param channels: names of the channels that can send now (``console`` is always there).
    :param reengage: channels that can send a re-engagement template (``Channel.can_reengage``).
    :param first_line: channels whose agents' commands are the first line only (email).
    :param unvouched: channels whose senders are only claimed (``Channel.senders_vouched`` False: email).
    :param commands: the agent command table.
    :param max_text: each enabled channel's longest text per platform message (None: no limit).
    """

    config: Config
    hooks: Hooks
    templates: Templates
    rules: Rules
    addresses: Addresses
    commands: CommandTable
    windows: Mapping[str, float | None] = field(default_factory=dict)
    channels: frozenset[str] = frozenset({"console"})
    reengage: frozenset[str] = frozenset()
    first_line: frozenset[str] = frozenset()
    unvouched: frozenset[str] = frozenset()
    max_text: Mapping[str, int | None] = field(default_factory=dict)
    observer: RelayObserver = field(default_factory=SilentObserver)
    clock: Callable[[], float] = time.time
    _wake_wanted: threading.Event = field(default_factory=threading.Event)

    @classmethod
    def build(
        cls,
        config: Config,
        hooks: Hooks,
        installed: Mapping[str, type[Channel]],
        enabled: Mapping[str, Channel],
        *,
        templates: Templates,
        rules: Rules,
        commands: CommandTable,
        observer: RelayObserver | None = None,
    ) -> RelayContext:
        """The context for ``enabled`` channel instances among the ``installed`` channel classes."""
        return cls(
            config=config,
            hooks=hooks,
            templates=templates,
            rules=rules,
            addresses=Addresses(installed),
            commands=commands,
            windows={name: type(ch).reply_window for name, ch in enabled.items()},
            channels=frozenset(enabled) | {"console"},
            reengage=frozenset(name for name, ch in enabled.items() if ch.can_reengage()),
            first_line=frozenset(name for name, ch in enabled.items() if type(ch).commands_in_first_line),
            unvouched=frozenset(name for name, ch in enabled.items() if not type(ch).senders_vouched),
            max_text={name: type(ch).max_text_length for name, ch in enabled.items()},
            observer=observer or SilentObserver(),
        )

    @property
    def strategy(self) -> str:
        """The configured ``[routing] strategy``."""
        return self.config.routing.strategy

    @property
    def public_url(self) -> str:
        """The bridge's public base URL for links (may be empty)."""
        return self.config.server.public_url

    def now(self) -> float:
        """The relay's clock, epoch seconds."""
        return self.clock()

    def label(self, channel: str) -> str:
        """The platform's display name (``whatsapp`` → ``WhatsApp``)."""
        return self.addresses.label(channel)

    def channel_window(self, channel: str) -> float | None:
        """Seconds a recipient's reply window stays open on ``channel``, or None."""
        return self.windows.get(channel)

    def can_reengage(self, channel: str) -> bool:
        """Whether ``channel`` can send a re-engagement template to a closed window."""
        return channel in self.reengage

    def channel_enabled(self, channel: str) -> bool:
        """Whether deliveries on ``channel`` can be made by this bridge."""
        return channel in self.channels

    def relay_limits(self, channel: str) -> tuple[int | None, int]:
        """``(longest text per platform message, most messages per relayed text)`` on ``channel``."""
        return self.max_text.get(channel), self.config.delivery.max_parts_per_message

    def commands_in_first_line(self, channel: str) -> bool:
        """Whether an agent's command on ``channel`` is only the first line of their message."""
        return channel in self.first_line

    def senders_vouched(self, channel: str) -> bool:
        """Whether ``channel``'s platform vouches for who sent a message (False: email's From is a claim)."""
        return channel not in self.unvouched

    def stored(self, tx: Tx, channel: str, direction: str) -> None:
        """Count a message stored in ``tx`` once that transaction commits."""
        observer = self.observer
        tx.after_commit(lambda: observer.message_stored(channel, direction))

    def wake(self) -> None:
        """Ask the outbox worker to look again once the current write has committed."""
        self._wake_wanted.set()

    def take_wake(self) -> bool:
        """Return and clear the wake request (the relay calls this after each commit)."""
        wanted = self._wake_wanted.is_set()
        self._wake_wanted.clear()
        return wanted
