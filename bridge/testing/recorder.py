"""A recorder of what a channel hands the core: the ``ChannelContext`` for a plugin's own tests.

The context is a channel's only seam to the core, so a plugin test builds
the channel exactly as the core does, with these callbacks in place of the
relay::

    core = RecordingCore(media=False)
    channel = AcmeChannel(section, core.context(http, "acme"))
    ...                                    # post a webhook to channel.web_app()
    assert [m.text for m in core.messages] == ["hello"]

Callbacks a platform must never use (a platform whose media arrive as URLs
calling ``save_media``) fail the test when called; ``fail_deliver`` and
``fail_save`` make the core's side fail, as a full disk or a broken store would.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence

import aiohttp

from bridge import ChannelContext, ChannelState, InboundMessage, StatusUpdate


class RecordingCore:
    """Records deliveries, statuses, media and health reports; can be told to fail.

    :param statuses: whether this platform reports statuses at all.
    :param media: whether this platform hands media bytes over.
    """

    def __init__(self, *, statuses: bool = True, media: bool = True) -> None:
        self.accepts_statuses = statuses
        self.accepts_media = media
        self.deliveries: list[list[InboundMessage]] = []
        self.status_batches: list[list[StatusUpdate]] = []
        self.media: list[tuple[str, int, bytes, str | None]] = []
        self.reports: list[tuple[ChannelState, str | None]] = []
        self.fail_deliver: Exception | None = None
        self.fail_save: Exception | None = None
        self.save_attempts = 0
        self.status_arrived = asyncio.Event()
        self.state: dict[str, str] = {}

    @property
    def messages(self) -> list[InboundMessage]:
        """Every delivered message, in order."""
        return [m for batch in self.deliveries for m in batch]

    @property
    def statuses(self) -> list[StatusUpdate]:
        """Every status update, in order."""
        return [s for batch in self.status_batches for s in batch]

    async def deliver(self, messages: Sequence[InboundMessage]) -> None:
        """Record one batch, or raise ``fail_deliver`` (a failing store) recording nothing."""
        if self.fail_deliver is not None:
            raise self.fail_deliver
        self.deliveries.append(list(messages))

    async def update_status(self, updates: Sequence[StatusUpdate]) -> None:
        """Record one batch of status reports."""
        if not self.accepts_statuses:
            raise AssertionError("this platform reports no statuses; update_status must not be called")
        self.status_batches.append(list(updates))
        self.status_arrived.set()

    async def save_media(self, external_id: str, index: int, data: bytes, mime: str | None) -> None:
        """Record one attachment's bytes, or raise ``fail_save``."""
        if not self.accepts_media:
            raise AssertionError("this platform's media arrive as URLs; save_media must not be called")
        self.save_attempts += 1
        if self.fail_save is not None:
            raise self.fail_save
        self.media.append((external_id, index, data, mime))

    async def load_state(self, key: str) -> str | None:
        """What the channel saved under ``key`` (kept in ``state``, in memory)."""
        return self.state.get(key)

    async def save_state(self, key: str, value: str) -> None:
        """Keep ``value`` under ``key`` in ``state``."""
        self.state[key] = value

    def report(self, state: ChannelState, reason: str | None) -> None:
        """Record a health report."""
        self.reports.append((state, reason))

    def context(
        self, http: aiohttp.ClientSession, channel: str, *, max_body: int = 2 * 1024 * 1024, public_url: str = ""
    ) -> ChannelContext:
        """The ``ChannelContext`` the core would lend ``channel``, wired to this recorder."""
        return ChannelContext(
            http=http,
            deliver=self.deliver,
            update_status=self.update_status,
            save_media=self.save_media,
            report=self.report,
            log=logging.getLogger(f"carebridge.{channel}"),
            max_body=max_body,
            public_url=public_url,
            load_state=self.load_state,
            save_state=self.save_state,
        )
