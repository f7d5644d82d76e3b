"""Turn Instagram messaging webhooks into the core's messages and status updates.

Pure functions, no I/O: the HTTP handler in ``channel.py`` verifies the
signature, calls :func:`parse_events` once for the whole POST and hands the
result to the core in one call. Meta may batch several entries into one POST,
each with ``messaging`` (and, under the handover protocol, ``standby``) items,
so every item of every entry is read.

Story replies and story mentions carry no text of their own that says what
they are, so they reach the agent as customer text with a label
(``[Story reply] …``, ``[Story mention]``); the story's CDN URL is kept as an
attachment URL only (Meta forbids storing the media itself). What is *not*
turned into a message is reported back by kind only (``Batch.ignored``), so
the caller can log it without ever logging text.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from bridge import Attachment, InboundMessage, StatusUpdate

CHANNEL = "instagram"
STORY_REPLY_LABEL = "[Story reply]"
STORY_MENTION_LABEL = "[Story mention]"
UNSUPPORTED_LABEL = "[Unsupported message: open Instagram to see it]"

# Attachment types Instagram sends, mapped to the core's attachment kinds.
_MEDIA_KINDS = {
    "image": "image",
    "audio": "audio",
    "video": "video",
    "file": "file",
    "share": "share",
    "reel": "video",
    "ig_reel": "video",
    "story_mention": "story_mention",
}
# Event keys of a ``messaging`` item that are not events themselves.
_ENVELOPE = frozenset({"sender", "recipient", "timestamp"})


class PayloadError(ValueError):
    """The POST body is JSON but not an Instagram webhook envelope (answered 400)."""


@dataclass(slots=True)
class Batch:
    """Everything one webhook POST carried.

    :param messages: customer messages, in payload order.
    :param statuses: delivery and read reports on messages we sent.
    :param ignored: one kind label per item that produced nothing
        (``echo``, ``reaction``, ``other_account``, …), for logging.
    """

    messages: list[InboundMessage] = field(default_factory=list)
    statuses: list[StatusUpdate] = field(default_factory=list)
    ignored: list[str] = field(default_factory=list)


def is_instagram_event(payload: Mapping[str, Any]) -> bool:
    """Tell whether a signed body is an Instagram notification at all.

    The same app may be subscribed to other objects (``page``,
    ``permissions``); those are authentic and are acknowledged, not parsed.
    """
    return payload.get("object") == "instagram"


def parse_events(payload: Mapping[str, Any], *, ig_user_id: str, now: float) -> Batch:
    """Read every entry and every ``messaging``/``standby`` item of an Instagram webhook.

    :param ig_user_id: our account; entries for another account of the same app are ignored.
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
        if str(entry.get("id", ig_user_id)) != ig_user_id:
            batch.ignored.append("other_account")
            continue
        entry_time = _seconds(entry.get("time"))
        for key in ("messaging", "standby"):
            items = entry.get(key, [])
            if not isinstance(items, list):
                raise PayloadError(f"'entry[].{key}' must be an array")
            for item in items:
                _parse_item(item, batch, ig_user_id, entry_time if entry_time is not None else now)
        changes = entry.get("changes", [])
        # Comment and mention notifications share the object; they are not messages.
        for change in changes if isinstance(changes, list) else []:
            batch.ignored.append(_change_kind(change))
    return batch


def _parse_item(item: object, batch: Batch, ig_user_id: str, fallback_time: float) -> None:
    if not isinstance(item, Mapping):
        batch.ignored.append("malformed")
        return
    sender = _id_of(item.get("sender"))
    timestamp = _seconds(item.get("timestamp"))
    when = timestamp if timestamp is not None else fallback_time
    if sender is None:
        batch.ignored.append("malformed")
        return
    if isinstance(item.get("message"), Mapping):
        _parse_message(item["message"], sender, ig_user_id, when, batch)
    elif isinstance(item.get("postback"), Mapping):
        _parse_postback(item["postback"], sender, when, batch)
    elif isinstance(item.get("read"), Mapping):
        _parse_receipt(item["read"], "read", sender, timestamp, batch)
    elif isinstance(item.get("delivery"), Mapping):
        _parse_receipt(item["delivery"], "delivered", sender, timestamp, batch)
    else:
        batch.ignored.append(_kind_of(item))


def _parse_message(message: Mapping[str, Any], sender: str, ig_user_id: str, when: float, batch: Batch) -> None:
    mid = _str_or_none(message.get("mid"))
    if mid is None:
        batch.ignored.append("malformed")
        return
    if message.get("is_echo") or sender == ig_user_id:
        # What our account sent (through Carebridge or the Instagram app) comes back as an echo.
        batch.ignored.append("echo")
        return
    if message.get("is_deleted"):
        batch.ignored.append("message_deleted")
        return
    raw_text = message.get("text")
    text = raw_text if isinstance(raw_text, str) else ""
    meta: dict[str, str] = {}
    quick_reply = message.get("quick_reply")
    if isinstance(quick_reply, Mapping) and isinstance(quick_reply.get("payload"), str):
        meta["quick_reply_payload"] = quick_reply["payload"]
        text = text or quick_reply["payload"]
    attachments = list(_attachments(message.get("attachments")))
    reply_to: str | None = None
    quoted = message.get("reply_to")
    if isinstance(quoted, Mapping):
        story = quoted.get("story")
        if isinstance(story, Mapping):
            text = _labelled(STORY_REPLY_LABEL, text)
            story_id = _str_or_none(story.get("id"))
            meta_of_story: dict[str, object] = {"story_id": story_id} if story_id else {}
            attachments.append(Attachment(kind="story", url=_str_or_none(story.get("url")), meta=meta_of_story))
        else:
            reply_to = _str_or_none(quoted.get("mid"))
    if any(a.kind == "story_mention" for a in attachments):
        text = _labelled(STORY_MENTION_LABEL, text)
    if message.get("is_unsupported") and not text and not attachments:
        text = UNSUPPORTED_LABEL
    if not text and not attachments:
        batch.ignored.append("empty_message")
        return
    batch.messages.append(
        InboundMessage(
            channel=CHANNEL,
            sender=sender,
            external_id=mid,
            text=text,
            timestamp=when,
            reply_to=reply_to,
            attachments=tuple(attachments),
            meta=meta,
        )
    )


def _labelled(label: str, text: str) -> str:
    return f"{label} {text}".rstrip()


def _parse_postback(postback: Mapping[str, Any], sender: str, when: float, batch: Batch) -> None:
    title = _str_or_none(postback.get("title"))
    payload = _str_or_none(postback.get("payload"))
    text = title or payload
    if not text:
        batch.ignored.append("empty_postback")
        return
    # Icebreakers and buttons carry a mid since v11.0; older ones get a stable stand-in for dedupe.
    mid = _str_or_none(postback.get("mid")) or f"postback:{sender}:{int(when * 1000)}"
    meta = {"postback_payload": payload} if payload else {}
    batch.messages.append(
        InboundMessage(channel=CHANNEL, sender=sender, external_id=mid, text=text, timestamp=when, meta=meta)
    )


def _parse_receipt(
    body: Mapping[str, Any], status: Literal["delivered", "read"], customer: str, timestamp: float | None, batch: Batch
) -> None:
    """``read`` names one ``mid`` (``messaging_seen``); a watermark or ``mids`` list is read too."""
    watermark = _seconds(body.get("watermark"))
    mids = body.get("mids")
    mids = [m for m in mids if isinstance(m, str) and m] if isinstance(mids, list) else []
    mid = _str_or_none(body.get("mid"))
    if mid is not None:
        mids.insert(0, mid)
    when = timestamp if timestamp is not None else watermark
    if when is None or (not mids and watermark is None):
        batch.ignored.append("malformed")
        return
    for each in mids:
        batch.statuses.append(
            StatusUpdate(channel=CHANNEL, status=status, timestamp=when, recipient=customer, external_id=each)
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
        payload = payload if isinstance(payload, Mapping) else {}
        url = _str_or_none(payload.get("url"))
        meta = {k: v for k, v in payload.items() if k != "url" and isinstance(v, (str, int, float, bool))}
        out.append(Attachment(kind=_MEDIA_KINDS.get(kind, kind), url=url, meta=meta))
    return out


def _kind_of(item: Mapping[str, Any]) -> str:
    """The event's key (``reaction``, ``referral``, …): a fixed Meta name, never content."""
    keys = sorted(str(k) for k in item if k not in _ENVELOPE)
    return _safe_kind(keys[0]) if keys else "empty"


def _change_kind(change: object) -> str:
    name = change.get("field") if isinstance(change, Mapping) else None
    return f"change:{_safe_kind(name)}" if isinstance(name, str) else "change"


def _safe_kind(name: str) -> str:
    """Keep a kind label short and plain, whatever a malformed payload put there."""
    cleaned = "".join(c for c in name if c.isalnum() or c == "_")[:32]
    return cleaned or "unknown"


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
    """Instagram timestamps are epoch milliseconds as JSON integers."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return value / 1000.0
