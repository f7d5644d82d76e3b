"""Turn Messenger webhook payloads into the core's messages and status updates.

Pure functions, no I/O: the HTTP handler verifies the signature, calls
:func:`parse_events` once for the whole POST and hands the result to the
core in one call. The envelope, postbacks and receipts are read as on
Instagram (``carebridge_meta.messaging``); what is Messenger's is here: the
``metadata`` our sends carry and their echoes, the Page-inbox echoes that
belong in the transcript, and the attachment kinds (location, shared links,
stickers).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, ClassVar

from bridge import Attachment, InboundMessage, StatusUpdate
from carebridge_meta import (
    Batch,
    MessagingParser,
    PayloadError,
    attachment_items,
    media_attachment,
    message_text,
    str_or_none,
)

__all__ = ["CHANNEL", "METADATA_TAG", "Batch", "PayloadError", "is_page_event", "parse_events", "send_metadata"]

CHANNEL = "messenger"
#: Prefix of the ``metadata`` we put on every send; Meta echoes it back.
METADATA_TAG = "carebridge:"
#: The metadata of the last (or only) part of a delivery: the tag and the delivery id.
_LAST_PART = re.compile(re.escape(METADATA_TAG) + r"(\d{1,18})")

# Attachment types Messenger sends, mapped to the core's attachment kinds.
_MEDIA_KINDS = {
    "image": "image",
    "audio": "audio",
    "video": "video",
    "file": "file",
    "reel": "video",
    "ig_reel": "video",
}


def send_metadata(delivery_id: int, part: int, parts: int) -> str:
    """The ``metadata`` of one part of a delivery: the last part names the delivery alone.

    Its echo then tells the core that the whole delivery reached Messenger,
    which settles a send whose answer was lost (``StatusUpdate.delivery_id``).
    """
    return f"{METADATA_TAG}{delivery_id}" if part == parts - 1 else f"{METADATA_TAG}{delivery_id}.{part}"


class PageParser(MessagingParser):
    """Messenger's ``message`` events; echoes of our own sends become ``sent`` reports."""

    channel: ClassVar[str] = CHANNEL
    webhook_object: ClassVar[str] = "page"
    other_account: ClassVar[str] = "other_page"
    echo_kind: ClassVar[str] = "own_echo"
    simulated_mid_prefix: ClassVar[str] = "m_simulated_"

    def parse_message(
        self, message: Mapping[str, Any], sender: str, recipient: str | None, when: float, batch: Batch
    ) -> None:
        """Store a customer's message, or a Page-inbox echo as an outbound one; count the rest."""
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
                batch.ignored.append(self.echo_kind)
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
        text, meta = message_text(message)
        attachments = tuple(_attachment(*each) for each in attachment_items(message.get("attachments")))
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
                reply_to=str_or_none(reply_to.get("mid")) if isinstance(reply_to, Mapping) else None,
                attachments=attachments,
                echo=echo,
                meta=meta,
            )
        )


def _attachment(kind: str, payload: Mapping[str, Any], item: Mapping[str, Any]) -> Attachment:
    url = str_or_none(payload.get("url")) or str_or_none(item.get("url"))
    if kind == "location":
        coords = payload.get("coordinates")
        coords = coords if isinstance(coords, Mapping) else {}
        meta: dict[str, object] = {
            name: coords[key]
            for name, key in (("latitude", "lat"), ("longitude", "long"))
            if isinstance(coords.get(key), (int, float)) and not isinstance(coords.get(key), bool)
        }
        title = str_or_none(item.get("title")) or str_or_none(payload.get("title"))
        if title:
            meta["title"] = title
        return Attachment(kind="location", url=url, meta=meta)
    if kind == "fallback":
        # A shared link Messenger could not render; it may have no payload at all.
        title = str_or_none(payload.get("title")) or str_or_none(item.get("title"))
        return Attachment(kind="link", url=url, meta={"title": title} if title else {})
    if kind == "image" and "sticker_id" in payload:
        kind = "sticker"
    return media_attachment(kind, url, payload, _MEDIA_KINDS)


#: Tell whether a signed body is a notification of this platform at all (another object is acknowledged, not parsed).
is_page_event = PageParser.accepts


def parse_events(payload: Mapping[str, Any], *, page_id: str, now: float) -> Batch:
    """Read every entry and every ``messaging``/``standby`` item of a Page webhook.

    :param page_id: our Page; entries for another Page of the same app are ignored (``other_page``).
    :param now: epoch seconds, used only when an item carries no timestamp at all.
    :raises PayloadError: when ``entry`` or an entry's item lists are not JSON arrays.
    """
    return PageParser(page_id).parse(payload, now=now)
