"""What each kind of Instagram messaging event becomes, from captured-style payloads.

Payload shapes follow Meta's Instagram webhook examples (see the plugin
README's "Facts"); ids are neutral test values.
"""

from __future__ import annotations

from typing import Any

import pytest
from carebridge_instagram.webhook import (
    STORY_MENTION_LABEL,
    STORY_REPLY_LABEL,
    UNSUPPORTED_LABEL,
    Batch,
    PayloadError,
    is_instagram_event,
    parse_events,
)

from bridge import Attachment, StatusUpdate
from tests.plugins.instagram.conftest import CUSTOMER, IG_USER_ID, OTHER, fixture_json

MID = "aWdfZAG1faXRlbToxOklHTWVzc2FnZAUlEOjE3ODQxNDAwMDAwMDAwMDAxOjM0MDI4MjM2N"
ECHOED = MID + "jUw"


def _parse(name: str) -> Batch:
    return parse_events(fixture_json(name), ig_user_id=IG_USER_ID, now=0.0)


def test_story_reply_and_story_mention_reach_the_agent_as_labelled_customer_text() -> None:
    batch = _parse("instagram-story-reply-and-mention.json")
    reply, mention = batch.messages
    assert (reply.sender, reply.external_id, reply.reply_to) == (CUSTOMER, MID + "jQw", None)
    assert reply.text == f"{STORY_REPLY_LABEL} Love this! Is it still in stock?"
    assert STORY_REPLY_LABEL == "[Story reply]" and STORY_MENTION_LABEL == "[Story mention]"
    assert reply.attachments == (
        Attachment(
            kind="story",
            url="https://lookaside.fbsbx.com/ig_messaging_cdn/?asset_id=17900000000000001&signature=AbCdEf",
            meta={"story_id": "17900000000000001"},
        ),
    )
    assert (mention.sender, mention.text) == (OTHER, STORY_MENTION_LABEL)
    assert mention.attachments == (
        Attachment(
            kind="story_mention",
            url="https://lookaside.fbsbx.com/ig_messaging_cdn/?asset_id=17900000000000002&signature=GhIjKl",
        ),
    )
    assert mention.timestamp == 1735689602.0
    assert batch.statuses == [] and batch.ignored == []


ATTACHMENTS_AND_QUOTES: list[tuple[str, str, tuple[str, ...], str | None, dict[str, str]]] = [
    # (mid suffix, text, attachment kinds, reply_to, meta)
    ("jYw", "", ("image",), None, {}),
    ("jYx", "", ("share",), None, {}),
    ("jYy", "", ("video",), None, {}),
    ("jYz", "Which one is this?", (), ECHOED, {}),
    ("jY0", "Opening hours", (), None, {"quick_reply_payload": "HOURS"}),
    ("jY1", "Talk to a person", (), None, {"postback_payload": "HUMAN"}),
    ("jY2", UNSUPPORTED_LABEL, (), None, {}),
]


def test_attachments_postbacks_quick_replies_and_quotes_table() -> None:
    batch = _parse("instagram-attachments-postback-and-quotes.json")
    got = [
        (m.external_id.removeprefix(MID), m.text, tuple(a.kind for a in m.attachments), m.reply_to, dict(m.meta))
        for m in batch.messages
    ]
    assert got == ATTACHMENTS_AND_QUOTES
    assert batch.ignored == ["message_deleted"]
    assert all(m.sender == CUSTOMER and not m.echo for m in batch.messages)
    reel = batch.messages[2].attachments[0]
    assert reel.url is not None and reel.url.startswith("https://lookaside.fbsbx.com/")
    assert reel.meta == {"reel_video_id": "18100000000000001", "title": "Our new roast"}


def test_echo_read_reaction_referral_other_account_and_comments() -> None:
    batch = _parse("instagram-echo-read-and-other-events.json")
    assert batch.messages == []
    assert batch.statuses == [
        StatusUpdate(channel="instagram", status="read", timestamp=1735689604.0, recipient=CUSTOMER, external_id=ECHOED)
    ]
    assert batch.ignored == ["echo", "reaction", "referral", "other_account", "change:comments"]


def _one(event: dict[str, Any], sender: str = CUSTOMER) -> dict[str, Any]:
    return {"object": "instagram", "entry": [{"id": IG_USER_ID, "time": 1735689600000, "messaging": [
        {"sender": {"id": sender}, "recipient": {"id": IG_USER_ID}, "timestamp": 1735689600000, **event}
    ]}]}  # fmt: skip


@pytest.mark.parametrize(
    ("event", "ignored"),
    [
        ({"message": {"mid": "m1", "text": "written in the Instagram app", "is_echo": True}}, "echo"),
        ({"message": {"mid": "m2"}}, "empty_message"),
        ({"message": {"text": "no mid"}}, "malformed"),
        ({"message_edit": {"mid": "m3", "text": "secret", "num_edit": 1}}, "message_edit"),
        ({"optin": {"type": "notification_messages"}}, "optin"),
        ({"read": {}}, "malformed"),
        ({"postback": {"mid": "m4"}}, "empty_postback"),
        ({}, "empty"),
        ({"<script>": {"x": 1}}, "script"),
    ],
)
def test_events_that_store_nothing_are_named_by_kind(event: dict[str, Any], ignored: str) -> None:
    batch = parse_events(_one(event), ig_user_id=IG_USER_ID, now=0.0)
    assert (batch.messages, batch.statuses, batch.ignored) == ([], [], [ignored])


def test_our_own_account_as_sender_is_an_echo_even_without_the_flag() -> None:
    payload = _one({"message": {"mid": "m5", "text": "hi"}}, sender=IG_USER_ID)
    batch = parse_events(payload, ig_user_id=IG_USER_ID, now=0)
    assert batch.ignored == ["echo"] and batch.messages == []


def test_delivery_watermark_and_standby_items_are_read() -> None:
    payload = {"object": "instagram", "entry": [{"id": IG_USER_ID, "time": 1735689600000, "standby": [
        {"sender": {"id": CUSTOMER}, "recipient": {"id": IG_USER_ID}, "timestamp": 1735689600000,
         "message": {"mid": "m_standby", "text": "while another app owns the thread"}},
        {"sender": {"id": CUSTOMER}, "recipient": {"id": IG_USER_ID},
         "delivery": {"mids": ["m_ours"], "watermark": 1735689599000}},
    ]}]}  # fmt: skip
    batch = parse_events(payload, ig_user_id=IG_USER_ID, now=0.0)
    assert [m.external_id for m in batch.messages] == ["m_standby"]
    assert [(s.status, s.external_id, s.watermark) for s in batch.statuses] == [
        ("delivered", "m_ours", None),
        ("delivered", None, 1735689599.0),
    ]


def test_a_message_without_any_timestamp_takes_the_entrys_then_now() -> None:
    payload = _one({"message": {"mid": "m6", "text": "hi"}})
    del payload["entry"][0]["messaging"][0]["timestamp"]
    assert parse_events(payload, ig_user_id=IG_USER_ID, now=5.0).messages[0].timestamp == 1735689600.0
    del payload["entry"][0]["time"]
    assert parse_events(payload, ig_user_id=IG_USER_ID, now=5.0).messages[0].timestamp == 5.0


def test_only_the_instagram_object_is_parsed() -> None:
    assert is_instagram_event({"object": "instagram"}) and not is_instagram_event({"object": "page"})
    with pytest.raises(PayloadError, match="'entry' must be an array"):
        parse_events({"object": "instagram"}, ig_user_id=IG_USER_ID, now=0.0)
