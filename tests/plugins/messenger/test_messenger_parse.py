"""Parser tests: sample payloads in, the core's messages and status updates out."""

from __future__ import annotations

from typing import Any

import pytest

from bridge import Attachment
from carebridge_messenger.webhook import PayloadError, is_page_event, parse_events
from tests.plugins.messenger.conftest import PAGE_ID, fixture_json

NOW = 1_800_000_000.0


def _item(body: dict[str, Any], sender: str = "2000000000000009", ts: int | None = 1735689700000) -> dict[str, Any]:
    item: dict[str, Any] = {"sender": {"id": sender}, "recipient": {"id": PAGE_ID}, **body}
    if ts is not None:
        item["timestamp"] = ts
    return item


def _payload(*items: dict[str, Any], key: str = "messaging") -> dict[str, Any]:
    return {"object": "page", "entry": [{"id": PAGE_ID, "time": 1735689700999, key: list(items)}]}


def test_text_message_keeps_unicode_and_converts_ms_to_seconds() -> None:
    batch = parse_events(fixture_json("messenger-text-message.json"), page_id=PAGE_ID, now=NOW)
    assert batch.statuses == [] and batch.ignored == []
    (msg,) = batch.messages
    assert msg.channel == "messenger"
    assert msg.sender == "2000000000000001"
    assert msg.external_id == "m_TESTmid0001AAAAbbbbCCCCddddEEEEffff"
    assert msg.text == "Hello, is anyone there? Café opens at 9?"
    assert msg.timestamp == pytest.approx(1735689599.876)
    assert msg.echo is False and msg.reply_to is None and msg.attachments == ()


def test_batched_mixed_events_yield_every_message_and_status_in_order() -> None:
    batch = parse_events(fixture_json("messenger-batched-mixed-events.json"), page_id=PAGE_ID, now=NOW)
    quick, image, reply = batch.messages
    assert quick.text == "Billing"
    assert quick.meta == {"quick_reply_payload": "QUEUE_BILLING"}
    assert image.text == ""
    assert image.sender == "2000000000000002"
    assert image.attachments == (
        Attachment(kind="image", url="https://scontent.example.invalid/v/t1.15752-9/image-0001.jpg"),
    )
    assert reply.reply_to == "m_TESTmid0090OUTaaaaBBBBccccDDDDeeee"
    assert reply.text == "Yes, that one \u2014 thanks"
    delivered_mid, delivered_mark, read_mark = batch.statuses
    assert (delivered_mid.status, delivered_mid.external_id) == ("delivered", "m_TESTmid0090OUTaaaaBBBBccccDDDDeeee")
    assert delivered_mid.recipient == "2000000000000001"
    # The delivery example has no timestamp: the watermark stands in.
    assert delivered_mid.timestamp == pytest.approx(1735689700.350)
    assert delivered_mark.watermark == pytest.approx(1735689700.350) and delivered_mark.external_id is None
    assert read_mark.status == "read"
    assert read_mark.watermark == pytest.approx(1735689700.450)
    assert read_mark.timestamp == pytest.approx(1735689700.005)
    assert batch.ignored == []


def test_page_inbox_echo_is_outbound_for_the_customer_and_postback_is_customer_text() -> None:
    batch = parse_events(fixture_json("messenger-echo-and-postback.json"), page_id=PAGE_ID, now=NOW)
    echo, postback = batch.messages
    # The fixture's metadata is not our tag: a person answered from the Page inbox.
    assert echo.echo is True
    assert echo.sender == "2000000000000001"  # the customer, i.e. the echo's recipient
    assert echo.text == "Thanks, an agent will reply shortly."
    assert postback.echo is False
    assert postback.sender == "2000000000000003"
    assert postback.text == "Talk to a human"
    assert postback.external_id == "m_TESTmid0201POSTBACKaaaaBBBBccccDDDD"
    assert postback.meta == {"postback_payload": "HANDOVER_TO_AGENT"}


def test_echo_of_our_own_send_is_ignored() -> None:
    payload = fixture_json("messenger-echo-and-postback.json")
    payload["entry"][0]["messaging"][0]["message"]["metadata"] = "carebridge:42"
    batch = parse_events(payload, page_id=PAGE_ID, now=NOW)
    assert [m.external_id for m in batch.messages] == ["m_TESTmid0201POSTBACKaaaaBBBBccccDDDD"]
    assert batch.ignored == ["own_echo"]


def test_attachment_kinds_location_fallback_sticker_and_file() -> None:
    attachments = [
        {"type": "location", "title": "Pinned", "payload": {"coordinates": {"lat": 52.37, "long": 4.89}}},
        {"type": "fallback", "title": "A shared link", "url": "https://example.invalid/article"},
        {"type": "fallback"},
        {"type": "image", "payload": {"url": "https://cdn.example.invalid/s.png", "sticker_id": 369239263222822}},
        {"type": "file", "payload": {"url": "https://cdn.example.invalid/f.pdf"}},
        {"type": "audio", "payload": {"url": "https://cdn.example.invalid/a.mp4"}},
        {"type": "video", "payload": {"url": "https://cdn.example.invalid/v.mp4"}},
        {"type": "reel", "payload": {"url": "https://cdn.example.invalid/r.mp4", "reel_video_id": 7}},
    ]
    payload = _payload(_item({"message": {"mid": "m_att", "attachments": attachments}}))
    (msg,) = parse_events(payload, page_id=PAGE_ID, now=NOW).messages
    assert msg.text == ""
    assert [a.kind for a in msg.attachments] == [
        "location",
        "link",
        "link",
        "sticker",
        "file",
        "audio",
        "video",
        "video",
    ]
    location, link, bare, sticker, file, _audio, _video, reel = msg.attachments
    assert location.meta == {"latitude": 52.37, "longitude": 4.89, "title": "Pinned"}
    assert (link.url, dict(link.meta)) == ("https://example.invalid/article", {"title": "A shared link"})
    assert (bare.url, dict(bare.meta)) == (None, {})
    assert sticker.meta == {"sticker_id": 369239263222822}
    assert file.url == "https://cdn.example.invalid/f.pdf"
    assert reel.meta == {"reel_video_id": 7}


def test_standby_items_are_parsed_like_messaging() -> None:
    payload = _payload(_item({"message": {"mid": "m_sb", "text": "still there?"}}), key="standby")
    (msg,) = parse_events(payload, page_id=PAGE_ID, now=NOW).messages
    assert (msg.external_id, msg.text) == ("m_sb", "still there?")


def test_unknown_kinds_and_unusable_items_are_reported_by_kind_only() -> None:
    payload = _payload(
        _item({"reaction": {"mid": "m_x", "action": "react", "reaction": "love"}}),
        _item({"optin": {"ref": "secret ref"}}),
        _item({"message": {"mid": "m_del", "is_deleted": True}}),
        _item({"message": {"mid": "m_empty"}}),
        _item({"message": {"text": "no mid"}}),
        {"recipient": {"id": PAGE_ID}, "message": {"mid": "m_nosender", "text": "who"}},
        "not an object",
    )
    batch = parse_events(payload, page_id=PAGE_ID, now=NOW)
    assert batch.messages == [] and batch.statuses == []
    assert batch.ignored == [
        "reaction",
        "optin",
        "message_deleted",
        "empty_message",
        "malformed",
        "malformed",
        "malformed",
    ]
    assert "secret ref" not in repr(batch.ignored)


def test_entries_for_another_page_are_ignored() -> None:
    payload = _payload(_item({"message": {"mid": "m_other", "text": "hi"}}))
    payload["entry"][0]["id"] = "999"
    batch = parse_events(payload, page_id=PAGE_ID, now=NOW)
    assert batch.messages == [] and batch.ignored == ["other_page"]


def test_missing_timestamps_fall_back_to_entry_time_then_now() -> None:
    payload = _payload(_item({"message": {"mid": "m_t", "text": "hi"}}, ts=None))
    (msg,) = parse_events(payload, page_id=PAGE_ID, now=NOW).messages
    assert msg.timestamp == pytest.approx(1735689700.999)
    del payload["entry"][0]["time"]
    (msg,) = parse_events(payload, page_id=PAGE_ID, now=NOW).messages
    assert msg.timestamp == NOW


def test_postback_without_mid_gets_a_stable_id() -> None:
    payload = _payload(_item({"postback": {"title": "Start", "payload": "GET_STARTED"}}))
    first = parse_events(payload, page_id=PAGE_ID, now=NOW).messages
    again = parse_events(payload, page_id=PAGE_ID, now=NOW + 60).messages
    assert first[0].external_id == again[0].external_id == "postback:2000000000000009:1735689700000"


def test_delivery_without_mids_is_a_watermark_update() -> None:
    payload = _payload(_item({"delivery": {"watermark": 1735689700777}}, ts=None))
    (update,) = parse_events(payload, page_id=PAGE_ID, now=NOW).statuses
    assert update.external_id is None
    assert update.watermark == pytest.approx(1735689700.777)
    assert update.recipient == "2000000000000009"


@pytest.mark.parametrize(
    "payload",
    [
        {"object": "page"},
        {"object": "page", "entry": {}},
        {"object": "page", "entry": ["x"]},
        {"object": "page", "entry": [{"id": PAGE_ID, "messaging": {}}]},
    ],
)
def test_malformed_envelopes_raise(payload: dict[str, Any]) -> None:
    with pytest.raises(PayloadError):
        parse_events(payload, page_id=PAGE_ID, now=NOW)


def test_only_page_objects_are_page_events() -> None:
    assert is_page_event({"object": "page"})
    assert not is_page_event({"object": "instagram"})
    assert not is_page_event({})
