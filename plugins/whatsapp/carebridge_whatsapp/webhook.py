"""Pure functions that turn a WhatsApp Cloud API webhook payload into core models.

No I/O here, so every payload shape can be tested from fixtures with plain
sync tests. The aiohttp handler in ``channel.py`` checks the signature first
and then calls ``parse_payload``.

Decisions, for the agent's sake:

* media (image, audio, video, document, sticker) becomes an ``Attachment``
  carrying the media id; the caption, if any, is the text. The bytes are
  fetched afterwards (``media.py``). A media id that is not the number Meta
  uses is not kept: the attachment is stored without it (meta
  ``media_id_refused``), so no request is ever built from it.
* ``interactive`` button/list replies and template ``button`` replies become
  text (the title the customer tapped); the reply id or payload goes to meta.
* a ``reaction`` becomes the text ``[reaction 👍]`` quoting the reacted
  message (``reply_to``), so the agent sees it in context; a removed reaction
  (empty emoji) carries nothing to relay and is dropped.
* any other type is kept as ``[unsupported message]`` so that nothing the
  customer sent disappears silently.
* ``played`` (voice message listened to) counts as ``read``.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from bridge import Attachment, InboundMessage, StatusKind, StatusUpdate

from .address import normalize_e164
from .api import WINDOW_CLOSED
from .guards import is_media_id

CHANNEL = "whatsapp"
OBJECT = "whatsapp_business_account"
UNSUPPORTED_TEXT = "[unsupported message]"
MEDIA_TYPES = {"image": "image", "audio": "audio", "video": "video", "document": "file", "sticker": "sticker"}
#: Attachment meta flag: the webhook's media id was refused (not a number), so there are no bytes to fetch.
MEDIA_ID_REFUSED = "media_id_refused"
_STATUSES: dict[str, StatusKind] = {
    "sent": "sent",
    "delivered": "delivered",
    "read": "read",
    "played": "read",
    "failed": "failed",
}

#: Prefix of the ``biz_opaque_callback_data`` we put on every send; Meta returns it in the statuses.
CALLBACK_TAG = "carebridge:"
_LAST_PART = re.compile(re.escape(CALLBACK_TAG) + r"(\d{1,18})")

log = logging.getLogger("carebridge.whatsapp")


def callback_data(delivery_id: int, part: int, parts: int) -> str:
    """The ``biz_opaque_callback_data`` of one part of a delivery: the last part names the delivery alone.

    Its statuses then tell the core that the whole delivery reached WhatsApp,
    which settles a send whose answer was lost (``StatusUpdate.delivery_id``).
    """
    return f"{CALLBACK_TAG}{delivery_id}" if part == parts - 1 else f"{CALLBACK_TAG}{delivery_id}.{part}"


class PayloadError(ValueError):
    """The webhook body is not a WhatsApp Business Account notification we can read."""


@dataclass
class ParsedEvents:
    """Everything one webhook POST carried, in payload order."""

    messages: list[InboundMessage] = field(default_factory=list)
    statuses: list[StatusUpdate] = field(default_factory=list)
    errors: list[dict[str, Any]] = field(default_factory=list)


def parse_payload(payload: Mapping[str, Any], *, phone_number_id: str | None = None) -> ParsedEvents:
    """Parse every ``entry[].changes[].value`` of a webhook body.

    :param phone_number_id: when given, changes addressed to another business
        number (``value.metadata.phone_number_id``) are skipped: one Meta app
        may serve several numbers.
    :raises PayloadError: when the envelope is not a WhatsApp notification.
    """
    if payload.get("object") != OBJECT:
        raise PayloadError(f"object must be {OBJECT!r}, got {payload.get('object')!r}")
    entries = payload.get("entry")
    if not isinstance(entries, list):
        raise PayloadError("entry must be a list")
    events = ParsedEvents()
    for entry in entries:
        changes = entry.get("changes") if isinstance(entry, dict) else None
        if not isinstance(changes, list):
            raise PayloadError("entry[].changes must be a list")
        for change in changes:
            if not isinstance(change, dict) or not isinstance(change.get("value"), dict):
                raise PayloadError("entry[].changes[].value must be an object")
            if change.get("field", "messages") != "messages":
                log.info("ignoring webhook field %r", change.get("field"))
                continue
            _parse_value(change["value"], phone_number_id, events)
    return events


def _parse_value(value: dict[str, Any], phone_number_id: str | None, events: ParsedEvents) -> None:
    metadata = value.get("metadata")
    target = metadata.get("phone_number_id") if isinstance(metadata, dict) else None
    if phone_number_id and target and str(target) != phone_number_id:
        log.warning("skipping a change for another business number (phone_number_id %s)", target)
        return
    names = _contact_names(value.get("contacts"))
    for item in _objects(value.get("messages")):
        message = parse_message(item, names)
        if message is not None:
            events.messages.append(message)
    for item in _objects(value.get("statuses")):
        status = parse_status(item)
        if status is not None:
            events.statuses.append(status)
    for error in _objects(value.get("errors")):
        log.warning("platform reported error %s: %s", error.get("code"), error.get("title"))
        events.errors.append(error)


def parse_message(item: Mapping[str, Any], names: Mapping[str, str] | None = None) -> InboundMessage | None:
    """Turn one ``messages[]`` item into an ``InboundMessage``; None when there is nothing to store."""
    external_id = item.get("id")
    sender_raw = item.get("from")
    if not isinstance(external_id, str) or not external_id or not isinstance(sender_raw, str) or not sender_raw:
        log.warning("skipping a message without id or sender (type %r)", item.get("type"))
        return None
    kind = str(item.get("type") or "")
    text, attachments, meta, reply_to = _content(kind, item.get(kind))
    if text is None:
        return None
    context = item.get("context")
    if reply_to is None and isinstance(context, dict) and isinstance(context.get("id"), str):
        reply_to = context["id"]
    if isinstance(context, dict) and context.get("forwarded"):
        meta["forwarded"] = "true"
    names = names or {}
    sender_name = names.get(sender_raw) or (next(iter(names.values())) if len(names) == 1 else None)
    return InboundMessage(
        channel=CHANNEL,
        sender=address_from_wa_id(sender_raw),
        external_id=external_id,
        text=text,
        timestamp=parse_timestamp(item.get("timestamp")),
        sender_name=sender_name,
        reply_to=reply_to,
        attachments=tuple(attachments),
        meta=meta,
    )


def _content(kind: str, raw: Any) -> tuple[str | None, list[Attachment], dict[str, str], str | None]:
    """Return (text, attachments, meta, reply_to) for one message type; text None = drop."""
    meta: dict[str, str] = {"type": kind}
    body: Mapping[str, Any] = raw if isinstance(raw, dict) else {}
    if kind == "text":
        return str(body.get("body") or ""), [], meta, None
    if kind in MEDIA_TYPES:
        attachment_meta: dict[str, object] = {
            k: body[k] for k in ("caption", "sha256", "animated", "voice") if body.get(k) not in (None, "")
        }
        media_id = str(body["id"]) if body.get("id") not in (None, "") else None
        if media_id is not None and not is_media_id(media_id):
            media_id = None
            attachment_meta[MEDIA_ID_REFUSED] = True
        attachment = Attachment(
            kind=MEDIA_TYPES[kind],
            media_id=media_id,
            mime=body.get("mime_type"),
            filename=body.get("filename"),
            meta=attachment_meta,
        )
        return str(body.get("caption") or ""), [attachment], meta, None
    if kind == "location":
        loc_meta = {k: body[k] for k in ("latitude", "longitude", "name", "address", "url") if k in body}
        parts = [str(body[k]) for k in ("name", "address") if body.get(k)]
        if "latitude" in body and "longitude" in body:
            parts.append(f"({body['latitude']}, {body['longitude']})")
        return " ".join(parts), [Attachment(kind="location", meta=loc_meta)], meta, None
    if kind == "contacts":
        cards = _objects(raw)
        return _contacts_text(cards), [Attachment(kind="contacts", meta={"contacts": cards})], meta, None
    if kind == "interactive":
        sub = str(body.get("type") or "")
        reply = body.get(sub) if sub in ("button_reply", "list_reply") else None
        if isinstance(reply, dict):
            meta.update(reply_kind=sub, reply_id=str(reply.get("id") or ""))
            return str(reply.get("title") or ""), [], meta, None
        meta["interactive_type"] = sub
        return UNSUPPORTED_TEXT, [], meta, None
    if kind == "button":
        meta["payload"] = str(body.get("payload") or "")
        return str(body.get("text") or ""), [], meta, None
    if kind == "reaction":
        emoji = str(body.get("emoji") or "")
        if not emoji:
            return None, [], meta, None
        target = body.get("message_id")
        return f"[reaction {emoji}]", [], meta, target if isinstance(target, str) else None
    return UNSUPPORTED_TEXT, [], meta, None


def _contacts_text(cards: list[dict[str, Any]]) -> str:
    """One line per shared contact card: its name and phone numbers, for the agent to read."""
    lines = []
    for card in cards:
        name = card.get("name")
        formatted = name.get("formatted_name") if isinstance(name, dict) else None
        phones = [str(p.get("phone")) for p in _objects(card.get("phones")) if p.get("phone")]
        lines.append(" ".join([str(formatted or ""), *phones]).strip())
    return "\n".join(line for line in lines if line)


def _objects(value: Any) -> list[dict[str, Any]]:
    return [x for x in value if isinstance(x, dict)] if isinstance(value, list) else []


def parse_status(item: Mapping[str, Any]) -> StatusUpdate | None:
    """Turn one ``statuses[]`` item into a ``StatusUpdate``; None for kinds the core does not track.

    A ``failed`` status with error 131047 is a message refused because the
    customer's 24-hour window is closed: it is marked ``window_closed`` so the
    core holds it and starts its fall-backs instead of failing it.
    """
    status = _STATUSES.get(str(item.get("status")))
    if status is None:
        log.info("ignoring status %r", item.get("status"))
        return None
    errors = _objects(item.get("errors"))
    first = errors[0] if errors else {}
    title = str(first.get("title") or first.get("message") or "") or None
    recipient = item.get("recipient_id")
    code = first.get("code")
    ours = item.get("biz_opaque_callback_data")
    last = _LAST_PART.fullmatch(ours) if isinstance(ours, str) else None
    return StatusUpdate(
        channel=CHANNEL,
        status=status,
        timestamp=parse_timestamp(item.get("timestamp")),
        recipient=address_from_wa_id(recipient) if isinstance(recipient, str) and recipient else None,
        external_id=str(item["id"]) if item.get("id") else None,
        error_code=str(code) if code is not None else None,
        error_title=title,
        window_closed=status == "failed" and str(code) == str(WINDOW_CLOSED),
        delivery_id=int(last.group(1)) if last is not None else None,
    )


def _contact_names(contacts: Any) -> dict[str, str]:
    names: dict[str, str] = {}
    for contact in _objects(contacts):
        profile = contact.get("profile")
        name = profile.get("name") if isinstance(profile, dict) else None
        if isinstance(name, str) and name.strip() and contact.get("wa_id"):
            names[str(contact["wa_id"])] = name.strip()
    return names


def address_from_wa_id(wa_id: str) -> str:
    """``15550002222`` → ``+15550002222``; a non-phone id (future usernames) is kept as it is."""
    try:
        return normalize_e164(wa_id)
    except ValueError:
        return wa_id


def parse_timestamp(value: Any) -> float:
    """WhatsApp timestamps are strings of Unix seconds; a missing one means now."""
    try:
        return float(int(str(value)))
    except (TypeError, ValueError):
        return time.time()
