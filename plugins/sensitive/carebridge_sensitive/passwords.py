"""Find passwords that a customer types after a keyword.

Only the value is reported, never the keyword: "password: hunter2" masks
``hunter2``. The forms:

- ``password:`` / ``password =`` / ``wachtwoord:`` / ``pw:`` / ``pwd:`` /
  ``passwd:`` followed by a value on the same or the next line;
- ``password is …`` / ``wachtwoord is …`` (also ``was``, ``=``): only a
  value that does not read as a word of prose (it has a digit, a symbol or
  an upper-case letter after the first), so that "my password is wrong" and
  "wachtwoord is verlopen" stay readable;
- ``passwd …`` (a command-line habit) with any value.

The value is one token (up to the next blank), or everything between
quotes when it is quoted (``wachtwoord: "paard batterij nietje"``).
"""

from __future__ import annotations

import re
from collections.abc import Iterator

from bridge import Finding

_QUOTED = r"\"(?P<dq>[^\"\n]{1,200})\"|'(?P<sq>[^'\n]{1,200})'|“(?P<cq>[^”\n]{1,200})”|`(?P<bq>[^`\n]{1,200})`"
_TOKEN = r"(?P<token>[^\s\"'“`][^\s]*)"
_VALUE = rf"(?:{_QUOTED}|{_TOKEN})"
# Blanks with at most one line break: "Password:\nhunter2" is a value, a
# blank line ends the search.
_BLANKS = r"[^\S\n]*\n?[^\S\n]*"
# Keywords before ":" or "=", and the ones that may also be followed by "is".
KEYWORDS = ("password", "passwd", "wachtwoord", "pwd", "pw")
IS_KEYWORDS = ("password", "passwd", "wachtwoord")
_COLON = re.compile(rf"(?<!\w)(?:{'|'.join(KEYWORDS)}){_BLANKS}[:=]{_BLANKS}{_VALUE}", re.IGNORECASE)
_IS = re.compile(rf"(?<!\w)(?:{'|'.join(IS_KEYWORDS)})\s+(?:is|was|=)\s*:?\s+{_VALUE}", re.IGNORECASE)
_PASSWD = re.compile(rf"(?<!\w)passwd[^\S\n]+(?!(?:is|was)\s|[:=]){_VALUE}", re.IGNORECASE)
# Sentence punctuation after a value is not part of it.
_TRAILING = ",;"
_SENTENCE_END = ".,;:!?)"
# Cheap test, on the lower-cased text, that a keyword may be present.
PREFILTER = ("pass", "pw", "wachtwoord")


def _value_span(match: re.Match[str]) -> tuple[int, int, bool]:
    """The span of the value and whether it was quoted."""
    for group in ("dq", "sq", "cq", "bq"):
        if match.group(group) is not None:
            return match.start(group), match.end(group), True
    start, end = match.start("token"), match.end("token")
    while end > start + 1 and match.string[end - 1] in _TRAILING:
        end -= 1
    return start, end, False


def reads_as_password(value: str) -> bool:
    """True for a value with a digit, a symbol or an upper-case letter after the first.

    Sentence punctuation at the end does not count: "wachtwoord is verlopen."
    is prose, "wachtwoord is Zomer2024!" is not.
    """
    word = value.rstrip(_SENTENCE_END)
    return any(not c.isalpha() for c in word) or any(c.isupper() for c in word[1:])


def find_passwords(text: str) -> Iterator[Finding]:
    """Yield a ``password`` finding for the value after every password keyword."""
    for pattern in (_COLON, _PASSWD):
        for match in pattern.finditer(text):
            start, end, _quoted = _value_span(match)
            yield Finding("password", start, end)
    for match in _IS.finditer(text):
        start, end, quoted = _value_span(match)
        if quoted or reads_as_password(text[start:end]):
            yield Finding("password", start, end)
