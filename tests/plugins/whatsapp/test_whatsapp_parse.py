"""Parser tests: sample payloads and every message type, as plain sync tests."""

from __future__ import annotations

from typing import Any

import pytest

from carebridge_whatsapp.webhook import (
    UNSUPPORTED_TEXT,
    PayloadError,
    parse_payload,
    parse_status,
)
from tests.plugins.whatsapp.conftest import PHONE_NUMBER_ID, fixture_json


def envelope(*messages: dict[str, Any], statuses: list[dict[str, Any]] | None = None, **value: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "messaging_product": "whatsapp",
        "metadata": {"display_phone_number": "15550001000", "phone_number_id": PHONE_NUMBER_ID},
        "contacts": [{"profile": {"name": "Test User"}, "wa_id": "15550002222"}],
        **value,
    }
    if messages:
        body["messages"] = list(messages)
    if statuses:
        body["statuses"] = statuses
    return {
        "object": "whatsapp_business_account",
        "entry": [{"id": "1", "changes": [{"field": "messages", "value": body}]}],
    }


def message(kind: str, content: Any, **extra: Any) -> dict[str, Any]:
    return {
        "from": "15550002222",
        "id": f"wamid.T-{kind}",
        "timestamp": "1735689600",
        "type": kind,
        kind: content,
        **extra,
    }


def only(payload: dict[str, Any]):  # noqa: ANN201 - test helper
    events = parse_payload(payload)
    assert len(events.messages) == 1
    return events.messages[0]


def test_text_fixture_gives_e164_sender_name_and_decoded_text() -> None:
    msg = only(fixture_json("whatsapp-text-message.json"))
    assert msg.channel == "whatsapp"
    assert msg.sender == "+15550002222"
    assert msg.sender_name == "Test User"
    assert msg.external_id == "wamid.TEST00000000000000000000000000000001"
    assert msg.text == "Hi! Do you ship to München?"
    assert msg.timestamp == 1735689600.0
    assert msg.reply_to is None and msg.attachments == ()


def test_image_fixture_gives_attachment_caption_and_reply_context() -> None:
    msg = only(fixture_json("whatsapp-image-reply-with-context.json"))
    assert msg.text == "This is the broken part"
    assert msg.reply_to == "wamid.TEST00000000000000000000000000000900"
    (att,) = msg.attachments
    assert (att.kind, att.media_id, att.mime) == ("image", "500000000000001", "image/jpeg")
    assert att.meta["caption"] == "This is the broken part"


def test_statuses_fixture_maps_every_status_and_the_131047_failure() -> None:
    events = parse_payload(fixture_json("whatsapp-statuses.json"))
    assert events.messages == []
    assert [s.status for s in events.statuses] == ["sent", "delivered", "read", "failed"]
    assert {s.external_id for s in events.statuses[:3]} == {"wamid.TEST00000000000000000000000000000910"}
    failed = events.statuses[3]
    assert failed.recipient == "+15550003333"
    assert failed.error_code == "131047" and failed.window_closed is True
    assert failed.error_title == "Re-engagement message"
    assert failed.timestamp == 1735689900.0
    assert events.statuses[0].error_code is None
    assert [s.window_closed for s in events.statuses[:3]] == [False, False, False]


@pytest.mark.parametrize(
    ("status", "code", "window_closed"),
    [
        ("failed", 131047, True),
        ("failed", "131047", True),
        ("failed", 131026, False),
        ("failed", None, False),
        ("delivered", 131047, False),
    ],
)
def test_only_a_failure_with_131047_is_a_closed_window(status: str, code: object, window_closed: bool) -> None:
    errors = [] if code is None else [{"code": code, "title": "refused"}]
    item = {
        "id": "wamid.X",
        "status": status,
        "timestamp": "1735689900",
        "recipient_id": "15550003333",
        "errors": errors,
    }
    update = parse_status(item)
    assert update is not None and update.window_closed is window_closed
    assert update.error_code == (None if code is None else str(code)), "the code itself is kept as well"


def test_interactive_and_button_replies_become_text_with_ids_in_meta() -> None:
    events = parse_payload(fixture_json("whatsapp-interactive-and-button-replies.json"))
    first, second = events.messages
    assert first.text == "Where is my order?"
    assert first.meta["reply_kind"] == "button_reply" and first.meta["reply_id"] == "order-status"
    assert first.sender_name == "Test User"
    assert first.reply_to == "wamid.TEST00000000000000000000000000000901"
    assert second.text == "Talk to a person" and second.meta["payload"] == "HUMAN"
    assert second.sender == "+15550003333" and second.sender_name == "Second User"


def test_list_reply_uses_its_title() -> None:
    msg = only(
        envelope(
            message(
                "interactive",
                {"type": "list_reply", "list_reply": {"id": "r2", "title": "Returns", "description": "x"}},
            )
        )
    )
    assert msg.text == "Returns" and msg.meta["reply_id"] == "r2" and msg.meta["reply_kind"] == "list_reply"


@pytest.mark.parametrize(
    ("kind", "expected_kind"),
    [("image", "image"), ("audio", "audio"), ("video", "video"), ("document", "file"), ("sticker", "sticker")],
)
def test_media_types_carry_their_media_id(kind: str, expected_kind: str) -> None:
    content = {"id": "5551", "mime_type": "application/octet-stream", "sha256": "abc"}
    if kind == "document":
        content.update(filename="invoice.pdf", caption="my invoice")
    msg = only(envelope(message(kind, content)))
    (att,) = msg.attachments
    assert att.kind == expected_kind and att.media_id == "5551"
    assert att.mime == "application/octet-stream"
    if kind == "document":
        assert att.filename == "invoice.pdf" and msg.text == "my invoice"
    else:
        assert msg.text == ""


def test_location_keeps_coordinates_and_reads_as_text() -> None:
    loc = {"latitude": 52.37, "longitude": 4.89, "name": "Shop", "address": "Main St 1"}
    msg = only(envelope(message("location", loc)))
    (att,) = msg.attachments
    assert att.kind == "location" and att.meta["latitude"] == 52.37 and att.meta["longitude"] == 4.89
    assert msg.text == "Shop Main St 1 (52.37, 4.89)"


def test_contacts_card_lists_name_and_phone() -> None:
    cards = [
        {
            "name": {"formatted_name": "Ann Example", "first_name": "Ann"},
            "phones": [{"phone": "+1 555 000 4444", "type": "CELL"}],
        }
    ]
    msg = only(envelope(message("contacts", cards)))
    (att,) = msg.attachments
    assert att.kind == "contacts" and att.meta["contacts"] == cards
    assert msg.text == "Ann Example +1 555 000 4444"


def test_reaction_quotes_the_reacted_message() -> None:
    msg = only(envelope(message("reaction", {"message_id": "wamid.OUR1", "emoji": "\U0001f44d"})))
    assert msg.text == "[reaction \U0001f44d]" and msg.reply_to == "wamid.OUR1"


def test_removed_reaction_is_dropped() -> None:
    events = parse_payload(envelope(message("reaction", {"message_id": "wamid.OUR1", "emoji": ""})))
    assert events.messages == []


@pytest.mark.parametrize("kind", ["order", "system", "unsupported", "brand_new_type"])
def test_unknown_types_are_kept_as_unsupported(kind: str) -> None:
    msg = only(envelope(message(kind, {"whatever": 1}, errors=[{"code": 131051}])))
    assert msg.text == UNSUPPORTED_TEXT and msg.meta["type"] == kind


def test_unknown_interactive_kind_is_unsupported() -> None:
    msg = only(envelope(message("interactive", {"type": "nfm_reply", "nfm_reply": {"body": "Sent"}})))
    assert msg.text == UNSUPPORTED_TEXT and msg.meta["interactive_type"] == "nfm_reply"


def test_batch_of_entries_and_changes_is_parsed_in_order() -> None:
    a, b = envelope(message("text", {"body": "one"})), envelope(message("text", {"body": "two"}, id="wamid.2"))
    payload = {"object": "whatsapp_business_account", "entry": a["entry"] + b["entry"]}
    assert [m.text for m in parse_payload(payload).messages] == ["one", "two"]


def test_played_counts_as_read_and_unknown_status_is_skipped() -> None:
    statuses = [
        {"id": "wamid.A", "status": "played", "timestamp": "10", "recipient_id": "15550002222"},
        {"id": "wamid.A", "status": "deleted", "timestamp": "11", "recipient_id": "15550002222"},
    ]
    events = parse_payload(envelope(statuses=statuses))
    assert [(s.status, s.external_id) for s in events.statuses] == [("read", "wamid.A")]


def test_changes_for_another_business_number_are_skipped() -> None:
    payload = envelope(message("text", {"body": "hi"}))
    assert parse_payload(payload, phone_number_id="999").messages == []
    assert len(parse_payload(payload, phone_number_id=PHONE_NUMBER_ID).messages) == 1


def test_other_fields_are_ignored_and_app_errors_collected() -> None:
    payload = envelope(errors=[{"code": 131000, "title": "Something went wrong"}])
    payload["entry"][0]["changes"].append({"field": "account_update", "value": {"event": "x"}})
    events = parse_payload(payload)
    assert events.messages == [] and events.statuses == []
    assert events.errors == [{"code": 131000, "title": "Something went wrong"}]


def test_message_without_id_is_skipped_and_missing_timestamp_means_now() -> None:
    no_id = {"from": "15550002222", "type": "text", "text": {"body": "x"}}
    no_ts = {"from": "15550002222", "id": "wamid.X", "type": "text", "text": {"body": "y"}}
    events = parse_payload(envelope(no_id, no_ts))
    assert [m.external_id for m in events.messages] == ["wamid.X"]
    assert events.messages[0].timestamp > 1735689600


@pytest.mark.parametrize(
    "payload",
    [
        {"object": "page", "entry": []},
        {"entry": []},
        {"object": "whatsapp_business_account", "entry": {}},
        {"object": "whatsapp_business_account", "entry": [{"changes": "x"}]},
        {"object": "whatsapp_business_account", "entry": [{"changes": [{"field": "messages", "value": []}]}]},
    ],
)
def test_malformed_envelopes_are_refused(payload: dict[str, Any]) -> None:
    with pytest.raises(PayloadError):
        parse_payload(payload)
