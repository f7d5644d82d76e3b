"""Find one-time and login codes in free text.

A code is 4 to 8 digits (or two groups of 3–4: ``123 456``, ``123-456``)
that a keyword names: the keyword at most four words before the number
("je inlogcode voor MijnBank is 482913", "OTP=1234"), or after it in the
form services send ("482913 is your Instagram code"). Without such a
keyword four to eight digits are far more often an order, a year or a house
number, and are left alone.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

from bridge import Finding

from .nearby import alternatives, keyword_after, keyword_before

# Keywords naming a code, English and Dutch, matched as whole words in any case.
KEYWORDS = (
    "code",
    "codes",
    "otp",
    "verification",
    "verificatie",
    "verificatiecode",
    "pin",
    "pincode",
    "passcode",
    "wachtwoord",
    "inlogcode",
    "logincode",
    "toegangscode",
    "beveiligingscode",
    "bevestigingscode",
    "activatiecode",
    "authenticatiecode",
    "2fa",
)
# "code" after one of these words is not a secret (zip code, error code, …).
NOT_SECRET_CODES = (
    "zip",
    "post",
    "postal",
    "area",
    "country",
    "dial",
    "promo",
    "discount",
    "coupon",
    "voucher",
    "gift",
    "kortings",
    "tracking",
    "track",
    "bar",
    "qr",
    "error",
    "fout",
    "status",
    "product",
    "article",
    "artikel",
    "sort",
    "bank",
    "branch",
    "swift",
    "bic",
    "tax",
    "btw",
)
# A number right after one of these words (without a colon or equals sign
# between) is that thing, not the code: "de code voor bestelling 20240518".
NOT_A_CODE_BEFORE = frozenset(
    {
        "order",
        "orders",
        "ordernummer",
        "bestelling",
        "bestelnummer",
        "factuur",
        "factuurnummer",
        "invoice",
        "tracking",
        "zending",
        "pakket",
        "parcel",
        "package",
        "klant",
        "klantnummer",
        "customer",
        "telefoon",
        "telefoonnummer",
        "phone",
        "tel",
        "mobiel",
        "mobile",
        "postcode",
        "zip",
        "huisnummer",
        "house",
        "kamer",
        "room",
        "artikel",
        "article",
        "item",
        "product",
        "bedrag",
        "amount",
        "prijs",
        "price",
        "totaal",
        "total",
        "in",
        "sinds",
        "since",
        "jaar",
        "year",
        "tot",
        "until",
        "before",
        "after",
        "op",
        "on",
        "om",
        "at",
        "datum",
        "date",
        "pagina",
        "page",
        "versie",
        "version",
        "ticket",
        "referentie",
        "reference",
        "ref",
        "dossier",
        "case",
        "zaak",
    }
)


def _keyword() -> str:
    guards = "".join(f"(?<!{word}{sep})" for word in NOT_SECRET_CODES for sep in (" ", "-"))
    plain = [word for word in KEYWORDS if word not in ("code", "codes")]
    return alternatives([*plain, f"{guards}codes?"])


# Two groups of 3–4 digits, or one run of 4–8.
_NUMBER = r"(?:[0-9]{3,4}[ -][0-9]{3,4}|[0-9]{4,8})"
# An amount: "1234 EUR", "1234 euro", "1234%".
_NOT_AN_AMOUNT = r"(?!\s?(?:euro?|usd|gbp|dollars?)(?!\w)|\s?[%€$£])"
_BEFORE = re.compile(keyword_before(_keyword(), _NUMBER + _NOT_AN_AMOUNT, 4), re.IGNORECASE)
_AFTER = re.compile(keyword_after(_keyword(), _NUMBER, 4), re.IGNORECASE)
# Cheap test, on the lower-cased text, that a keyword may be present.
PREFILTER = ("code", "otp", "verifica", "pin", "wachtwoord", "2fa")


def find_codes(text: str) -> Iterator[Finding]:
    """Yield a ``code`` finding for every number a code keyword names."""
    for match in _BEFORE.finditer(text):
        last, sep = match.group("last"), match.group("sep")
        if last is not None and last.lower() in NOT_A_CODE_BEFORE and not any(c in sep for c in ":="):
            continue
        yield Finding("code", match.start("number"), match.end("number"))
    for match in _AFTER.finditer(text):
        yield Finding("code", match.start("number"), match.end("number"))
