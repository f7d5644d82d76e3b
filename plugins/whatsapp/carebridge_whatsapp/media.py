"""Background download of inbound media, handed to the core to store encrypted.

A webhook carries only a media id. The bytes are fetched after the messages
are committed (the webhook must be answered fast, PROTOCOLS §0.3): ask
``GET /{media_id}`` for a download URL that lives five minutes, download it
with the bearer token, check size and sha256, then ``ctx.save_media``. An
expired URL is asked for again at once; other transient failures are
retried with backoff. Every task is kept so ``close()`` can cancel and await it.

Downloads cancelled by a shutdown are not lost: their attachment rows keep the
media id without bytes, and at the next start the core hands them back
(``resume``). A media id from a webhook stays fetchable for 7 days
(PROTOCOLS §2.7), so older ones are skipped with a log line.

Log lines name a message by a short digest of its id, never the id itself:
a ``wamid`` is base64 that spells out the customer's phone number.

A media id that is not a number (refused when the webhook was parsed, or
left in the store by an older version) is never looked up: the attachment
keeps no bytes and a log line says so, without the id.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from collections import OrderedDict
from collections.abc import Iterable, Sequence

from bridge import (
    Attachment,
    ChannelAuthFailed,
    DeliveryError,
    InboundMessage,
    MediaCallback,
    PendingMedia,
    UnknownRecordError,
)

from .api import CloudClient, MediaGone, MediaTooLarge
from .guards import is_media_id
from .webhook import MEDIA_ID_REFUSED

DEFAULT_RETRY_DELAYS = (2.0, 10.0, 30.0)
#: "Media IDs in webhooks expire after 7 days" (PROTOCOLS §2.7).
MEDIA_ID_LIFETIME = 7 * 24 * 3600.0
_REMEMBERED = 4096


class MediaFetcher:
    """Fetch the media of delivered messages in background tasks.

    :param retry_delays: seconds to wait before each retry of a transient
        failure; its length is the number of retries.
    """

    def __init__(
        self,
        client: CloudClient,
        save: MediaCallback,
        log: logging.Logger,
        max_bytes: int,
        *,
        retry_delays: Sequence[float] = DEFAULT_RETRY_DELAYS,
        concurrency: int = 4,
    ) -> None:
        self._client = client
        self._save = save
        self._log = log
        self._max_bytes = max_bytes
        self.retry_delays = tuple(retry_delays)
        self._limit = asyncio.Semaphore(concurrency)
        self._tasks: set[asyncio.Task[None]] = set()
        # Meta redelivers webhooks; remember recent (message, index) pairs so a
        # duplicate does not download the same file again.
        self._seen: OrderedDict[tuple[str, int], None] = OrderedDict()

    def schedule(self, messages: Iterable[InboundMessage]) -> int:
        """Start one task per attachment that has a media id; return how many started."""
        return sum(
            self._start(message.external_id, index, attachment)
            for message in messages
            for index, attachment in enumerate(message.attachments)
        )

    def resume(self, pending: Iterable[PendingMedia], now: float | None = None) -> int:
        """Start downloads an earlier run left unfinished; return how many started.

        Media ids older than ``MEDIA_ID_LIFETIME`` are skipped with a warning:
        Meta no longer serves them, so asking would only fail.
        """
        now = time.time() if now is None else now
        started = 0
        for item in pending:
            age = now - item.received_at
            if age >= MEDIA_ID_LIFETIME:
                self._log.warning(
                    "media %d of message %s not fetched: its media id expired (received %.1f days ago, "
                    "WhatsApp keeps webhook media ids for 7 days)",
                    item.index,
                    message_ref(item.external_id),
                    age / 86400,
                )
                continue
            started += self._start(item.external_id, item.index, item.attachment)
        return started

    def _start(self, external_id: str, index: int, attachment: Attachment) -> bool:
        key = (external_id, index)
        if attachment.meta.get(MEDIA_ID_REFUSED) or (attachment.media_id and not is_media_id(attachment.media_id)):
            self._log.warning(
                "media %d of message %s not fetched: its media id is not the number WhatsApp uses "
                "(stored without its bytes)",
                index,
                message_ref(external_id),
            )
            return False
        if not attachment.media_id or key in self._seen:
            return False
        self._seen[key] = None
        while len(self._seen) > _REMEMBERED:
            self._seen.popitem(last=False)
        task = asyncio.create_task(self._fetch(external_id, index, attachment))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return True

    @property
    def pending(self) -> int:
        """Downloads not finished yet."""
        return len(self._tasks)

    async def drain(self) -> None:
        """Wait until every started download has finished (saved or given up)."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    async def close(self) -> None:
        """Cancel the downloads still running and wait for them to end."""
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _fetch(self, external_id: str, index: int, attachment: Attachment) -> None:
        media_id = attachment.media_id or ""
        ref = message_ref(external_id)
        attempts = len(self.retry_delays) + 1
        async with self._limit:
            for attempt in range(attempts):
                try:
                    info = await self._client.media_info(media_id)
                    data = await self._client.download(info, self._max_bytes)
                    await self._save(external_id, index, data, info.mime or attachment.mime)
                    self._log.info("stored media %d of message %s (%d bytes)", index, ref, len(data))
                    return
                except MediaTooLarge as err:
                    self._log.warning("media %d of message %s not stored: too large (%s)", index, ref, err)
                    return
                except MediaGone as err:
                    # The 5-minute URL expired: a fresh one is one lookup away, no need to wait.
                    self._log.info("media URL for message %s expired (%s); asking again", ref, err)
                    continue
                except ChannelAuthFailed as err:
                    self._log.error("media of message %s not fetched: token refused (%s)", ref, err.code)
                    return
                except UnknownRecordError:
                    # The message was erased (GDPR) before its media arrived: nothing to attach to.
                    self._log.info("media %d of message %s dropped: the message is no longer stored", index, ref)
                    return
                except DeliveryError as err:
                    if not err.retryable:
                        self._log.error("media %d of message %s not fetched: %s", index, ref, err)
                        return
                    reason = str(err)
                except Exception as err:  # boundary: a failing save must not kill the task silently
                    self._log.exception("saving media %d of message %s failed", index, ref)
                    reason = type(err).__name__
                if attempt < len(self.retry_delays):
                    self._log.info("media of message %s: %s; retrying", ref, reason)
                    await asyncio.sleep(self.retry_delays[attempt])
            self._log.error("giving up on media %d of message %s after %d attempts", index, ref, attempts)


def message_ref(external_id: str) -> str:
    """A short, stable name for a platform message id that is safe to log.

    WhatsApp's ``wamid.…`` ids are base64 of a structure holding the
    customer's phone number, so the id itself must not reach a log.
    """
    return "msg-" + hashlib.sha256(external_id.encode()).hexdigest()[:12]
