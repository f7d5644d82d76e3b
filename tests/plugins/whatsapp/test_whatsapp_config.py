"""Config validation, address normalisation and discovery through the entry point."""

from __future__ import annotations

from typing import Any

import pytest

from bridge import ConfigError
from bridge.plugins import make_plugin_manager
from carebridge_whatsapp import WhatsAppChannel
from carebridge_whatsapp.config import DEFAULT_GRAPH_URL, WhatsAppConfig

VALID = {
    "enabled": True,
    "phone_number_id": "400000000000001",
    "access_token": "secret-token",
    "app_secret": "secret-app",
    "verify_token": "secret-verify",
}


def test_defaults_are_filled_in() -> None:
    config = WhatsAppConfig.from_section(VALID)
    assert config.graph_url == DEFAULT_GRAPH_URL == "https://graph.facebook.com/v25.0"
    assert config.template_language == "en_US" and config.reengage_template is None
    assert config.max_media_bytes == 16 * 1024 * 1024


@pytest.mark.parametrize("key", ["phone_number_id", "access_token", "app_secret", "verify_token"])
def test_each_required_key_is_named_when_missing(key: str) -> None:
    section = {k: v for k, v in VALID.items() if k != key}
    with pytest.raises(ConfigError, match=rf"^channels\.whatsapp\.{key}: required$"):
        WhatsAppChannel.check_config(section)


def test_disabled_section_needs_no_secrets() -> None:
    assert WhatsAppConfig.from_section({"enabled": False}).enabled is False


@pytest.mark.parametrize(
    ("override", "key"),
    [
        ({"graph_url": "ftp://x"}, "graph_url"),
        ({"phone_number_id": "+1555"}, "phone_number_id"),
        ({"max_media_bytes": 0}, "max_media_bytes"),
        ({"max_media_bytes": "16MB"}, "max_media_bytes"),
        ({"template_language": "English"}, "template_language"),
        ({"access_token": 12}, "access_token"),
        ({"enabled": "yes"}, "enabled"),
        ({"page_id": "1"}, "page_id"),
    ],
)
def test_bad_values_name_their_key(override: dict[str, Any], key: str) -> None:
    with pytest.raises(ConfigError, match=rf"^channels\.whatsapp\.{key}: "):
        WhatsAppConfig.from_section({**VALID, **override})


def test_numeric_phone_number_id_and_trailing_slash_are_accepted() -> None:
    config = WhatsAppConfig.from_section(
        {**VALID, "phone_number_id": 400000000000001, "graph_url": "http://127.0.0.1:9/v25.0/"}
    )
    assert config.phone_number_id == "400000000000001" and config.graph_url == "http://127.0.0.1:9/v25.0"


def test_repr_hides_the_secrets() -> None:
    text = repr(WhatsAppConfig.from_section(VALID))
    assert "secret" not in text and "400000000000001" in text


@pytest.mark.parametrize(
    ("raw", "normal"),
    [("+15551234567", "+15551234567"), ("15551234567", "+15551234567"), ("+1 555-123 4567", "+15551234567")],
)
def test_addresses_normalise_to_e164(raw: str, normal: str) -> None:
    assert WhatsAppChannel.normalize_address(raw) == normal


def test_non_numbers_are_refused() -> None:
    with pytest.raises(ValueError):
        WhatsAppChannel.normalize_address("ann@example.org")


def test_installed_plugin_registers_the_channel_through_its_entry_point() -> None:
    registry = make_plugin_manager()
    assert registry.channels["whatsapp"] is WhatsAppChannel
    info = registry.plugins["whatsapp"]
    assert info.distribution == "carebridge-whatsapp" and info.channels == ["whatsapp"] and info.error is None
    assert WhatsAppChannel.max_text_length == 4096 and WhatsAppChannel.reply_window == 24 * 3600
    assert WhatsAppChannel.display_label() == "WhatsApp" and WhatsAppChannel.commands_in_first_line is False


def test_can_reengage_only_with_a_configured_template() -> None:
    section = {
        "phone_number_id": "123456789",
        "access_token": "token",
        "app_secret": "secret",
        "verify_token": "verify",
        "graph_url": "http://127.0.0.1:9/v25.0",
    }
    with_template = WhatsAppChannel.__new__(WhatsAppChannel)
    with_template.settings = WhatsAppConfig.from_section({**section, "reengage_template": "followup"})
    without = WhatsAppChannel.__new__(WhatsAppChannel)
    without.settings = WhatsAppConfig.from_section(section)
    assert with_template.can_reengage() is True
    assert without.can_reengage() is False


def test_media_url_allow_defaults_to_metas_cdn_over_https() -> None:
    config = WhatsAppConfig.from_section(VALID)
    assert [str(p) for p in config.media_url_allow] == ["https://lookaside.fbsbx.com/"]
    assert "lookaside.fbsbx.com" in repr(config)


def test_media_url_allow_entries_are_normalised() -> None:
    config = WhatsAppConfig.from_section(
        {
            **VALID,
            "media_url_allow": ["HTTPS://Lookaside.FBSBX.com", "http://127.0.0.1:8181/media/", "http://localhost:9"],
        }
    )
    assert [str(p) for p in config.media_url_allow] == [
        "https://lookaside.fbsbx.com/",
        "http://127.0.0.1:8181/media/",
        "http://localhost:9/",
    ]


@pytest.mark.parametrize(
    ("value", "key"),
    [
        ("https://lookaside.fbsbx.com/", "media_url_allow"),
        ([], "media_url_allow"),
        ([12], r"media_url_allow\[0\]"),
        ([""], r"media_url_allow\[0\]"),
        (["https://lookaside.fbsbx.com/", "http://lookaside.fbsbx.com/"], r"media_url_allow\[1\]"),
        (["http://10.0.0.5/"], r"media_url_allow\[0\]"),
        (["lookaside.fbsbx.com"], r"media_url_allow\[0\]"),
        (["/whatsapp_business/"], r"media_url_allow\[0\]"),
        (["ftp://lookaside.fbsbx.com/"], r"media_url_allow\[0\]"),
        (["https://user:pw@lookaside.fbsbx.com/"], r"media_url_allow\[0\]"),
        (["https://lookaside.fbsbx.com/?mid=1"], r"media_url_allow\[0\]"),
        (["https://lookaside.fbsbx.com\\@evil.example/"], r"media_url_allow\[0\]"),
    ],
)
def test_bad_media_url_allow_names_the_key(value: Any, key: str) -> None:
    with pytest.raises(ConfigError, match=rf"^channels\.whatsapp\.{key}: "):
        WhatsAppConfig.from_section({**VALID, "media_url_allow": value})


@pytest.mark.parametrize(
    ("url", "allowed"),
    [
        ("https://lookaside.fbsbx.com/whatsapp_business/attachments/?mid=1&ext=2&hash=A", True),
        ("https://LOOKASIDE.fbsbx.com:443/whatsapp_business/attachments/?mid=1", True),
        ("https://lookaside.fbsbx.com.evil.example/whatsapp_business/", False),
        ("https://lookaside.fbsbx.com@evil.example/whatsapp_business/", False),
        ("https://evil.example/https://lookaside.fbsbx.com/", False),
        ("http://lookaside.fbsbx.com/whatsapp_business/", False),
        ("https://lookaside.fbsbx.com:8443/whatsapp_business/", False),
        ("https://user@lookaside.fbsbx.com/whatsapp_business/", False),
        ("//lookaside.fbsbx.com/whatsapp_business/", False),
        ("not a url", False),
    ],
)
def test_download_urls_are_compared_as_parsed_urls(url: str, allowed: bool) -> None:
    from carebridge_whatsapp.guards import allowed_url

    prefixes = WhatsAppConfig.from_section(VALID).media_url_allow
    assert (allowed_url(url, prefixes) is not None) is allowed


def test_a_path_prefix_is_checked_after_dot_segments_are_resolved() -> None:
    from carebridge_whatsapp.guards import allowed_url

    prefixes = WhatsAppConfig.from_section({**VALID, "media_url_allow": ["https://cdn.example/media/"]}).media_url_allow
    assert allowed_url("https://cdn.example/media/a.jpg", prefixes) is not None
    assert allowed_url("https://cdn.example/media/../admin", prefixes) is None


@pytest.mark.parametrize(
    ("value", "ok"),
    [
        ("2621233374848975", True),
        ("1", True),
        ("", False),
        ("12a", False),
        ("١٢٣", False),
        ("12\n", False),
        (12, False),
    ],
)
def test_media_ids_are_ascii_digits(value: object, ok: bool) -> None:
    from carebridge_whatsapp.guards import is_media_id

    assert is_media_id(value) is ok
