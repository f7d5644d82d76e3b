"""What each kind of Telegram update becomes, from captured-style updates.

Shapes follow the Bot API's ``Update``, ``Message`` and ``CallbackQuery``
objects (see the plugin README's "Facts"); ids are neutral test values.
"""

from __future__ import annotations

from typing import Any

import pytest
from carebridge_telegram.webhook import EDITED_LABEL, parse_update

from tests.plugins.telegram.conftest import fixture_json

NOW = 1735690000.0

# fixture → (sender, external_id, text, sender_name, reply_to, meta, timestamp)
TABLE: list[tuple[str, tuple[str, str, str, str, str | None, dict[str, str], float]]] = [
    (
        "telegram-private-text.json",
        ("43", "43:17", "Grüß Gott! Wo bleibt mein Paket?", "Ann Müller", None, {}, 1735689600.0),
    ),
    (
        "telegram-reply-to-our-message.json",
        ("43", "43:19", "Danke! Wann kommt es an?", "Ann Müller", "43:18", {}, 1735689660.0),
    ),
    (
        "telegram-edited-message.json",
        (
            "43", "43:19:edit:1735689675", f"{EDITED_LABEL} Danke! Wann genau kommt es an?", "Ann Müller", None,
            {"edited": "43:19"}, 1735689675.0,
        ),
    ),
    (
        "telegram-callback-query.json",
        (
            "5550001", "5550001:callback:4382bfdwdsb323b2d9", "answered:no", "Bob", "5550001:7",
            {"callback_data": "answered:no"}, NOW,
        ),
    ),
    (
        "telegram-photo-with-caption.json",
        ("5550001", "5550001:8", "[photo] The box arrived like this", "Bob", None, {}, 1735689720.0),
    ),
]  # fmt: skip


@pytest.mark.parametrize(("fixture", "expected"), TABLE, ids=[row[0] for row in TABLE])
def test_private_chat_updates_become_one_message(fixture: str, expected: tuple[Any, ...]) -> None:
    batch = parse_update(fixture_json(fixture), now=NOW)
    (msg,) = batch.messages
    got = (msg.sender, msg.external_id, msg.text, msg.sender_name, msg.reply_to, dict(msg.meta), msg.timestamp)
    assert got == expected
    assert msg.channel == "telegram" and batch.ignored == []


def test_message_ids_are_only_unique_per_chat_so_external_ids_carry_the_chat() -> None:
    one = fixture_json("telegram-private-text.json")
    other = fixture_json("telegram-private-text.json")
    other["message"]["chat"]["id"] = other["message"]["from"]["id"] = 44
    ids = {parse_update(u, now=NOW).messages[0].external_id for u in (one, other)}
    assert ids == {"43:17", "44:17"}


def test_an_edit_posted_twice_keeps_its_id_and_two_edits_differ() -> None:
    update = fixture_json("telegram-edited-message.json")
    again = parse_update(update, now=NOW).messages[0].external_id
    assert again == parse_update(update, now=NOW + 60).messages[0].external_id
    update["edited_message"]["edit_date"] += 30
    assert parse_update(update, now=NOW).messages[0].external_id != again


def test_the_button_press_is_to_be_acknowledged() -> None:
    assert parse_update(fixture_json("telegram-callback-query.json"), now=NOW).callback_query_id == "4382bfdwdsb323b2d9"
    assert parse_update(fixture_json("telegram-private-text.json"), now=NOW).callback_query_id is None


@pytest.mark.parametrize(
    ("fixture", "kind"),
    [
        ("telegram-group-message.json", "supergroup_message"),
        ("telegram-channel-post.json", "channel_post"),
        ("telegram-service-message.json", "service_message"),
        ("telegram-my-chat-member-blocked.json", "my_chat_member"),
    ],
)
def test_updates_that_store_nothing_are_named_by_kind(fixture: str, kind: str) -> None:
    batch = parse_update(fixture_json(fixture), now=NOW)
    assert (batch.messages, batch.ignored) == ([], [kind])


def _private(**message: object) -> dict[str, Any]:
    base = {"message_id": 5, "from": {"id": 43, "is_bot": False, "first_name": "Ann"},
            "chat": {"id": 43, "type": "private", "first_name": "Ann"}, "date": 1735689600}  # fmt: skip
    return {"update_id": 1, "message": {**base, **message}}


def _in_chat(chat: dict[str, object], **message: object) -> dict[str, Any]:
    return {"update_id": 2, "message": {"message_id": 1, "chat": chat, **message}}


def _press(**query: object) -> dict[str, Any]:
    return {"update_id": 3, "callback_query": {"id": "q1", "from": {"id": 43}, **query}}


PRIVATE = {"id": 43, "type": "private"}


@pytest.mark.parametrize(
    ("update", "outcome"),
    [
        (_private(text="  "), "service_message"),
        (_private(sticker={"file_id": "CAACAgIAAx", "emoji": "👍"}), "[sticker]"),
        (_private(voice={"file_id": "AwACAgIAAx", "duration": 3}), "[voice message]"),
        (_private(document={"file_id": "BQACAgIAAx"}, caption="my invoice"), "[file] my invoice"),
        (_private(location={"latitude": 52.37, "longitude": 4.89}), "[location]"),
        (_in_chat({"id": "43", "type": "private"}, text="x"), "malformed"),
        ({"update_id": 3, "message": {"chat": PRIVATE, "text": "x"}}, "malformed"),
        (_in_chat({"id": -42, "type": "group"}, text="hi"), "group_message"),
        (_press(inline_message_id="AAA", data="x"), "inline_callback"),
        (_press(message={"message_id": 1, "chat": PRIVATE}), "empty_callback"),
        (_press(message={"message_id": 1, "chat": {"id": -4, "type": "supergroup"}}, data="x"), "supergroup_callback"),
        ({"update_id": 8}, "empty"),
    ],
)
def test_edge_cases_table(update: dict[str, Any], outcome: str) -> None:
    batch = parse_update(update, now=NOW)
    if outcome.startswith("["):
        assert [m.text for m in batch.messages] == [outcome] and batch.ignored == []
    else:
        assert (batch.messages, batch.ignored) == ([], [outcome])


def test_a_name_is_first_and_last_name_or_none() -> None:
    update = _private(text="hi")
    update["message"]["from"] = {"id": 43, "is_bot": False, "first_name": "  ", "username": "ann"}
    assert parse_update(update, now=NOW).messages[0].sender_name is None
