"""Addresses as each platform defines them: checked and normalized by the platform's own channel.

Why through the channel: what a WhatsApp number, a Messenger PSID or a
Telegram chat id looks like is that platform's rule, and a plugin knows it
(``Channel.normalize_address``). The core only splits ``CHANNEL:ADDRESS`` and
asks. An address a channel refuses is never stored: a look-alike (``0043``
for chat ``43``) would otherwise make an agent a stranger to the bridge.
"""

from __future__ import annotations

from collections.abc import Mapping

from bridge.agents.fields import AgentError
from bridge.channel import Channel
from bridge.models import Address

CONSOLE = "console"
_MAX_ADDRESS = 320


class Addresses:
    """The installed channels' address rules and display labels.

    :param channels: every installed channel class by name (enabled or not:
        a stored address stays readable when its channel is switched off).
    """

    def __init__(self, channels: Mapping[str, type[Channel]]) -> None:
        self._channels = dict(channels)

    @property
    def names(self) -> frozenset[str]:
        """The channel names an address may use (``console`` included)."""
        return frozenset(self._channels) | {CONSOLE}

    def normalize(self, channel: str, address: str) -> str:
        """The canonical form of ``address`` on ``channel`` (what blind indexes are computed on).

        :raises ValueError: the channel is unknown, or refuses the address.
        """
        if channel == CONSOLE:
            return ""
        cls = self._channels.get(channel)
        if cls is None:
            raise ValueError(f"unknown channel {channel!r}")
        text = address.strip()
        if not text:
            raise ValueError(f"empty {channel} address")
        if len(text) > _MAX_ADDRESS:
            raise ValueError(f"{channel} address too long")
        normalized = cls.normalize_address(text)
        if not normalized:
            raise ValueError(f"not a {cls.display_label()} address")
        return normalized

    def parse(self, text: str) -> Address:
        """Parse an admin's ``CHANNEL:ADDRESS`` (``console`` needs no address), normalized by its channel.

        :raises AgentError: saying what is wrong with the text.
        """
        try:
            address = Address.parse(text)
        except ValueError as err:
            raise AgentError(str(err)) from err
        if address.channel not in self.names:
            known = ", ".join(sorted(self.names))
            raise AgentError(f"unknown channel {address.channel!r} in {text!r}: known channels are {known}")
        try:
            return Address(address.channel, self.normalize(address.channel, address.address))
        except ValueError as err:
            raise AgentError(f"{err}: {address.address!r}") from err

    def label(self, channel: str) -> str:
        """The platform's display name (``whatsapp`` → ``WhatsApp``)."""
        cls = self._channels.get(channel)
        if cls is not None:
            return cls.display_label()
        return "Console" if channel == CONSOLE else channel[:1].upper() + channel[1:]
