"""The ``entry[].messaging[]`` webhook shape that Messenger and Instagram share.

Both platforms post ``{"object": ..., "entry": [{"id", "time", "messaging":
[...], "standby": [...]}]}``; Meta batches many entries into one POST, and
under the handover protocol items arrive under ``standby`` too, so every
item of every entry is read. Each item has ``sender``, ``recipient``,
``timestamp`` (epoch milliseconds) and one event: ``message``, ``postback``,
``delivery``, ``read`` or another kind that is only counted.

:class:`MessagingParser` reads the envelope, postbacks and receipts, which
mean the same on both platforms; a platform's subclass reads its
``message`` items (echoes, story replies, attachments differ). Pure code, no
I/O. What is *not* turned into a message is reported back by kind only
(``Batch.ignored``), so the caller can log it without ever logging text.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

from bridge import Attachment, InboundMessage, StatusUpdate

#: Keys of a ``messaging`` item that are not events themselves.
_ENVELOPE = frozenset({"sender", "recipient", "timestamp"})


class PayloadError(ValueError):
    """The POST body is JSON but not a messaging webhook envelope (answered 400)."""


@dataclass(slots=True)
class Batch:
    """Everything one webhook POST carried.

    :param messages: the messages to store, in payload order.
    :param statuses: delivery and read reports on messages we sent (and
        whatever else the platform reports about our sends).
    :param ignored: one kind label per item that produced nothing
        (``reaction``, ``malformed``, an entry of another account, …), for logging.
    """

    messages: list[InboundMessage] = field(default_factory=list)
    statuses: list[StatusUpdate] = field(default_factory=list)
    ignored: list[str] = field(default_factory=list)


class MessagingParser(ABC):
    """Read one webhook POST of the ``entry[].messaging[]`` shape for one account.

    :param account_id: our account (the Page, the Instagram account); it is
        ``entry[].id``, and entries of another account of the same app are ignored.

    :cvar channel: the channel name the messages and statuses carry.
    :cvar webhook_object: the ``object`` of the platform's webhooks.
    :cvar other_account: the ``ignored`` kind of an entry of another account.
    :cvar echo_kind: the ``ignored`` kind of the echoes our sends bring back
        (routine: the channel logs them at debug level only).
    :cvar simulated_mid_prefix: how the ``mid`` of a message ``carebridge simulate``
        builds starts, in the platform's own style.
    """

    channel: ClassVar[str]
    webhook_object: ClassVar[str]
    other_account: ClassVar[str]
    echo_kind: ClassVar[str]
    simulated_mid_prefix: ClassVar[str]

    def __init__(self, account_id: str) -> None:
        self.account_id = account_id

    @classmethod
    def accepts(cls, payload: Mapping[str, Any]) -> bool:
        """Tell whether a signed body is a notification of this platform at all.

        The same app may be subscribed to other objects (``page``,
        ``instagram``, ``permissions``); those are authentic and are
        acknowledged, not parsed.
        """
        return payload.get("object") == cls.webhook_object

    def parse(self, payload: Mapping[str, Any], *, now: float) -> Batch:
        """Read every entry and every ``messaging``/``standby`` item.

        :param now: epoch seconds, used only when an item carries no timestamp at all.
        :raises PayloadError: when ``entry`` or an entry's item lists are not JSON arrays.
        """
        entries = payload.get("entry")
        if not isinstance(entries, list):
            raise PayloadError("'entry' must be an array")
        batch = Batch()
        for entry in entries:
            if not isinstance(entry, Mapping):
                raise PayloadError("each 'entry' item must be an object")
            if str(entry.get("id", self.account_id)) != self.account_id:
                batch.ignored.append(self.other_account)
                continue
            entry_time = epoch_seconds(entry.get("time"))
            for key in ("messaging", "standby"):
                items = entry.get(key, [])
                if not isinstance(items, list):
                    raise PayloadError(f"'entry[].{key}' must be an array")
                for item in items:
                    self._parse_item(item, batch, entry_time if entry_time is not None else now)
            self.parse_entry_extras(entry, batch)
        return batch

    @abstractmethod
    def parse_message(
        self, message: Mapping[str, Any], sender: str, recipient: str | None, when: float, batch: Batch
    ) -> None:
        """Read one ``message`` event into ``batch`` (a message, a status, or an ``ignored`` kind).

        :param sender: ``sender.id`` (the customer, or our account for an echo).
        :param recipient: ``recipient.id``, None when missing.
        :param when: the item's time in epoch seconds (the entry's, or now, when it has none).
        """

    def parse_entry_extras(self, entry: Mapping[str, Any], batch: Batch) -> None:
        """Read what an entry carries besides its items; the default reads nothing."""

    def _parse_item(self, item: object, batch: Batch, fallback_time: float) -> None:
        if not isinstance(item, Mapping):
            batch.ignored.append("malformed")
            return
        sender = str_or_none(_id_of(item.get("sender")))
        timestamp = epoch_seconds(item.get("timestamp"))
        when = timestamp if timestamp is not None else fallback_time
        if sender is None:
            batch.ignored.append("malformed")
            return
        if isinstance(item.get("message"), Mapping):
            recipient = str_or_none(_id_of(item.get("recipient")))
            self.parse_message(item["message"], sender, recipient, when, batch)
        elif isinstance(item.get("postback"), Mapping):
            self._parse_postback(item["postback"], sender, when, batch)
        elif isinstance(item.get("delivery"), Mapping):
            self._parse_receipt(item["delivery"], "delivered", sender, timestamp, batch)
        elif isinstance(item.get("read"), Mapping):
            self._parse_receipt(item["read"], "read", sender, timestamp, batch)
        else:
            batch.ignored.append(_kind_of(item))

    def _parse_postback(self, postback: Mapping[str, Any], sender: str, when: float, batch: Batch) -> None:
        """A button, icebreaker or menu tap: its title is what the customer chose."""
        title = str_or_none(postback.get("title"))
        payload = str_or_none(postback.get("payload"))
        text = title or payload
        if not text:
            batch.ignored.append("empty_postback")
            return
        # Postbacks carry a mid since Graph v11.0; older ones get a stable stand-in for dedupe.
        mid = str_or_none(postback.get("mid")) or f"postback:{sender}:{int(when * 1000)}"
        meta = {"postback_payload": payload} if payload else {}
        batch.messages.append(
            InboundMessage(channel=self.channel, sender=sender, external_id=mid, text=text, timestamp=when, meta=meta)
        )

    def _parse_receipt(
        self,
        body: Mapping[str, Any],
        status: Literal["delivered", "read"],
        customer: str,
        timestamp: float | None,
        batch: Batch,
    ) -> None:
        """``delivery`` names ``mids`` and a watermark; ``read`` a watermark, or one ``mid`` on Instagram."""
        watermark = epoch_seconds(body.get("watermark"))
        mids = body.get("mids")
        mids = [m for m in mids if isinstance(m, str) and m] if isinstance(mids, list) else []
        mid = str_or_none(body.get("mid"))
        if mid is not None:
            mids.insert(0, mid)
        when = timestamp if timestamp is not None else watermark
        if when is None or (not mids and watermark is None):
            batch.ignored.append("malformed")
            return
        for each in mids:
            batch.statuses.append(
                StatusUpdate(channel=self.channel, status=status, timestamp=when, recipient=customer, external_id=each)
            )
        if watermark is not None:
            batch.statuses.append(
                StatusUpdate(
                    channel=self.channel, status=status, timestamp=when, recipient=customer, watermark=watermark
                )
            )


def message_text(message: Mapping[str, Any]) -> tuple[str, dict[str, str]]:
    """Return a ``message``'s text and meta: a tapped quick reply's payload is kept in meta.

    The text of a quick reply is the button's title, which is what the
    customer saw and chose; the payload stands in only when there is no text.
    """
    raw = message.get("text")
    text = raw if isinstance(raw, str) else ""
    meta: dict[str, str] = {}
    quick_reply = message.get("quick_reply")
    if isinstance(quick_reply, Mapping) and isinstance(quick_reply.get("payload"), str):
        meta["quick_reply_payload"] = quick_reply["payload"]
        text = text or quick_reply["payload"]
    return text, meta


def attachment_items(raw: object) -> Iterator[tuple[str, Mapping[str, Any], Mapping[str, Any]]]:
    """Yield ``(type, payload, item)`` for each object of a ``message.attachments`` array.

    ``type`` is ``unknown`` when missing, ``payload`` empty when missing; items
    that are not objects are skipped.
    """
    if not isinstance(raw, Sequence) or isinstance(raw, (str, bytes)):
        return
    for item in raw:
        if isinstance(item, Mapping):
            payload = item.get("payload")
            yield str(item.get("type") or "unknown"), payload if isinstance(payload, Mapping) else {}, item


def media_attachment(kind: str, url: str | None, payload: Mapping[str, Any], kinds: Mapping[str, str]) -> Attachment:
    """An image, video, file, …: its kind mapped by ``kinds`` (an unknown kind is kept as it is).

    The payload's plain values (``sticker_id``, ``title``, …) become the attachment's meta.
    """
    meta = {k: v for k, v in payload.items() if k != "url" and isinstance(v, (str, int, float, bool))}
    return Attachment(kind=kinds.get(kind, kind), url=url, meta=meta)


def str_or_none(value: object) -> str | None:
    """A non-empty string or integer id as text; None for anything else (booleans included)."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, (str, int)):
        text = str(value)
        return text or None
    return None


def epoch_seconds(value: object) -> float | None:
    """Meta's timestamps are epoch milliseconds as JSON numbers; anything else is None."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return value / 1000.0


def safe_kind(name: str) -> str:
    """Keep a kind label short and plain, whatever a malformed payload put there."""
    cleaned = "".join(c for c in name if c.isalnum() or c == "_")[:32]
    return cleaned or "unknown"


def _kind_of(item: Mapping[str, Any]) -> str:
    """The event's key (``reaction``, ``referral``, …): a fixed Meta name, never content."""
    keys = sorted(str(k) for k in item if k not in _ENVELOPE)
    return safe_kind(keys[0]) if keys else "empty"


def _id_of(party: object) -> object:
    return party.get("id") if isinstance(party, Mapping) else None
