"""IBANs: every country stdnum knows, any grouping and case, checked by stdnum."""

from __future__ import annotations

import re

import pytest
from stdnum import iban, numdb

from carebridge_sensitive.iban import find_ibans
from tests.plugins.sensitive.spans import found

VALID = [
    "NL91ABNA0417164300",
    "DE89370400440532013000",
    "GB29NWBK60161331926819",
    "FR1420041010050500013M02606",
    "BE71096123456769",
    "ES9121000418450200051332",
    "IT60X0542811101000000123456",
    "CH9300762011623852957",
    "AT611904300234573201",
    "PL61109010140000071219812874",
    "NO9386011117947",
    "MT84MALT011000012345MTLCAST001S",
    "LU280019400644750000",
    "IE29AIBK93115212345678",
    "DK5000400440116243",
    "SE4550000000058398257466",
    "PT50000201231234567890154",
    "FI2112345600000785",
]


@pytest.mark.parametrize("number", VALID)
def test_iban_found_in_one_run(number: str) -> None:
    assert found(f"Mijn rekening: {number}, graag storten.") == [("iban", number)]


@pytest.mark.parametrize("number", VALID)
def test_iban_found_printed_in_groups_of_four(number: str) -> None:
    printed = iban.format(number)
    assert found(f"IBAN {printed} t.n.v. J. Jansen") == [("iban", printed)]


@pytest.mark.parametrize(
    "printed",
    [
        "nl91 abna 0417 1643 00",
        "nl91abna0417164300",
        "Gb29 nWbK 6016 1331 9268 19",
        "NL91 ABNA 041 716 4300",
        "DE89\u00a03704\u00a00044\u00a00532\u00a00130\u00a000",
    ],
)
def test_iban_found_in_any_case_and_grouping(printed: str) -> None:
    assert found(f"account {printed}.") == [("iban", printed)]


def _example(country: str, structure: str) -> str:
    """Build a valid IBAN for ``country`` from its BBAN structure (``4!a6!n8!c``)."""
    filler = {"n": "1", "a": "B", "c": "7"}
    bban = "".join(filler[kind] * int(count) for count, kind in re.findall(r"(\d+)!([nac])", structure))
    return country + iban.calc_check_digits(f"{country}00{bban}") + bban


COUNTRIES = sorted(
    (low, props["bban"])
    for length, low, high, props, _ in numdb.get("iban").prefixes
    if length == 2 and "bban" in props
)


@pytest.mark.parametrize(("country", "structure"), COUNTRIES, ids=[c for c, _ in COUNTRIES])
def test_iban_found_for_every_country_stdnum_knows(country: str, structure: str) -> None:
    number = _example(country, structure)
    assert iban.is_valid(number, check_country=False)
    text = f"rekening {number} en {iban.format(number).lower()}"
    assert [(f.kind, text[f.start : f.end].replace(" ", "").upper()) for f in find_ibans(text)] == [
        ("iban", number),
        ("iban", number),
    ]


def test_every_country_stdnum_knows_is_covered() -> None:
    assert len(COUNTRIES) >= 80
    assert {"NL", "DE", "GB", "FR", "BE", "ES", "IT", "CH", "AT", "PL"} <= {c for c, _ in COUNTRIES}


@pytest.mark.parametrize(
    "text",
    [
        "NL91ABNA0417164301",  # check digits do not match
        "NL92 ABNA 0417 1643 00",
        "DE88370400440532013000",
        "GB29NWBK60161331926818",
        "NL91ABNA041716430",  # one character short for NL
        "XNL91ABNA0417164300",  # inside a longer run
        "NL91ABNA0417164300X",
        "NL91ABNA04171643001",
        "ref NL91ABNA0417164300abc",
        "XX91ABNA0417164300",  # no such country
    ],
)
def test_iban_not_found(text: str) -> None:
    assert [f for f in found(text) if f[0] == "iban"] == []


def test_iban_found_after_a_failed_candidate_that_overlaps_it() -> None:
    text = "DE12 NL91ABNA0417164300 ok"
    assert found(text) == [("iban", "NL91ABNA0417164300")]


def test_spaced_iban_ends_at_its_length() -> None:
    text = "NL91 ABNA 0417 1643 00 12 is het nummer"
    assert found(text) == [("iban", "NL91 ABNA 0417 1643 00")]
