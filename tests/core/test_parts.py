"""bridge.parts.split_text: parts within the limit, cut at whitespace, nothing lost, order kept."""

from __future__ import annotations

import pytest

from bridge.parts import split_text


def test_short_text_is_one_part() -> None:
    assert split_text("hello there", 4096) == ["hello there"]
    assert split_text("", 10) == [""]


def test_cuts_at_the_last_space_before_the_limit() -> None:
    assert split_text("aaaa bbbb cccc", 9) == ["aaaa bbbb", "cccc"]


def test_prefers_a_line_break_in_the_second_half() -> None:
    assert split_text("aaaaaaa\nbb cc dd", 14) == ["aaaaaaa", "bb cc dd"]


def test_a_word_longer_than_the_limit_is_cut_hard() -> None:
    assert split_text("x" * 25, 10) == ["x" * 10, "x" * 10, "x" * 5]


def test_every_part_fits_and_rejoins_to_the_text() -> None:
    text = " ".join(f"word{n}" for n in range(3000))
    parts = split_text(text, 4096)
    assert all(0 < len(p) <= 4096 for p in parts)
    assert " ".join(parts) == text


def test_limit_must_be_positive() -> None:
    with pytest.raises(ValueError):
        split_text("x", 0)


def test_blank_parts_at_a_cut_are_dropped() -> None:
    parts = split_text("aaaa     \n     bbbb", 6)
    assert all(part.strip() for part in parts)
    assert [part.strip() for part in parts] == ["aaaa", "bbbb"]


def test_sent_parts_resume_the_same_text_and_restart_a_changed_one() -> None:
    from bridge.parts import SentParts

    sent = SentParts(remember=2)
    sent.accepted(1, "hello").append("mid-1")
    assert sent.accepted(1, "hello") == ["mid-1"]
    assert sent.accepted(1, "changed") == []
    sent.accepted(2, "b").append("x")
    sent.accepted(3, "c").append("y")  # 1 is the oldest and is forgotten
    assert sent.accepted(1, "changed") == []
    sent.finish(3)
    assert sent.accepted(3, "c") == []
