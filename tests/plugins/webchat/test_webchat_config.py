"""``[channels.webchat]``: an empty section works; every mistake names its key."""

from __future__ import annotations

from typing import Any

import pytest

from bridge import ConfigError
from carebridge_webchat import WebchatChannel, WebchatConfig
from carebridge_webchat.config import normalize_origin


def test_an_empty_section_is_a_working_chat() -> None:
    settings = WebchatConfig.from_section({})
    assert settings.allowed_origins == () and settings.max_text == 2000 and settings.title == "Chat with us"
    assert (settings.address_rate.amount, settings.address_rate.get_expiry()) == (20, 60)


def test_values_are_read_and_origins_normalized() -> None:
    settings = WebchatConfig.from_section({
        "allowed_origins": ["HTTPS://Shop.Example.org/", "http://localhost:8000", "https://shop.example.org:443"],
        "max_text": 500,
        "title": "  Help desk ",
        "client_rate": "5 per second",
    })  # fmt: skip
    assert settings.allowed_origins == ("https://shop.example.org", "http://localhost:8000")
    assert settings.max_text == 500 and settings.title == "Help desk"
    assert (settings.client_rate.amount, settings.client_rate.get_expiry()) == (5, 1)


@pytest.mark.parametrize(
    ("section", "message"),
    [
        ({"allowed_origins": "https://a.example"}, "channels.webchat.allowed_origins: expected a list"),
        ({"allowed_origins": ["https://a.example/path"]}, "channels.webchat.allowed_origins[0]: expected an origin"),
        ({"allowed_origins": ["https://a.example", "ftp://b"]}, "channels.webchat.allowed_origins[1]"),
        ({"allowed_origins": [3]}, "channels.webchat.allowed_origins[0]"),
        ({"max_text": 0}, "channels.webchat.max_text: expected a number of characters from 1 to 20000"),
        ({"max_text": True}, "channels.webchat.max_text"),
        ({"max_text": "100"}, "channels.webchat.max_text"),
        ({"title": ""}, "channels.webchat.title"),
        ({"session_rate": "often"}, 'channels.webchat.session_rate: expected a rate like "10/minute"'),
        ({"address_rate": 5}, "channels.webchat.address_rate"),
        ({"enabled": "yes"}, "channels.webchat.enabled: expected true or false"),
        ({"secret": "x"}, "channels.webchat.secret: unknown key"),
    ],
)
def test_mistakes_name_their_key(section: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError) as info:
        WebchatChannel.check_config(section)
    assert message in str(info.value)


def test_origins() -> None:
    assert normalize_origin("https://[::1]:8443") == "https://[::1]:8443"
    assert normalize_origin("http://example.org:80") == "http://example.org"
    for bad in ("example.org", "https://", "https://user@example.org", "https://a.example?x=1", "https://a:99999"):
        assert normalize_origin(bad) is None, bad


def test_addresses_are_32_hex_digits_and_never_a_token() -> None:
    assert WebchatChannel.normalize_address(" 0123456789ABCDEF0123456789abcdef ") == "0123456789abcdef0123456789abcdef"
    for bad in ("", "abc", "g" * 32, "A" * 43):
        with pytest.raises(ValueError):
            WebchatChannel.normalize_address(bad)
