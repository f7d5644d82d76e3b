"""Masking per kind and policy, on the findings of the real detector plugin (carebridge-sensitive)."""

from __future__ import annotations

from pathlib import Path

import pytest

from bridge.config import SensitiveConfig
from bridge.errors import ConfigError
from bridge.models import Finding
from bridge.relay import sensitive
from bridge.relay.secure import mask_email
from bridge.relay.templates import load_templates
from carebridge_sensitive import plugin as detectors


def policy(default: str = "redact", **kinds: str) -> SensitiveConfig:
    return SensitiveConfig(policy=default, kinds=tuple(kinds.items()))


def masked(text: str, config: SensitiveConfig | None = None) -> str:
    config = config or policy()
    found = list(detectors.detect_sensitive(text) or [])
    return sensitive.mask(text, sensitive.merge(found, config.policy_for))


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("My IBAN is NL91ABNA0417164300, thanks", "My IBAN is NL91 **** **** **** 4300 [IBAN hidden], thanks"),
        ("iban nl91 abna 0417 1643 00.", "iban NL91 **** **** **** 4300 [IBAN hidden]."),
        ("DE89 3704 0044 0532 0130 00 is mine", "DE89 **** **** **** 3000 [IBAN hidden] is mine"),
        ("card 4111 1111 1111 1111 exp 12/27", "card **** 1111 [card hidden] exp 12/27"),
        ("amex 3782-822463-10005", "amex **** 0005 [card hidden]"),
        ("mijn BSN is 123456782", "mijn BSN is [BSN hidden]"),
        ("Your verification code is 482913", "Your verification code is [code hidden]"),
        ("Uw inlogcode is 4829", "Uw inlogcode is [code hidden]"),
        ("password: Geheim01!", "password: [password hidden]"),
        # reported as both a code and a password: one span, named once
        ("wachtwoord: 5678", "wachtwoord: [password hidden]"),
        ("Order 20240518 ships to +31612345678 on 18-05-2024", "Order 20240518 ships to +31612345678 on 18-05-2024"),
    ],
)
def test_each_kind_keeps_only_enough_to_recognise_it(text: str, expected: str) -> None:
    assert masked(text) == expected


def test_policy_per_kind_allows_one_kind_and_masks_the_others() -> None:
    text = "IBAN NL91ABNA0417164300 and code 482913"
    assert masked(text, policy(code="allow")) == "IBAN NL91 **** **** **** 4300 [IBAN hidden] and code 482913"
    assert masked(text, policy("allow", iban="redact")) == "IBAN NL91 **** **** **** 4300 [IBAN hidden] and code 482913"
    assert masked(text, policy("allow")) == text


def test_overlapping_findings_merge_under_the_strictest_policy() -> None:
    found = [Finding("code", 12, 16), Finding("password", 12, 16), Finding("employee_id", 14, 20)]
    spans = sensitive.merge(found, policy(code="allow", password="block").policy_for)
    assert spans == [sensitive.Span(12, 20, ("password", "code", "employee_id"), "block")]
    assert sensitive.mask("wachtwoord: 5678EMP1 ok", spans) == "wachtwoord: [password hidden] ok"


def test_admin_kinds_are_named_by_their_kind() -> None:
    spans = sensitive.merge([Finding("employee_id", 4, 14)], policy().policy_for)
    assert sensitive.mask("ref EMP-123456 ok", spans) == "ref [employee id hidden] ok"
    assert sensitive.kinds_text(["code", "employee_id", "iban", "code"]) == "IBAN, login code, employee id"


def test_a_value_is_never_partly_shown_when_its_span_holds_more_than_one_kind() -> None:
    assert sensitive.masked_value("4111 1111 1111 1111", ("card", "code")) == "[card hidden]"
    assert sensitive.masked_value("NL91ABNA0417164300", ("iban",)) == "NL91 **** **** **** 4300 [IBAN hidden]"


def test_only_third_party_chat_platforms_get_masked_copies() -> None:
    assert not sensitive.third_party("email")
    assert not sensitive.third_party("console")
    assert all(sensitive.third_party(c) for c in ("whatsapp", "messenger", "telegram", "instagram", "webchat"))


def test_masked_email_keeps_the_first_letter_and_the_domain() -> None:
    assert mask_email("jan.jansen@example.com") == "j***@example.com"


def test_the_mail_templates_must_carry_their_text_and_code(tmp_path: Path) -> None:
    path = tmp_path / "templates.yaml"
    path.write_text('secure_mail:\n  en: "Hello, see the attachment."\n', encoding="utf-8")
    with pytest.raises(ConfigError, match=r"templates.yaml:2: template secure_mail.en must contain \{text\}"):
        load_templates(path)
    path.write_text('secure_code_mail:\n  nl: "Uw code: {text}"\n', encoding="utf-8")
    with pytest.raises(ConfigError, match=r"must contain \{code\}"):
        load_templates(path)
    path.write_text('sensitive_notice:\n  en: "Bank details by email only, please."\n', encoding="utf-8")
    assert load_templates(path).render("sensitive_notice") == "Bank details by email only, please."
