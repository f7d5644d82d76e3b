"""The README states the exact keywords and tables the detectors use."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from carebridge_sensitive import codes, passwords
from carebridge_sensitive.admin import load_patterns
from carebridge_sensitive.cards import ISSUERS

README = (Path(__file__).parents[3] / "plugins/sensitive/README.md").read_text(encoding="utf-8")
WORDS = {word.lower() for word in re.findall(r"[\w-]+", README)}


@pytest.mark.parametrize(
    "word",
    sorted({*codes.KEYWORDS, *codes.NOT_SECRET_CODES, *codes.NOT_A_CODE_BEFORE, *passwords.KEYWORDS}),
)
def test_keyword_is_documented(word: str) -> None:
    assert word in WORDS


def test_password_keywords_are_the_documented_ones() -> None:
    listed = ", ".join(f"`{word}`" for word in passwords.KEYWORDS)
    assert f"Case-insensitive: {listed}." in README


@pytest.mark.parametrize("issuer", sorted({i.name for i in ISSUERS}))
def test_issuer_is_documented(issuer: str) -> None:
    rows = [line for line in README.splitlines() if line.startswith(f"| {issuer} |")]
    assert len(rows) == 1
    for item in ISSUERS:
        if item.name == issuer:
            prefix = item.low if item.low == item.high else f"{item.low}–{item.high}"
            assert prefix in rows[0]


def test_the_documented_example_loads(tmp_path: Path) -> None:
    example = README.split("```yaml\n", 1)[1].split("```", 1)[0]
    path = tmp_path / "patterns.yaml"
    path.write_text(example, encoding="utf-8")
    assert [p.kind for p in load_patterns(path)] == ["employee_id", "case_ref"]
