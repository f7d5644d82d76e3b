"""Routing rules: first match wins, default queue, errors name file and line."""

from __future__ import annotations

from pathlib import Path

import pytest

from bridge.errors import ConfigError
from bridge.relay.rules import DEFAULT_QUEUE, load_rules

ROOT = Path(__file__).resolve().parents[2]


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "routing.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def test_no_file_sends_everything_to_default() -> None:
    rules = load_rules(None)
    assert rules.match("whatsapp", "anything at all", None) == DEFAULT_QUEUE
    assert rules.queues == frozenset({"default"})


def test_documented_example_loads_and_routes() -> None:
    rules = load_rules(ROOT / "config" / "routing.yaml")
    assert rules.match("messenger", "Where is my REFUND?", None) == "billing"
    text = "Goedemorgen, ik heb een vraag"
    assert rules.match("whatsapp", text, rules.detect_language(text)) == "dutch"
    assert rules.match("whatsapp", "what is the price", "en") == "whatsapp-sales"
    assert rules.match("messenger", "what is the price", "en") == "default"


def test_first_matching_rule_wins_and_all_conditions_must_hold(tmp_path: Path) -> None:
    rules = load_rules(
        write(
            tmp_path,
            "queues: [a, b, c]\nrules:\n"
            "  - {queue: a, channel: [email], keywords: [help]}\n"
            "  - {queue: b, keywords: [help, 'opening hours']}\n"
            "  - {queue: c, channel: whatsapp}\n",
        )
    )
    assert rules.match("email", "Help!", None) == "a"
    assert rules.match("whatsapp", "need HELP", None) == "b"
    assert rules.match("whatsapp", "what are your opening hours?", None) == "b"
    assert rules.match("whatsapp", "helpful people", None) == "c"  # whole words only
    assert rules.match("messenger", "hi", None) == "default"


def test_language_from_channel_meta_beats_hints(tmp_path: Path) -> None:
    rules = load_rules(write(tmp_path, "language_hints:\n  nl: [hallo]\n  de: [danke, hallo]\n"))
    assert rules.detect_language("hallo danke") == "de"
    assert rules.detect_language("hallo", {"language": "fr-BE"}) == "fr"
    assert rules.detect_language("good morning") is None


def test_default_queue_can_be_changed(tmp_path: Path) -> None:
    rules = load_rules(write(tmp_path, "queues: {general: everyone}\ndefault_queue: general\n"))
    assert rules.match("messenger", "hi", None) == "general"


@pytest.mark.parametrize(
    ("text", "line", "reason"),
    [
        ("queues: [a]\nrules:\n  - queue: a\n  - queue: nope\n", 4, "queue 'nope' is not listed"),
        ("rules:\n  - channel: whatsapp\n", 2, "a rule needs a queue"),
        ("rules:\n  - queue: default\n    keyword: []\n", 3, "keywords"),
        ("rules:\n  - queue: default\n    colour: red\n", 3, "unknown key 'colour'"),
        ("queues: [a, b]\nrules: [\n", 3, ""),
        ("queues: [a]\nqueues: [b]\n", 2, "duplicate key 'queues'"),
        ("rules:\n  - queue: 12\n", 2, "must be a string"),
        ("default_queue: elsewhere\n", 1, "not listed under queues"),
    ],
)
def test_bad_file_names_file_and_line(tmp_path: Path, text: str, line: int, reason: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load_rules(path)
    message = str(info.value)
    assert message.startswith(f"{path}:{line}:"), message
    assert reason in message


def test_missing_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        load_rules(tmp_path / "absent.yaml")


def test_config_problems_lists_bad_rules_and_templates_files(tmp_path: Path) -> None:
    from types import SimpleNamespace

    from bridge.relay import config_problems

    rules = write(tmp_path, "rules:\n  - queue: nowhere\n")
    templates = tmp_path / "t.yaml"
    templates.write_text("queued:\n  en: '{oops}'\n", encoding="utf-8")
    config = SimpleNamespace(routing=SimpleNamespace(rules_file=rules), templates=SimpleNamespace(file=templates))
    problems = config_problems(config)
    assert [p.split(":")[1] for p in problems] == ["2", "2"]
    assert "nowhere" in problems[0] and "{oops}" in problems[1]
    good = SimpleNamespace(routing=SimpleNamespace(rules_file=None), templates=SimpleNamespace(file=None))
    assert config_problems(good) == []
