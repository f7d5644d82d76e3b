"""Turn Messenger webhook payloads into the core's messages and status updates.

Pure functions, no I/O: the HTTP handler in ``channel.py`` verifies the
signature, calls :func:`parse_events` once for the whole POST and hands the
result to the core in one call. Meta batches many entries (each with
``messaging`` and, under the handover protocol, ``standby`` items) into one
POST, so every item of every entry is read here.

What is *not* turned into a message is reported back by kind only
(``Batch.ignored``), so the caller can log it without ever logging text.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from bridge import Attachment, InboundMessage, StatusUpdate

CHANNEL = "messenger"
#: Prefix of the ``metadata`` we put on every send; Meta echoes it back.
METADATA_TAG = "carebridge:"
#: The metadata of the last (or only) part of a delivery: the tag and the delivery id.
_LAST_PART = re.compile(re.escape(METADATA_TAG) + r"(\d{1,18})")


def send_metadata(delivery_id: int, part: int, parts: int) -> str:
    """The ``metadata`` of one part of a delivery: the last part names the delivery alone.

    Its echo then tells the core that the whole delivery reached Messenger,
    which settles a send whose answer was lost (``StatusUpdate.delivery_id``).
    """
    return f"{METADATA_TAG}{delivery_id}" if part == parts - 1 else f"{METADATA_TAG}{delivery_id}.{part}"


# Attachment types Messenger sends, mapped to the core's attachment kinds.
_MEDIA_KINDS = {
    "image": "image",
    "audio": "audio",
    "video": "video",
    "file": "file",
    "reel": "video",
    "ig_reel": "video",
}


class PayloadError(ValueError):
    """The POST body is JSON but not a Messenger webhook envelope (answered 400)."""


@dataclass(slots=True)
class Batch:
    """Everything one webhook POST carried.

    :param messages: customer (and Page-inbox echo) messages, in payload order.
    :param statuses: delivery and read reports on messages we sent, and a
        ``sent`` report for the echo of each delivery's last part.
    :param ignored: one kind label per item that produced nothing
        (``own_echo``, ``reaction``, ``other_page``, …), for logging.
    """

    messages: list[InboundMessage] = field(default_factory=list)
    statuses: list[StatusUpdate] = field(default_factory=list)
    ignored: list[str] = field(default_factory=list)


def is_page_event(payload: Mapping[str, Any]) -> bool:
    """Tell whether a signed body is a Page (Messenger) notification at all.

    The same app may be subscribed to other objects (``instagram``,
    ``permissions``); those are authentic and are acknowledged, not parsed.
    """
    return payload.get("object") == "page"


def parse_events(payload: Mapping[str, Any], *, page_id: str, now: float) -> Batch:
    """Read every entry and every ``messaging``/``standby`` item of a Page webhook.

    :param page_id: our Page; entries for another Page of the same app are ignored.
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
        if str(entry.get("id", page_id)) != page_id:
            batch.ignored.append("other_page")
            continue
        entry_time = _seconds(entry.get("time"))
        for key in ("messaging", "standby"):
            items = entry.get(key, [])
            if not isinstance(items, list):
                raise PayloadError(f"'entry[].{key}' must be an array")
            for item in items:
                _parse_item(item, batch, entry_time if entry_time is not None else now)
    return batch


def _parse_item(item: object, batch: Batch, fallback_time: float) -> None:
    if not isinstance(item, Mapping):
        batch.ignored.append("malformed")
        return
    sender = _id_of(item.get("sender"))
    recipient = _id_of(item.get("recipient"))
    timestamp = _seconds(item.get("timestamp"))
    when = timestamp if timestamp is not None else fallback_time
    if sender is None:
        batch.ignored.append("malformed")
        return
    if isinstance(item.get("message"), Mapping):
        _parse_message(item["message"], sender, recipient, when, batch)
    elif isinstance(item.get("postback"), Mapping):
        _parse_postback(item["postback"], sender, when, batch)
    elif isinstance(item.get("delivery"), Mapping):
        _parse_receipt(item["delivery"], "delivered", sender, timestamp, batch)
    elif isinstance(item.get("read"), Mapping):
        _parse_receipt(item["read"], "read", sender, timestamp, batch)
    else:
        batch.ignored.append(_kind_of(item))


def _parse_message(message: Mapping[str, Any], sender: str, recipient: str | None, when: float, batch: Batch) -> None:
    mid = message.get("mid")
    if not isinstance(mid, str) or not mid:
        batch.ignored.append("malformed")
        return
    if message.get("is_deleted"):
        batch.ignored.append("message_deleted")
        return
    echo = bool(message.get("is_echo"))
    if echo:
        metadata = message.get("metadata")
        if isinstance(metadata, str) and metadata.startswith(METADATA_TAG):
            batch.ignored.append("own_echo")
            last = _LAST_PART.fullmatch(metadata)
            if last is not None:
                batch.statuses.append(
                    StatusUpdate(channel=CHANNEL, status="sent", timestamp=when, recipient=recipient,
                                 external_id=mid, delivery_id=int(last.group(1)))
                )  # fmt: skip
            return
        if recipient is None:
            batch.ignored.append("malformed")
            return
    raw_text = message.get("text")
    text = raw_text if isinstance(raw_text, str) else ""
    meta: dict[str, str] = {}
    quick_reply = message.get("quick_reply")
    if isinstance(quick_reply, Mapping) and isinstance(quick_reply.get("payload"), str):
        meta["quick_reply_payload"] = quick_reply["payload"]
        # The text is the button's title, which is what the customer saw and chose.
        text = text or quick_reply["payload"]
    attachments = tuple(_attachments(message.get("attachments")))
    if not text and not attachments:
        batch.ignored.append("empty_message")
        return
    reply_to = message.get("reply_to")
    batch.messages.append(
        InboundMessage(
            channel=CHANNEL,
            # For an echo the Page wrote to the customer, who is the recipient.
            sender=recipient if echo and recipient is not None else sender,
            external_id=mid,
            text=text,
            timestamp=when,
            reply_to=_str_or_none(reply_to.get("mid")) if isinstance(reply_to, Mapping) else None,
            attachments=attachments,
            echo=echo,
            meta=meta,
        )
    )


def _parse_postback(postback: Mapping[str, Any], sender: str, when: float, batch: Batch) -> None:
    title = _str_or_none(postback.get("title"))
    payload = _str_or_none(postback.get("payload"))
    text = title or payload
    if not text:
        batch.ignored.append("empty_postback")
        return
    # Postbacks carry a mid since Graph v11.0; older ones get a stable stand-in for dedupe.
    mid = _str_or_none(postback.get("mid")) or f"postback:{sender}:{int(when * 1000)}"
    meta = {"postback_payload": payload} if payload else {}
    batch.messages.append(
        InboundMessage(channel=CHANNEL, sender=sender, external_id=mid, text=text, timestamp=when, meta=meta)
    )


def _parse_receipt(
    body: Mapping[str, Any], status: Literal["delivered", "read"], customer: str, timestamp: float | None, batch: Batch
) -> None:
    watermark = _seconds(body.get("watermark"))
    mids = body.get("mids")
    mids = [m for m in mids if isinstance(m, str) and m] if isinstance(mids, list) else []
    when = timestamp if timestamp is not None else watermark
    if when is None:
        batch.ignored.append("malformed")
        return
    for mid in mids:
        batch.statuses.append(
            StatusUpdate(channel=CHANNEL, status=status, timestamp=when, recipient=customer, external_id=mid)
        )
    if watermark is not None:
        batch.statuses.append(
            StatusUpdate(channel=CHANNEL, status=status, timestamp=when, recipient=customer, watermark=watermark)
        )


def _attachments(raw: object) -> list[Attachment]:
    if not isinstance(raw, Sequence) or isinstance(raw, (str, bytes)):
        return []
    out: list[Attachment] = []
    for item in raw:
        if not isinstance(item, Mapping):
            continue
        kind = str(item.get("type") or "unknown")
        payload = item.get("payload")
        out.append(_attachment(kind, payload if isinstance(payload, Mapping) else {}, item))
    return out


def _attachment(kind: str, payload: Mapping[str, Any], item: Mapping[str, Any]) -> Attachment:
    url = _str_or_none(payload.get("url")) or _str_or_none(item.get("url"))
    if kind == "location":
        coords = payload.get("coordinates")
        coords = coords if isinstance(coords, Mapping) else {}
        meta: dict[str, object] = {
            name: coords[key]
            for name, key in (("latitude", "lat"), ("longitude", "long"))
            if isinstance(coords.get(key), (int, float)) and not isinstance(coords.get(key), bool)
        }
        title = _str_or_none(item.get("title")) or _str_or_none(payload.get("title"))
        if title:
            meta["title"] = title
        return Attachment(kind="location", url=url, meta=meta)
    if kind == "fallback":
        # A shared link Messenger could not render; it may have no payload at all.
        title = _str_or_none(payload.get("title")) or _str_or_none(item.get("title"))
        return Attachment(kind="link", url=url, meta={"title": title} if title else {})
    media_meta = {k: v for k, v in payload.items() if k != "url" and isinstance(v, (str, int, float, bool))}
    if kind == "image" and "sticker_id" in payload:
        return Attachment(kind="sticker", url=url, meta=media_meta)
    return Attachment(kind=_MEDIA_KINDS.get(kind, kind), url=url, meta=media_meta)


def _kind_of(item: Mapping[str, Any]) -> str:
    keys = sorted(k for k in item if k not in ("sender", "recipient", "timestamp"))
    return keys[0] if keys else "empty"


def _id_of(party: object) -> str | None:
    if isinstance(party, Mapping):
        return _str_or_none(party.get("id"))
    return None


def _str_or_none(value: object) -> str | None:
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, (str, int)):
        text = str(value)
        return text or None
    return None


def _seconds(value: object) -> float | None:
    """Messenger timestamps are epoch milliseconds as JSON integers."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return value / 1000.0
