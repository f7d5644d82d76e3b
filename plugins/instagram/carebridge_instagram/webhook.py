"""Turn Instagram messaging webhooks into the core's messages and status updates.

Pure functions, no I/O: the HTTP handler verifies the signature, calls
:func:`parse_events` once for the whole POST and hands the result to the
core in one call. The envelope, postbacks and receipts are read as on
Messenger (``carebridge_meta.messaging``); what is Instagram's is here.

Story replies and story mentions carry no text of their own that says what
they are, so they reach the agent as customer text with a label
(``[Story reply] …``, ``[Story mention]``); the story's CDN URL is kept as an
attachment URL only (Meta forbids storing the media itself). Every echo is
dropped: Instagram offers no marker to tell our own sends from the app's.
Comment and mention notifications (``changes``) share the object and are
counted, never stored.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

from bridge import Attachment, InboundMessage
from carebridge_meta import (
    Batch,
    MessagingParser,
    PayloadError,
    attachment_items,
    media_attachment,
    message_text,
    safe_kind,
    str_or_none,
)

__all__ = [
    "CHANNEL",
    "STORY_MENTION_LABEL",
    "STORY_REPLY_LABEL",
    "UNSUPPORTED_LABEL",
    "Batch",
    "PayloadError",
    "is_instagram_event",
    "parse_events",
]

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


class InstagramParser(MessagingParser):
    """Instagram's ``message`` events, story replies and mentions included; echoes are dropped."""

    channel: ClassVar[str] = CHANNEL
    webhook_object: ClassVar[str] = "instagram"
    other_account: ClassVar[str] = "other_account"
    echo_kind: ClassVar[str] = "echo"
    simulated_mid_prefix: ClassVar[str] = "aWdf_simulated_"

    def parse_message(
        self, message: Mapping[str, Any], sender: str, recipient: str | None, when: float, batch: Batch
    ) -> None:
        """Store a customer's message, labelled when it answers or mentions a story; count the rest."""
        mid = str_or_none(message.get("mid"))
        if mid is None:
            batch.ignored.append("malformed")
            return
        if message.get("is_echo") or sender == self.account_id:
            # What our account sent (through Carebridge or the Instagram app) comes back as an echo.
            batch.ignored.append(self.echo_kind)
            return
        if message.get("is_deleted"):
            batch.ignored.append("message_deleted")
            return
        text, meta = message_text(message)
        attachments = [
            media_attachment(kind, str_or_none(payload.get("url")), payload, _MEDIA_KINDS)
            for kind, payload, _item in attachment_items(message.get("attachments"))
        ]
        reply_to: str | None = None
        quoted = message.get("reply_to")
        if isinstance(quoted, Mapping):
            story = quoted.get("story")
            if isinstance(story, Mapping):
                text = _labelled(STORY_REPLY_LABEL, text)
                story_id = str_or_none(story.get("id"))
                meta_of_story: dict[str, object] = {"story_id": story_id} if story_id else {}
                attachments.append(Attachment(kind="story", url=str_or_none(story.get("url")), meta=meta_of_story))
            else:
                reply_to = str_or_none(quoted.get("mid"))
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

    def parse_entry_extras(self, entry: Mapping[str, Any], batch: Batch) -> None:
        """Count comment and mention notifications (``changes``) by their field: they are not messages."""
        changes = entry.get("changes", [])
        for change in changes if isinstance(changes, list) else []:
            name = change.get("field") if isinstance(change, Mapping) else None
            batch.ignored.append(f"change:{safe_kind(name)}" if isinstance(name, str) else "change")


def _labelled(label: str, text: str) -> str:
    return f"{label} {text}".rstrip()


#: Tell whether a signed body is a notification of this platform at all (another object is acknowledged, not parsed).
is_instagram_event = InstagramParser.accepts


def parse_events(payload: Mapping[str, Any], *, ig_user_id: str, now: float) -> Batch:
    """Read every entry and every ``messaging``/``standby`` item of an Instagram webhook.

    :param ig_user_id: our account; entries for another account of the same app are ignored (``other_account``).
    :param now: epoch seconds, used only when an item carries no timestamp at all.
    :raises PayloadError: when ``entry`` or an entry's item lists are not JSON arrays.
    """
    return InstagramParser(ig_user_id).parse(payload, now=now)
