"""Config validation, addresses, ``simulate``, and discovery through the entry point."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from carebridge_instagram import InstagramChannel, InstagramConfig
from carebridge_instagram.config import DEFAULT_GRAPH_URL

from bridge import BridgeError, ChannelState, ConfigError
from bridge.plugins import make_plugin_manager
from tests.daemon import run_cli_sync
from tests.plugins.instagram.conftest import APP_SECRET, IG_USER_ID, TOKEN, Client, Core


def test_valid_section_is_typed_and_graph_url_defaults_to_instagrams_graph_host(section: dict[str, Any]) -> None:
    del section["graph_url"]
    config = InstagramConfig.from_section(section)
    assert config.ig_user_id == IG_USER_ID
    assert config.graph_url == DEFAULT_GRAPH_URL == "https://graph.instagram.com/v25.0"
    assert TOKEN not in repr(config) and APP_SECRET not in repr(config)


def test_numeric_account_id_and_trailing_slash_are_normalised(section: dict[str, Any]) -> None:
    config = InstagramConfig.from_section(
        {**section, "ig_user_id": int(IG_USER_ID), "graph_url": "http://127.0.0.1:1/v25.0/"}
    )
    assert config.ig_user_id == IG_USER_ID and config.graph_url == "http://127.0.0.1:1/v25.0"


@pytest.mark.parametrize("key", ["ig_user_id", "access_token", "app_secret", "verify_token"])
def test_each_required_key_is_named_when_missing_or_empty(section: dict[str, Any], key: str) -> None:
    with pytest.raises(ConfigError, match=rf"^channels\.instagram\.{key}: required$"):
        InstagramChannel.check_config({k: v for k, v in section.items() if k != key})
    with pytest.raises(ConfigError, match=rf"^channels\.instagram\.{key}: must not be empty$"):
        InstagramChannel.check_config({**section, key: "  "})


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ({"ig_user_id": "my.shop"}, r"^channels\.instagram\.ig_user_id: expected the account's numeric id"),
        ({"ig_user_id": "1/../2"}, r"^channels\.instagram\.ig_user_id"),
        ({"graph_url": "ftp://graph.example"}, r"^channels\.instagram\.graph_url: expected an http\(s\) URL"),
        ({"graph_url": "https://graph.instagram.com/v25.0?access_token=x"}, r"^channels\.instagram\.graph_url"),
        ({"graph_url": 3}, r"^channels\.instagram\.graph_url"),
        ({"enabled": "yes"}, r"^channels\.instagram\.enabled: expected true or false"),
        ({"app_secret": ["a"]}, r"^channels\.instagram\.app_secret: expected a string"),
        ({"page_id": "1"}, r"^channels\.instagram\.page_id: unknown key"),
    ],
)
def test_bad_values_name_their_key(section: dict[str, Any], override: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        InstagramConfig.from_section({**section, **override})


def test_a_refused_secret_is_never_quoted_back(section: dict[str, Any]) -> None:
    with pytest.raises(ConfigError) as info:
        InstagramConfig.from_section({**section, "access_token": ["IGQW-secret-in-a-list"]})
    assert "IGQW-secret" not in str(info.value)


def test_channel_refuses_to_build_on_a_bad_section(
    section: dict[str, Any], make_channel: Callable[[dict[str, Any]], InstagramChannel]
) -> None:
    with pytest.raises(ConfigError, match=r"channels\.instagram\.verify_token"):
        make_channel({k: v for k, v in section.items() if k != "verify_token"})


@pytest.mark.parametrize(("raw", "expected"), [(" 1111111111111111 ", "1111111111111111"), ("42", "42")])
def test_normalize_address_keeps_igsids(raw: str, expected: str) -> None:
    assert InstagramChannel.normalize_address(raw) == expected


@pytest.mark.parametrize("raw", ["@ann.example", "+15551234567", "", "１２３", "12 34"])
def test_normalize_address_refuses_what_is_not_an_igsid(raw: str) -> None:
    with pytest.raises(ValueError, match="Instagram-scoped id"):
        InstagramChannel.normalize_address(raw)


def test_channel_declares_its_label_limits_and_window() -> None:
    assert InstagramChannel.name == "instagram" and InstagramChannel.display_label() == "Instagram"
    assert InstagramChannel.max_text_length == 1000
    assert InstagramChannel.reply_window == 24 * 3600
    assert InstagramChannel.commands_in_first_line is False


async def test_simulated_request_passes_the_channels_own_webhook(
    section: dict[str, Any], webhook: Client, core: Core
) -> None:
    first = InstagramChannel.simulate(section, "1111111111111142", "Bonjour, ça va ?")
    second = InstagramChannel.simulate(section, "1111111111111142", "again")
    assert (first.method, first.path) == ("POST", "/webhooks/instagram")
    assert b"\\u00e7" in first.body  # escaped as Meta sends it
    for request in (first, second):
        async with webhook.post(request.path, data=request.body, headers=dict(request.headers)) as resp:
            assert resp.status == 200
    one, two = core.messages
    assert (one.channel, one.sender, one.text) == ("instagram", "1111111111111142", "Bonjour, ça va ?")
    assert one.external_id != two.external_id
    payload = json.loads(first.body)
    assert payload["object"] == "instagram" and payload["entry"][0]["id"] == IG_USER_ID


def test_simulate_refuses_a_bad_sender(section: dict[str, Any]) -> None:
    with pytest.raises(BridgeError, match="^--from: not an Instagram-scoped id"):
        InstagramChannel.simulate(section, "ann.example", "hi")


async def test_start_reports_connected(channel: InstagramChannel, core: Core) -> None:
    await channel.start()
    assert core.reports == [(ChannelState.CONNECTED, None)]


def test_installed_distribution_registers_the_channel_through_its_entry_point() -> None:
    registry = make_plugin_manager()
    info = registry.plugins["instagram"]
    assert info.error is None
    assert (info.distribution, info.channels) == ("carebridge-instagram", ["instagram"])
    assert registry.channels["instagram"] is InstagramChannel


def test_check_config_names_the_instagram_key(tmp_path: Path) -> None:
    (tmp_path / "bridge.toml").write_text(
        '[channels.instagram]\nig_user_id = "17841400000000001"\naccess_token = "t"\napp_secret = "s"\n',
        encoding="utf-8",
    )
    status, _out, err = run_cli_sync("check-config", "-c", str(tmp_path / "bridge.toml"), cwd=tmp_path)
    assert status == 1
    assert "channels.instagram.verify_token: required" in err
