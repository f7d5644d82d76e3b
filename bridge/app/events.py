"""Live updates for console sessions: new messages, assignments, transfers and closes.

Why a tail of the store rather than calls from every place that changes a
conversation: messages and events are written by ingest, chat commands, the
API, the worker and even other processes (the CLI); all of them commit rows
with increasing ids. The hub reads what is new after each wake-up (a message
stored, an API action: ``poke`` is safe from the store's writer thread) and
at least every ``poll`` seconds while someone listens, and fans it out to
subscribers. It does nothing while nobody listens.

Each event's id is the pair of store ids it was read up to (``"E-M"``: the
last event row and the last message row), so a client that reconnects with
``Last-Event-ID`` resumes exactly where it stopped, from the bounded ring of
recent events or, when that does not reach back far enough (or after a
restart), from the store itself.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from bridge.store import Conversation, ConversationEvent, Message, Store, Tx

log = logging.getLogger(__name__)

#: Conversation events that the console is told about, by event kind.
LIVE_KINDS = ("assigned", "transferred", "closed")
RING_SIZE = 1000
BATCH = 500
#: A subscriber this far behind is dropped; it reconnects with Last-Event-ID and catches up.
MAX_BACKLOG = 2000

Cursor = tuple[int, int]


def format_cursor(cursor: Cursor) -> str:
    """``"E-M"``: the event id of an SSE event."""
    return f"{cursor[0]}-{cursor[1]}"


def parse_cursor(text: str | None) -> Cursor | None:
    """The cursor in a ``Last-Event-ID``, or None when it is absent or not one of ours."""
    if not text:
        return None
    left, sep, right = text.strip().partition("-")
    if not sep or not left.isdigit() or not right.isdigit() or len(left) > 18 or len(right) > 18:
        return None
    return int(left), int(right)


def iso(ts: float) -> str:
    """Epoch seconds as ISO 8601 UTC text (the API's time format)."""
    return datetime.fromtimestamp(ts, UTC).isoformat().replace("+00:00", "Z")


@dataclass(frozen=True, slots=True)
class Audience:
    """Who may see an event: the agents named, the agents of a queue it waits in, and admins."""

    agents: frozenset[int]
    queue: str | None = None

    def admits(self, agent_id: int, queues: Iterable[str], admin: bool) -> bool:
        """Whether an agent (with these queues and role) may see the event."""
        return admin or agent_id in self.agents or (self.queue is not None and self.queue in set(queues))


@dataclass(frozen=True, slots=True)
class LiveEvent:
    """One SSE event: ``name`` (message, assigned, transferred, closed) and its JSON ``data``."""

    cursor: Cursor
    name: str
    data: dict[str, Any]
    audience: Audience
    row: tuple[str, int] = ("", 0)  # ("event" | "message", store id): the same row read twice is one event

    @property
    def id(self) -> str:
        """The SSE ``id:`` field."""
        return format_cursor(self.cursor)


@dataclass(eq=False)
class Subscription:
    """One listener's queue of events; ``closed`` once it must stop (shutdown, disabled, too slow)."""

    agent_id: int
    session_id: int | None = None
    queue: asyncio.Queue[LiveEvent | None] = field(default_factory=asyncio.Queue)
    closed: bool = False

    def push(self, event: LiveEvent) -> None:
        """Queue ``event``, or close a subscriber that fell too far behind."""
        if self.closed:
            return
        if self.queue.qsize() >= MAX_BACKLOG:
            self.close()
            return
        self.queue.put_nowait(event)

    def close(self) -> None:
        """Tell the listener to stop."""
        if not self.closed:
            self.closed = True
            self.queue.put_nowait(None)

    async def next(self, timeout: float) -> LiveEvent | None:
        """The next event, or None after ``timeout`` seconds or once closed."""
        try:
            return await asyncio.wait_for(self.queue.get(), timeout)
        except TimeoutError:
            return None


def _audience(conv: Conversation | None, *agents: int | None) -> Audience:
    named = {a for a in agents if a is not None}
    if conv is None:
        return Audience(frozenset(named))
    if conv.agent_id is not None:
        named.add(conv.agent_id)
    return Audience(frozenset(named), conv.queue if conv.status == "queued" else None)


def collect(tx: Tx, cursor: Cursor, limit: int, mask: Callable[[str], str]) -> tuple[list[LiveEvent], Cursor]:
    """The live events after ``cursor`` (at most about ``limit`` rows of each kind) and the new cursor."""
    events = tx.events.after(cursor[0], limit)
    messages = tx.messages.after(cursor[1], limit)
    items: list[tuple[float, int, ConversationEvent | Message]] = [(e.created_at, 0, e) for e in events]
    items += [(m.created_at, 1, m) for m in messages]
    items.sort(key=lambda item: (item[0], item[1], item[2].id))
    conversations: dict[int, Conversation | None] = {}
    out: list[LiveEvent] = []
    last_event, last_message = cursor
    for _at, _kind, row in items:
        if row.conversation_id not in conversations:
            conversations[row.conversation_id] = tx.conversations.get(row.conversation_id)
        conv = conversations[row.conversation_id]
        if isinstance(row, ConversationEvent):
            last_event = max(last_event, row.id)
            if row.kind not in LIVE_KINDS:
                continue
            audience = _audience(conv, row.from_agent, row.to_agent)
            data: dict[str, Any] = {"conversation_id": row.conversation_id}
            out.append(LiveEvent((last_event, last_message), row.kind, data, audience, ("event", row.id)))
            continue
        last_message = max(last_message, row.id)
        data = {
            "conversation_id": row.conversation_id,
            "message": {
                "id": row.id,
                "direction": row.direction,
                "channel": row.channel,
                "text": mask(row.text) if row.text is not None else None,
                "created_at": iso(row.created_at),
                "sensitive": row.sensitive,
            },
        }
        audience = _audience(conv, row.agent_id)
        out.append(LiveEvent((last_event, last_message), "message", data, audience, ("message", row.id)))
    # Rows of kinds nobody is told about still move the cursor.
    if events:
        last_event = max(last_event, events[-1].id)
    if messages:
        last_message = max(last_message, messages[-1].id)
    return out, (last_event, last_message)


def _top(tx: Tx) -> Cursor:
    return tx.events.last_id(), tx.messages.last_id()


class EventHub:
    """Reads new conversation activity from the store and hands it to console subscribers.

    :param store: the store to tail.
    :param mask: hides sensitive values in message texts.
    :param poll: seconds between reads while someone listens and nothing poked.
    """

    def __init__(self, store: Store, mask: Callable[[str], str], *, poll: float = 0.5) -> None:
        self._store = store
        self._mask = mask
        self._poll = poll
        self._subscribers: set[Subscription] = set()
        self._ring: collections.deque[LiveEvent] = collections.deque(maxlen=RING_SIZE)
        self._base: Cursor | None = None  # the cursor just before the ring's first event
        self._cursor: Cursor | None = None  # None: not following (nobody listened)
        self._wanted = asyncio.Event()
        self._lock = asyncio.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._task: asyncio.Task[None] | None = None

    @property
    def subscribers(self) -> int:
        """How many listeners there are now."""
        return len(self._subscribers)

    def start(self) -> None:
        """Start following (inside the running loop)."""
        self._loop = asyncio.get_running_loop()
        self._task = self._loop.create_task(self._run(), name="carebridge-live-events")

    async def stop(self) -> None:
        """Close every subscription and stop following."""
        self.close_all()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    def poke(self) -> None:
        """Something was committed: look soon. Safe from any thread."""
        loop = self._loop
        if loop is None or loop.is_closed():
            return
        try:
            loop.call_soon_threadsafe(self._wanted.set)
        except RuntimeError:  # the loop closed meanwhile (shutdown)
            pass

    async def subscribe(self, agent_id: int, session_id: int | None = None) -> Subscription:
        """A new listener for ``agent_id`` (in console session ``session_id``); it gets every event from now on."""
        async with self._lock:
            if self._cursor is None:
                self._cursor = await self._store.read(_top)
                self._ring.clear()
                self._base = self._cursor
            subscription = Subscription(agent_id, session_id)
            self._subscribers.add(subscription)
        self._wanted.set()
        return subscription

    def unsubscribe(self, subscription: Subscription) -> None:
        """Forget a listener."""
        self._subscribers.discard(subscription)
        subscription.close()

    def close_agent(self, agent_id: int) -> None:
        """End the streams of an agent (disabled, or their session ended)."""
        for subscription in list(self._subscribers):
            if subscription.agent_id == agent_id:
                subscription.close()

    def close_session(self, session_id: int) -> None:
        """End the streams of one console session (logged out)."""
        for subscription in list(self._subscribers):
            if subscription.session_id == session_id:
                subscription.close()

    def close_all(self) -> None:
        """End every stream (shutdown)."""
        for subscription in list(self._subscribers):
            subscription.close()

    def now_cursor(self) -> Cursor | None:
        """The cursor live events have been read up to (None: not following)."""
        return self._cursor

    async def since(self, cursor: Cursor) -> list[LiveEvent]:
        """Events after ``cursor``: from the ring when it reaches back that far, else from the store."""
        if self._base is not None and self._base <= cursor:
            return [event for event in self._ring if event.cursor > cursor]
        mask = self._mask
        events, _ = await self._store.read(lambda tx: collect(tx, cursor, BATCH, mask))
        return events

    async def _run(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wanted.wait(), self._poll if self._subscribers else None)
            self._wanted.clear()
            try:
                await self._pump()
            except Exception:  # boundary: a failed read is retried at the next wake-up
                log.exception("live events: reading new activity failed")
                await asyncio.sleep(self._poll)

    async def _pump(self) -> None:
        async with self._lock:
            if not self._subscribers:
                self._cursor = None  # nobody listens: stop following; the next listener starts afresh
                return
            current = self._cursor
            if current is None:
                return
            cursor: Cursor = current
            mask = self._mask
            while True:
                start = cursor

                def read(tx: Tx, after: Cursor = start) -> tuple[list[LiveEvent], Cursor]:
                    return collect(tx, after, BATCH, mask)

                events, cursor = await self._store.read(read)
                for event in events:
                    if len(self._ring) == self._ring.maxlen:
                        self._base = self._ring[0].cursor
                    self._ring.append(event)
                    for subscription in list(self._subscribers):
                        if subscription.closed:
                            self._subscribers.discard(subscription)
                        else:
                            subscription.push(event)
                self._cursor = cursor
                if cursor == start:
                    break
