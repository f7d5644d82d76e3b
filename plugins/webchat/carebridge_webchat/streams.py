"""The customers' open event streams, and what wakes them.

Every stream shows its customer their own conversation as the core has
stored it (``ChannelContext.history``): on opening it sends what the
browser has not seen yet (``Last-Event-ID``), then it sleeps until woken and
sends what is new. Two things wake the streams of a chat: the customer's own
message once the core committed it (so their other tabs show it too), and a
delivery the core hands ``send()`` (an agent's reply, a notice). Reading
the store instead of pushing the delivery's text keeps one numbering for
live and replayed messages (a reconnecting tab never shows one twice), and
a wake that finds no open stream costs nothing: the message is in the
history the next page load reads.
"""

from __future__ import annotations

import asyncio
import json
from collections import defaultdict
from collections.abc import Sequence

from aiohttp import web
from aiohttp_sse import EventSourceResponse

from bridge import ChannelContext, HistoryEntry

#: Messages replayed to a stream that opens without ``Last-Event-ID`` (a new page load).
HISTORY = 50
#: How often a sleeping stream looks whether its browser is still there.
CHECK_SECONDS = 2.0


class Stream:
    """One open ``/events`` connection of one chat."""

    def __init__(self, address: str) -> None:
        self.address = address
        self.woken = asyncio.Event()
        self.closing = False


class StreamHub:
    """Open streams by chat address; ``wake`` tells a chat's streams to look for news."""

    def __init__(self) -> None:
        self._streams: defaultdict[str, set[Stream]] = defaultdict(set)

    def open(self, address: str) -> Stream:
        """Register a new stream of ``address``."""
        stream = Stream(address)
        self._streams[address].add(stream)
        return stream

    def close(self, stream: Stream) -> None:
        """Forget a stream that ended."""
        streams = self._streams.get(stream.address)
        if streams is not None:
            streams.discard(stream)
            if not streams:
                del self._streams[stream.address]

    def wake(self, address: str) -> int:
        """Wake every open stream of ``address``; return how many there are."""
        streams = self._streams.get(address, set())
        for stream in streams:
            stream.woken.set()
        return len(streams)

    def close_all(self) -> None:
        """Ask every stream to end (shutdown)."""
        for streams in self._streams.values():
            for stream in streams:
                stream.closing = True
                stream.woken.set()

    def count(self, address: str) -> int:
        """Open streams of ``address``."""
        return len(self._streams.get(address, ()))


def event_data(entry: HistoryEntry) -> str:
    """The ``data`` of one ``message`` event (DESIGN §12)."""
    return json.dumps(
        {"id": entry.id, "direction": entry.direction, "text": entry.text, "created_at": entry.created_at},
        ensure_ascii=False,
    )


def last_event_id(request: web.Request) -> int:
    """The id of the last message the browser saw (``Last-Event-ID``), 0 for none."""
    text = request.headers.get("Last-Event-ID", "").strip()
    return int(text) if text.isdigit() and len(text) < 19 else 0


def gone(request: web.Request) -> bool:
    """Whether the browser closed the connection (aiohttp drops the transport at once)."""
    transport = request.transport
    return transport is None or transport.is_closing()


async def pump(
    ctx: ChannelContext, request: web.Request, sse: EventSourceResponse, stream: Stream, last_id: int
) -> None:
    """Send the chat's messages newer than ``last_id`` now and after every wake, until the end.

    Ends when the browser goes away (seen within ``CHECK_SECONDS``, or by a
    failed write or ping) or the hub closes, so a closed tab does not hold
    one of the chat's few stream places.
    """
    disconnected = asyncio.ensure_future(sse.wait())
    try:
        while not stream.closing and not disconnected.done() and not gone(request):
            stream.woken.clear()
            entries: Sequence[HistoryEntry] = await ctx.history(stream.address, HISTORY)
            for entry in entries:
                if entry.id > last_id:
                    await sse.send(event_data(entry), id=str(entry.id), event="message")
                    last_id = entry.id
            woken = asyncio.ensure_future(stream.woken.wait())
            try:
                await asyncio.wait((woken, disconnected), timeout=CHECK_SECONDS, return_when=asyncio.FIRST_COMPLETED)
            finally:
                woken.cancel()
    except (ConnectionResetError, TimeoutError):
        return
    finally:
        disconnected.cancel()
