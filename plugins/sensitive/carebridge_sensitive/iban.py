"""Find International Bank Account Numbers (IBANs) in free text.

The candidate pattern is built once from python-stdnum's own IBAN registry,
so every country stdnum knows is found at exactly its length, written in one
run or in groups (``NL91 ABNA 0417 1643 00``), in either case. stdnum then
checks the per-country structure and the mod-97 check digits. The
country-specific extra checks (known bank codes) are left out on purpose:
their bank lists age, and a real account number must not slip through
because its bank is newer than the installed stdnum.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Iterator

from stdnum import iban, numdb

from bridge import Finding

_STRUCTURE = re.compile(r"([1-9][0-9]*)!([nac])")
# One optional space (or no-break space) before any character after the
# country code and check digits: people group by four, banks print by four,
# and some group by three; the check digits decide.
_SEPARATOR = "[ \u00a0]?"
_SPACES = re.compile("[ \u00a0]")


def _lengths_by_country() -> dict[str, int]:
    """Map each country code in stdnum's IBAN registry to its IBAN length."""
    lengths: dict[str, int] = {}
    for length, low, high, props, _children in numdb.get("iban").prefixes:
        if length != 2 or low != high or "bban" not in props:
            continue
        bban = sum(int(count) for count, _kind in _STRUCTURE.findall(props["bban"]))
        lengths[low] = 4 + bban
    return lengths


def _candidate_pattern() -> re.Pattern[str]:
    by_length: dict[int, list[str]] = defaultdict(list)
    for country, length in _lengths_by_country().items():
        by_length[length].append(country)
    alternatives = [
        f"(?:{'|'.join(sorted(countries))})[0-9]{{2}}(?:{_SEPARATOR}[a-z0-9]){{{length - 4}}}"
        for length, countries in sorted(by_length.items(), reverse=True)
    ]
    return re.compile(rf"(?<!\w)(?:{'|'.join(alternatives)})(?!\w)", re.IGNORECASE)


_CANDIDATE = _candidate_pattern()


def find_ibans(text: str) -> Iterator[Finding]:
    """Yield an ``iban`` finding for every valid IBAN in ``text``.

    A candidate that fails the checks may overlap a real IBAN that starts
    inside it, so the search goes on from its second character.
    """
    pos = 0
    while match := _CANDIDATE.search(text, pos):
        if iban.is_valid(_SPACES.sub("", match.group()), check_country=False):
            yield Finding("iban", match.start(), match.end())
            pos = match.end()
        else:
            pos = match.start() + 1
