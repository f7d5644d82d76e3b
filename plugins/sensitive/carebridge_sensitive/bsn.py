"""Find Dutch citizen service numbers (BSN) in free text.

Nine digits that pass the eleven-test are common (one number in eleven
passes), so a number counts only near a word that names it: "BSN",
"burgerservicenummer", "sofinummer" or "citizen service number", at most
four words before it, or at most three words after it ("NUMBER is mijn
BSN", "NUMBER (BSN)").
``stdnum.nl.bsn`` does the eleven-test.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

from stdnum.nl import bsn

from bridge import Finding

from .nearby import alternatives, keyword_after, keyword_before

KEYWORDS = (
    r"bsn(?:[- ]?nummer|[- ]?number)?",
    r"burger[- ]?service[- ]?nummer",
    r"sofi[- ]?nummer",
    r"sofi[- ]?number",
    r"citizen[- ]service[- ]number",
)
# Eight or nine digits, in one run or split by single dots, spaces or dashes
# (1234.56.782, 123 456 782).
_NUMBER = r"[0-9](?:[ .-]?[0-9]){7,8}"
_KEYWORD = alternatives(KEYWORDS)
_BEFORE = re.compile(keyword_before(_KEYWORD, _NUMBER, 4), re.IGNORECASE)
_AFTER = re.compile(keyword_after(_KEYWORD, _NUMBER, 3, copula=False), re.IGNORECASE)
_SEPARATORS = re.compile(r"[ .-]")
# Cheap test, on the lower-cased text, that one of the keywords may be present.
PREFILTER = ("bsn", "burger", "sofi", "citizen")


def find_bsns(text: str) -> Iterator[Finding]:
    """Yield a ``bsn`` finding for every eleven-test-valid number named as a BSN."""
    for pattern in (_BEFORE, _AFTER):
        for match in pattern.finditer(text):
            if bsn.is_valid(_SEPARATORS.sub("", match.group("number"))):
                yield Finding("bsn", match.start("number"), match.end("number"))
