"""Turn one Telegram ``Update`` into the core's messages.

Pure functions, no I/O: the HTTP handler in ``channel.py`` checks the secret
token, calls :func:`parse_update` and hands the result to the core.

Telegram's ``message_id`` is unique only inside its chat, so every external
id is ``"<chat_id>:<message_id>"``; quotes (``reply_to``) and our own send
receipts use the same form, so the core can match a reply to what it quotes.
An edit keeps the message's id, and the core drops an id it has seen, so an
edited message becomes a new message with its own id (``…:edit:<edit_date>``)
and text marked ``[edited]``.

Only private chats are served: a customer-care conversation is one person
and the bot. A group, supergroup or channel update is reported back by kind
(``Batch.ignored``), like everything else that is not stored, so the caller
can log it without ever logging text.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from bridge import InboundMessage

CHANNEL = "telegram"
EDITED_LABEL = "[edited]"
#: Non-text messages reach the agent as a label (plus the caption, if any):
#: Carebridge does not fetch Telegram files, so the agent asks for text.
MEDIA_LABELS = {
    "photo": "[photo]",
    "video": "[video]",
    "animation": "[animation]",
    "video_note": "[video message]",
    "voice": "[voice message]",
    "audio": "[audio]",
    "document": "[file]",
    "sticker": "[sticker]",
    "location": "[location]",
    "venue": "[venue]",
    "contact": "[contact]",
    "poll": "[poll]",
    "dice": "[dice]",
}


@dataclass(slots=True)
class Batch:
    """What one update carried.

    :param messages: at most one customer message.
    :param ignored: one kind label per thing not stored (``group_message``,
        ``channel_post``, ``service_message``, …), for logging.
    :param callback_query_id: a button press to acknowledge in the webhook
        answer (``answerCallbackQuery``), so the user's button stops spinning.
    """

    messages: list[InboundMessage] = field(default_factory=list)
    ignored: list[str] = field(default_factory=list)
    callback_query_id: str | None = None


def parse_update(update: Mapping[str, Any], *, now: float) -> Batch:
    """Read ``message``, ``edited_message`` or ``callback_query`` of one update.

    :param now: epoch seconds, the time of a button press (which carries none).
    """
    batch = Batch()
    update_id = _int_or_none(update.get("update_id"))
    if isinstance(update.get("message"), Mapping):
        _parse_message(update["message"], batch, edited=False, update_id=update_id)
    elif isinstance(update.get("edited_message"), Mapping):
        _parse_message(update["edited_message"], batch, edited=True, update_id=update_id)
    elif isinstance(update.get("callback_query"), Mapping):
        _parse_callback(update["callback_query"], batch, now)
    else:
        keys = sorted(str(k) for k in update if k != "update_id")
        batch.ignored.append(_safe_kind(keys[0]) if keys else "empty")
    return batch


def _parse_message(message: Mapping[str, Any], batch: Batch, *, edited: bool, update_id: int | None) -> None:
    chat = message.get("chat")
    chat_id = _int_or_none(chat.get("id")) if isinstance(chat, Mapping) else None
    message_id = _int_or_none(message.get("message_id"))
    if not isinstance(chat, Mapping) or chat_id is None or message_id is None:
        batch.ignored.append("malformed")
        return
    if chat.get("type") != "private":
        batch.ignored.append(f"{_safe_kind(str(chat.get('type') or 'unknown'))}_message")
        return
    text = _text_of(message)
    if not text:
        batch.ignored.append("service_message")
        return
    date = _int_or_none(message.get("date")) or 0
    external_id = f"{chat_id}:{message_id}"
    meta: dict[str, str] = {}
    timestamp = float(date)
    if edited:
        edit_date = _int_or_none(message.get("edit_date"))
        # The same edit posted again (Telegram retries) must get the same id.
        suffix = str(edit_date) if edit_date is not None else f"u{update_id}"
        meta["edited"] = external_id
        external_id = f"{external_id}:edit:{suffix}"
        text = f"{EDITED_LABEL} {text}"
        timestamp = float(edit_date) if edit_date is not None else timestamp
    quoted = message.get("reply_to_message")
    quoted_id = _int_or_none(quoted.get("message_id")) if isinstance(quoted, Mapping) else None
    batch.messages.append(
        InboundMessage(
            channel=CHANNEL,
            sender=str(chat_id),
            external_id=external_id,
            text=text,
            timestamp=timestamp,
            sender_name=_name_of(message.get("from")),
            reply_to=f"{chat_id}:{quoted_id}" if quoted_id is not None else None,
            meta=meta,
        )
    )


def _parse_callback(query: Mapping[str, Any], batch: Batch, now: float) -> None:
    query_id = query.get("id")
    if not isinstance(query_id, str) or not query_id:
        batch.ignored.append("malformed")
        return
    batch.callback_query_id = query_id
    message = query.get("message")
    chat = message.get("chat") if isinstance(message, Mapping) else None
    if not isinstance(message, Mapping) or not isinstance(chat, Mapping):
        # A button under an inline-mode message: no chat to answer in.
        batch.ignored.append("inline_callback")
        return
    chat_id = _int_or_none(chat.get("id"))
    if chat_id is None:
        batch.ignored.append("malformed")
        return
    if chat.get("type") != "private":
        batch.ignored.append(f"{_safe_kind(str(chat.get('type') or 'unknown'))}_callback")
        return
    data = query.get("data")
    if not isinstance(data, str) or not data.strip():
        batch.ignored.append("empty_callback")
        return
    button_message = _int_or_none(message.get("message_id"))
    batch.messages.append(
        InboundMessage(
            channel=CHANNEL,
            sender=str(chat_id),
            # A callback query's id is unique on its own; the chat keeps the form of every other id.
            external_id=f"{chat_id}:callback:{query_id}",
            text=data,
            timestamp=now,
            sender_name=_name_of(query.get("from")),
            reply_to=f"{chat_id}:{button_message}" if button_message is not None else None,
            meta={"callback_data": data},
        )
    )


def _text_of(message: Mapping[str, Any]) -> str:
    text = message.get("text")
    if isinstance(text, str) and text.strip():
        return text
    caption = message.get("caption")
    caption = caption.strip() if isinstance(caption, str) else ""
    for key, label in MEDIA_LABELS.items():
        if key in message:
            return f"{label} {caption}".rstrip()
    return caption


def _name_of(user: object) -> str | None:
    """``first_name`` and ``last_name`` of a Telegram ``User``, as the person set them."""
    if not isinstance(user, Mapping):
        return None
    parts = [user.get("first_name"), user.get("last_name")]
    name = " ".join(p.strip() for p in parts if isinstance(p, str) and p.strip())
    return name or None


def _int_or_none(value: object) -> int | None:
    if isinstance(value, bool) or not isinstance(value, int):
        return None
    return value


def _safe_kind(name: str) -> str:
    """Keep a kind label short and plain, whatever a malformed update put there."""
    cleaned = "".join(c for c in name if c.isalnum() or c == "_")[:32]
    return cleaned or "unknown"
