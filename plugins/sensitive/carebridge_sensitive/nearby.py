"""Regular-expression pieces for "a number near a keyword".

Citizen service numbers and login codes look like any other number; only a
keyword close by tells them apart. "Close" is measured in words: a keyword,
then at most a few words (letters only, so the window never jumps over
another number), then the number. The pieces are plain strings that the
detectors compile once, at import. Digits are ``[0-9]``, not ``\\d``: the
checksums (and the digit-count prefilter) know ASCII digits only.
"""

from __future__ import annotations

from collections.abc import Iterable

# A word of letters, possibly hyphenated or with an apostrophe (log-in, e-mail, d'r).
WORD = r"[^\W\d_]+(?:[-'’][^\W\d_]+)*"
# What may stand between two words, or between the last word and the number:
# blanks, a colon or equals sign, quotes, brackets, a dash or a hash. Full
# stops and commas are left out so the window stays inside one clause.
SEP = r"[\s:=()\"'“”‘’*#>-]{1,4}"
# A number starts at neither a word nor a plus sign (E.164), nor does it
# continue a date, time, amount or spaced number (18-05-2024, 14:30, 1.234).
NUMBER_START = r"(?<![\w+])(?<![0-9][.,/: -])"
# ...and it ends at neither a word nor such a continuation (18/05/2024, 1234,56).
NUMBER_END = r"(?!\w)(?![ .,:/-]?[0-9])"
# Words that say "this is what it is": "CODE is your code", "NUMBER (BSN)".
COPULA = r"(?:is|was|=|als|as|are|zijn)"


def alternatives(words: Iterable[str]) -> str:
    """Join keywords (already regex-escaped where needed) longest first, so "pincode" beats "pin"."""
    return "|".join(sorted(words, key=len, reverse=True))


def keyword_before(keyword: str, number: str, max_words: int) -> str:
    """``keyword``, up to ``max_words`` words, a separator, then ``number`` (group ``number``).

    Group ``last`` is the word right before the number (if any) and ``sep``
    the separator before the number, for callers that refuse some words.
    """
    return (
        rf"(?<!\w)(?:{keyword})(?!\w)"
        rf"(?:{SEP}(?P<last>{WORD})){{0,{max_words}}}?"
        rf"(?P<sep>{SEP})(?P<number>{NUMBER_START}{number}{NUMBER_END})"
    )


def keyword_after(keyword: str, number: str, max_words: int, *, copula: bool = True) -> str:
    """``number`` (group ``number``), up to ``max_words`` words, then ``keyword``.

    With ``copula`` the first word must be ``is`` or the like ("482913 is
    your code"); without, the keyword may follow at once ("123456782 (BSN)").
    """
    words = rf"(?:{SEP}{WORD}){{0,{max_words}}}?{SEP}"
    link = rf"{SEP}{COPULA}{words}" if copula else words
    return rf"(?P<number>{NUMBER_START}{number}{NUMBER_END}){link}(?:{keyword})(?!\w)"
