"""The cheap prefilters never skip a detector that could have found something."""

from __future__ import annotations

import pytest

from carebridge_sensitive import bsn, codes, passwords
from carebridge_sensitive.scan import count_digits
from tests.plugins.sensitive.spans import found

BSN_SPELLINGS = (
    "bsn",
    "bsn-nummer",
    "bsn number",
    "burgerservicenummer",
    "burger service nummer",
    "sofinummer",
    "sofi-nummer",
    "citizen service number",
)


@pytest.mark.parametrize(
    ("keywords", "prefilter"),
    [
        (codes.KEYWORDS, codes.PREFILTER),
        (passwords.KEYWORDS, passwords.PREFILTER),
        (BSN_SPELLINGS, bsn.PREFILTER),
    ],
    ids=["code", "password", "bsn"],
)
def test_every_keyword_passes_its_prefilter(keywords: tuple[str, ...], prefilter: tuple[str, ...]) -> None:
    for keyword in keywords:
        assert any(part in keyword.lower() for part in prefilter), keyword


@pytest.mark.parametrize("spelling", BSN_SPELLINGS)
def test_every_bsn_spelling_is_a_keyword(spelling: str) -> None:
    assert found(f"{spelling.upper()}: 123456782") == [("bsn", "123456782")]


def test_count_digits_counts_ascii_digits_only() -> None:
    assert count_digits("a1b22c333 ٤٥") == 6


def test_only_ascii_digits_make_numbers() -> None:
    # Arabic-Indic digits that would spell a valid card and a code: the
    # checksums know ASCII digits only, so the scanners do too.
    assert found("card ٤١١١١١١١١١١١١١١١ code ١٢٣٤") == []
