"""Notices: built-ins for every key, per-language overrides, checked fields."""

from __future__ import annotations

from pathlib import Path

import pytest

from bridge.errors import ConfigError
from bridge.relay.templates import REQUIRED_KEYS, load_templates

ROOT = Path(__file__).resolve().parents[2]


def test_builtins_cover_every_notice_the_core_sends() -> None:
    templates = load_templates(None)
    for key in REQUIRED_KEYS:
        assert templates.render(key, "en", conversation=1, contact="Jan", channel="WhatsApp")
    assert "bezet" in templates.render("queued", "nl")


def test_unknown_language_falls_back_to_english() -> None:
    templates = load_templates(None)
    assert templates.render("queued", "xx") == templates.render("queued", "en")
    assert templates.render("queued", None) == templates.render("queued", "en")


def test_override_replaces_only_the_given_languages(tmp_path: Path) -> None:
    path = tmp_path / "t.yaml"
    path.write_text("queued:\n  en: 'Hold on, {contact}.'\n", encoding="utf-8")
    templates = load_templates(path)
    assert templates.render("queued", "en", contact="Ann") == "Hold on, Ann."
    assert "bezet" in templates.render("queued", "nl")  # built-in Dutch kept


def test_missing_fields_render_empty_never_as_braces() -> None:
    text = load_templates(None).render("handoff", conversation=5, contact="Jan", channel="Messenger")
    assert "{" not in text and text.startswith("[#5 Jan · Messenger] Handed over to you.")


def test_documented_example_loads() -> None:
    templates = load_templates(ROOT / "config" / "templates.yaml")
    assert "Example Care" in templates.render("queued", "nl")
    assert "5 minutes" in templates.render("window_warning", "en", channel="WhatsApp", minutes=5)


@pytest.mark.parametrize(
    ("text", "line", "reason"),
    [
        ("queued:\n  en: 'Hi {name}'\n", 2, "unknown field {name}"),
        ("queued:\n  en: 'Hi {contact'\n", 2, "literal brace"),
        ("queued: just text\n", 1, "must map languages"),
        ("queued:\n  en: 42\n", 2, "must be a string"),
        ("queued:\n  en: [a\n", 3, ""),
        ("queued:\n  en: '{contact:>10}'\n", 2, "no format spec"),
        ("closed:\n  en: 'Bye'\nqueud:\n  en: 'Hi'\n", 4, "unknown template 'queud'"),
    ],
)
def test_bad_override_names_file_and_line(tmp_path: Path, text: str, line: int, reason: str) -> None:
    path = tmp_path / "t.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        load_templates(path)
    assert str(info.value).startswith(f"{path}:{line}:"), str(info.value)
    assert reason in str(info.value)
