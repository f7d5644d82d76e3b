"""An in-memory channel: a genuine ``Channel`` whose platform is a list, for tests of the relay.

``MemoryChannel`` is registered through a plugin object exactly as a
third-party platform is, so everything behind it (store, relay, worker,
commands, agents) is the production code. Subclass it with another ``name``
for a second platform (``class SecondChannel(MemoryChannel): name = "second"``).

    bridge = await make_test_bridge(tmp_path, "[channels.memory]\\n", plugins=[channels_plugin(MemoryChannel)])
    memory = bridge.channels["memory"]
    await memory.inbound("ann", "hello")        # as if the platform had posted it
    ...
    assert memory.texts_to("agent-1") == [...]  # what the bridge sent
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any

from bridge import (
    Channel,
    ChannelContext,
    DeliveryReceipt,
    DeliveryUncertain,
    InboundMessage,
    OutboundMessage,
    PendingMedia,
    RegisterChannel,
    StatusUpdate,
    hookimpl,
)


class MemoryChannel(Channel):
    """A channel that keeps what it sends; ``script`` makes sends fail in order.

    Receipts are ``"<name>-out-<n>"``, inbound ids ``"<name>-in-<n>"``: unique
    per channel, as the core requires of every platform's ids.

    :ivar sent: every message the "platform" accepted, in order.
    :ivar attempts: every ``send`` call, accepted or not.
    :ivar script: exceptions (or None for "accept") the next sends raise, in order.
    :ivar receipts: delivery id → the platform id answered for it.
    :ivar read_marks: ``(sender, external_id)`` of every ``mark_read``.
    :ivar gate: when set, sends wait for it (a slow platform); ``in_flight``
        and ``max_in_flight`` count the waiting sends.
    :ivar early_report: a status report the platform posts before its send
        answer reaches us (a race real webhooks win); sent once.
    :ivar resumed: what ``resume_media`` was handed, in order.
    :ivar bad_receipt: a malformed answer a buggy plugin might return instead of its receipt.
    :ivar lose_answers: the next N sends reach the platform (kept in ``sent``) but their answer is
        lost (``DeliveryUncertain``).
    :ivar reports_after: the platform reports each message it accepts, naming our delivery id, after
        this many seconds (as WhatsApp statuses carrying our callback data do).
    """

    name = "memory"
    max_text_length = 2000

    def __init__(self, config: Mapping[str, Any], ctx: ChannelContext) -> None:
        super().__init__(config, ctx)
        self.sent: list[OutboundMessage] = []
        self.attempts: list[OutboundMessage] = []
        self.script: list[BaseException | None] = []
        self.counter = 0
        self.receipts: dict[int, str] = {}
        self.read_marks: list[tuple[str, str]] = []
        self.gate: asyncio.Event | None = None
        self.in_flight = 0
        self.max_in_flight = 0
        self.early_report: StatusUpdate | None = None
        self.resumed: list[PendingMedia] = []
        self.bad_receipt: DeliveryReceipt | None = None
        self.lose_answers = 0
        self.reports_after: float | None = None
        self._reports: set[asyncio.Task[None]] = set()

    async def mark_read(self, sender: str, external_id: str) -> None:
        """Record the read mark."""
        self.read_marks.append((sender, external_id))

    async def resume_media(self, pending: Sequence[PendingMedia]) -> None:
        """Fetch each pending file again (its bytes are ``b"bytes of <media id>"``) and save it."""
        for item in pending:
            self.resumed.append(item)
            media_id = item.attachment.media_id or ""
            data = f"bytes of {media_id}".encode()
            await self.ctx.save_media(item.external_id, item.index, data, item.attachment.mime)

    async def send(self, message: OutboundMessage) -> DeliveryReceipt:
        """Accept ``message`` (after ``gate``, unless ``script`` says otherwise) and answer its id."""
        self.attempts.append(message)
        if self.gate is not None:
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
            try:
                await self.gate.wait()
            finally:
                self.in_flight -= 1
        if self.script:
            item = self.script.pop(0)
            if item is not None:
                raise item
        self.counter += 1
        self.sent.append(message)
        if self.bad_receipt is not None:
            return self.bad_receipt
        self.receipts[message.delivery_id] = f"{self.name}-out-{self.counter}"
        if self.reports_after is not None:
            self._report_later(message.delivery_id, self.receipts[message.delivery_id], self.reports_after)
        if self.lose_answers > 0:
            self.lose_answers -= 1
            raise DeliveryUncertain("the connection dropped after the request was sent", confirmable=True)
        if self.early_report is not None:
            report, self.early_report = self.early_report, None
            await self.ctx.update_status([replace(report, external_id=self.receipts[message.delivery_id])])
        return DeliveryReceipt(external_ids=(self.receipts[message.delivery_id],))

    def _report_later(self, delivery_id: int, external_id: str, delay: float) -> None:
        """Post a ``delivered`` report naming the delivery, as WhatsApp statuses do, after ``delay``."""

        async def report() -> None:
            await asyncio.sleep(delay)
            update = StatusUpdate(channel=self.name, status="delivered", timestamp=time.time(),
                                  external_id=external_id, delivery_id=delivery_id)  # fmt: skip
            await self.ctx.update_status([update])

        task = asyncio.get_running_loop().create_task(report())
        self._reports.add(task)
        task.add_done_callback(self._reports.discard)

    async def inbound(self, sender: str, text: str, **kwargs: Any) -> str:
        """Deliver one message as if the platform had posted it; return its id.

        :param kwargs: more ``InboundMessage`` fields (``external_id``,
            ``timestamp``, ``reply_to``, ``attachments``, ...).
        """
        self.counter += 1
        external_id = str(kwargs.pop("external_id", f"{self.name}-in-{self.counter}"))
        message = InboundMessage(
            channel=self.name, sender=sender, external_id=external_id, text=text,
            timestamp=kwargs.pop("timestamp", time.time()), **kwargs,
        )  # fmt: skip
        await self.ctx.deliver([message])
        return external_id

    def texts_to(self, recipient: str) -> list[str]:
        """The texts accepted for ``recipient`` (templates left out), in order."""
        return [m.text for m in self.sent if m.recipient == recipient and not m.template]


class _ChannelsPlugin:
    """A plugin object registering channel classes (what an entry point's module does)."""

    def __init__(self, classes: Sequence[type[Channel]]) -> None:
        self.classes = tuple(classes)

    def __repr__(self) -> str:
        return f"channels_plugin({', '.join(c.__name__ for c in self.classes)})"

    @hookimpl
    def register_channels(self, register: RegisterChannel) -> None:
        """Register the classes."""
        for cls in self.classes:
            register(cls)


def channels_plugin(*classes: type[Channel]) -> tuple[str, object]:
    """Return a ``(name, plugin)`` pair registering ``classes``, for ``make_test_bridge(plugins=[...])``.

    The plugin's name is the first channel's, as an entry point's would be.
    """
    if not classes:
        raise ValueError("channels_plugin needs at least one Channel class")
    return classes[0].name, _ChannelsPlugin(classes)
