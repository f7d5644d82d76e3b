"""Find payment card numbers (PANs) in free text.

A number counts as a card number when it passes the Luhn check
(``stdnum.luhn``) *and* starts with an issuer prefix that allows its length.
The second test is what keeps order numbers, phone numbers and bank
references (a tenth of which pass Luhn by chance) out.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from stdnum import luhn

from bridge import Finding


@dataclass(frozen=True)
class Issuer:
    """One issuer's prefix range (inclusive, compared on the first digits) and card lengths."""

    name: str
    low: str
    high: str
    lengths: frozenset[int]

    def issued(self, digits: str) -> bool:
        """True when ``digits`` has this issuer's prefix and one of its lengths."""
        prefix = digits[: len(self.low)]
        return len(digits) in self.lengths and self.low <= prefix <= self.high


def _issuer(name: str, prefixes: str, lengths: Sequence[int]) -> list[Issuer]:
    """Expand ``"51-55 2221-2720"`` into one Issuer per range."""
    issuers = []
    for item in prefixes.split():
        low, _, high = item.partition("-")
        issuers.append(Issuer(name, low, high or low, frozenset(lengths)))
    return issuers


_TWELVE_TO_NINETEEN = range(12, 20)
_SIXTEEN_TO_NINETEEN = range(16, 20)

# Issuer identification number ranges as the card networks publish them.
ISSUERS: tuple[Issuer, ...] = (
    *_issuer("Visa", "4", (13, 16, 19)),
    *_issuer("Mastercard", "51-55 2221-2720", (16,)),
    *_issuer("American Express", "34 37", (15,)),
    *_issuer("Discover", "6011 644-649 65 622126-622925", _SIXTEEN_TO_NINETEEN),
    *_issuer("JCB", "3528-3589", _SIXTEEN_TO_NINETEEN),
    *_issuer("Diners Club", "300-305 3095 36 38-39", range(14, 20)),
    *_issuer("Maestro", "5018 5020 5038 5893 6304 6759 6761-6763", _TWELVE_TO_NINETEEN),
    *_issuer("UnionPay", "62", _SIXTEEN_TO_NINETEEN),
)

MIN_DIGITS = 12
MAX_DIGITS = 19
# Most digit groups cannot start a card at all (no issuer starts with 0, 1, 7, 8, 9).
_FIRST_DIGITS = frozenset(issuer.low[0] for issuer in ISSUERS)

# A run of digit groups of at least three digits (cards are printed 4-4-4-4,
# 4-6-5 or 4-6-4) separated by one space or dash. It may not touch a word
# (tracking numbers such as JVGL0612345678901234), follow a plus sign (E.164
# phone numbers) or continue a decimal amount.
_RUN = re.compile(r"(?<![\w+])(?<![0-9][.,])[0-9]{3,}(?:[ -][0-9]{3,})*(?!\w)(?![.,][0-9])")
_GROUP = re.compile(r"[0-9]+")


def issuer_of(digits: str) -> str | None:
    """Name the issuer whose prefix and length rules ``digits`` meets, or None."""
    for issuer in ISSUERS:
        if issuer.issued(digits):
            return issuer.name
    return None


def is_card_number(digits: str) -> bool:
    """True for a Luhn-valid number of a known issuer's prefix and length."""
    return MIN_DIGITS <= len(digits) <= MAX_DIGITS and issuer_of(digits) is not None and luhn.is_valid(digits)


def find_cards(text: str) -> Iterator[Finding]:
    """Yield a ``card`` finding for every card number in ``text``.

    A run of groups may hold a card number and something else (``4111 1111
    1111 1111 123`` with the security code after it), so every stretch of
    whole groups of 12 to 19 digits is tried, longest first from the left.
    """
    for run in _RUN.finditer(text):
        groups = [(m.start() + run.start(), m.end() + run.start()) for m in _GROUP.finditer(run.group())]
        if sum(end - start for start, end in groups) < MIN_DIGITS:
            continue
        yield from _cards_in_groups(text, groups)


def _cards_in_groups(text: str, groups: list[tuple[int, int]]) -> Iterator[Finding]:
    first = 0
    while first < len(groups):
        found = _longest_card_from(text, groups, first)
        if found is None:
            first += 1
            continue
        yield Finding("card", groups[first][0], groups[found][1])
        first = found + 1


def _longest_card_from(text: str, groups: list[tuple[int, int]], first: int) -> int | None:
    """Return the last group of the longest card number starting at group ``first``."""
    if text[groups[first][0]] not in _FIRST_DIGITS:
        return None
    stretches: list[tuple[int, str]] = []
    digits = ""
    for last in range(first, len(groups)):
        start, end = groups[last]
        digits += text[start:end]
        if len(digits) > MAX_DIGITS:
            break
        stretches.append((last, digits))
    for last, candidate in reversed(stretches):
        if is_card_number(candidate):
            return last
    return None
