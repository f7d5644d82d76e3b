"""Media bytes: saving what a channel fetched, and finding what an earlier run left unfetched.

A channel hands the core an inbound message first (so the platform gets its
200 quickly) and fetches the media bytes afterwards. If the daemon stops in
between, the attachment row keeps its media id but no file; at the next start
``pending_media`` lists those rows so the channel can fetch them again.
"""

from __future__ import annotations

import logging

from bridge.channel import PendingMedia
from bridge.errors import IntegrityError, UnknownRecordError
from bridge.models import Attachment
from bridge.store import Tx

log = logging.getLogger(__name__)

#: Attachment meta keys that are fields of ``bridge.models.Attachment``, not free meta.
_FIELDS = ("url", "media_id", "filename")


def save_media(tx: Tx, channel: str, external_id: str, index: int, data: bytes, mime: str | None) -> None:
    """Store the bytes of attachment ``index`` of the message the platform calls ``external_id``.

    :raises UnknownRecordError: no such message or attachment was ingested.
    """
    attachment = tx.attachments.by_external(channel, external_id, index)
    if attachment is None:
        raise UnknownRecordError(f"{channel}: no attachment {index} of an ingested message with that id")
    tx.attachments.store_data(attachment.id, data, mime)


def pending_media(tx: Tx, channel: str) -> list[PendingMedia]:
    """Inbound attachments of ``channel`` that have a media id but no stored bytes, oldest first.

    A row that fails its integrity check is logged and skipped: one tampered
    record must not keep the others from being fetched.
    """
    pending: list[PendingMedia] = []
    for attachment_id, message_id in tx.attachments.missing_bytes(channel):
        try:
            record = tx.attachments.get(attachment_id)
            message = tx.messages.get(message_id)
        except IntegrityError as err:
            log.error("%s: attachment %d cannot be resumed: %s", channel, attachment_id, err)
            continue
        if record is None or message is None or not message.external_id or not record.meta.get("media_id"):
            continue
        meta = {k: v for k, v in record.meta.items() if k not in _FIELDS}
        attachment = Attachment(
            kind=record.kind,
            url=record.meta.get("url"),
            media_id=str(record.meta["media_id"]),
            mime=record.mime,
            filename=record.meta.get("filename"),
            meta=meta,
        )
        pending.append(PendingMedia(message.external_id, record.idx, attachment, message.created_at))
    return pending
