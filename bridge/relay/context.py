"""What relay helpers (and H6's commands) need, without a back-reference to the app.

``RelayContext`` is read from the store's writer thread inside ``store.write``
functions, so it holds only immutable settings plus a thread-safe wake flag.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from bridge.relay.rules import Rules
from bridge.relay.templates import Templates

if TYPE_CHECKING:
    import pluggy

    from bridge.config import Config


@dataclass
class RelayContext:
    """Settings and services for sync relay code running inside a transaction.

    :param windows: each enabled channel's reply window in seconds (None: no window).
    :param channels: names of the channels that can send now (``console`` is always there).
    :param commands: the agent command table (``bridge.relay.commands.CommandTable``).
    """

    config: Config
    pm: pluggy.PluginManager
    templates: Templates
    rules: Rules
    windows: Mapping[str, float | None] = field(default_factory=dict)
    channels: frozenset[str] = frozenset({"console"})
    #: channels that can send a re-engagement template (``Channel.can_reengage``)
    reengage: frozenset[str] = frozenset()
    clock: Callable[[], float] = time.time
    commands: Any = None
    #: ``count_stored(channel, direction)``: called after the commit of each stored message (metrics).
    count_stored: Callable[[str, str], None] | None = None
    #: ``count_login_failure()``: called after the commit of each refused login (metrics).
    count_login_failure: Callable[[], None] | None = None
    _wake_wanted: threading.Event = field(default_factory=threading.Event)

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

    def channel_window(self, channel: str) -> float | None:
        """Seconds a recipient's reply window stays open on ``channel``, or None."""
        return self.windows.get(channel)

    def can_reengage(self, channel: str) -> bool:
        """Whether ``channel`` can send a re-engagement template to a closed window."""
        return channel in self.reengage

    def channel_enabled(self, channel: str) -> bool:
        """Whether deliveries on ``channel`` can be made by this bridge."""
        return channel in self.channels

    def stored(self, tx: Any, channel: str, direction: str) -> None:
        """Count a message stored in ``tx`` once that transaction commits."""
        counter = self.count_stored
        if counter is not None:
            tx.after_commit(lambda: counter(channel, direction))

    def wake(self) -> None:
        """Ask the outbox worker to look again once the current write has committed."""
        self._wake_wanted.set()

    def take_wake(self) -> bool:
        """Return and clear the wake request (the relay calls this after each commit)."""
        wanted = self._wake_wanted.is_set()
        self._wake_wanted.clear()
        return wanted
