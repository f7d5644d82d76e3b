"""Config validation, ``simulate``, and discovery through the entry point."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from bridge import BridgeError, ChannelState, ConfigError
from bridge.plugins import make_plugin_manager
from carebridge_messenger import MessengerChannel, MessengerConfig
from carebridge_messenger.config import DEFAULT_GRAPH_URL
from tests.daemon import run_cli_sync
from tests.plugins.messenger.conftest import APP_SECRET, PAGE_ID, Core


def test_valid_section_is_typed_and_graph_url_defaults_to_meta(section: dict[str, Any]) -> None:
    del section["graph_url"]
    config = MessengerConfig.from_section(section)
    assert config.page_id == PAGE_ID and config.graph_url == DEFAULT_GRAPH_URL == "https://graph.facebook.com/v25.0"
    assert "test-page-token" not in repr(config) and APP_SECRET not in repr(config)


def test_numeric_page_id_and_trailing_slash_are_normalised(section: dict[str, Any]) -> None:
    config = MessengerConfig.from_section(
        {**section, "page_id": int(PAGE_ID), "graph_url": "http://127.0.0.1:1/v25.0/"}
    )
    assert config.page_id == PAGE_ID and config.graph_url == "http://127.0.0.1:1/v25.0"


@pytest.mark.parametrize("key", ["page_id", "page_access_token", "app_secret", "verify_token"])
def test_each_required_key_is_named_when_missing_or_empty(section: dict[str, Any], key: str) -> None:
    with pytest.raises(ConfigError, match=rf"^channels\.messenger\.{key}: required$"):
        MessengerChannel.check_config({k: v for k, v in section.items() if k != key})
    with pytest.raises(ConfigError, match=rf"^channels\.messenger\.{key}: must not be empty$"):
        MessengerChannel.check_config({**section, key: "  "})


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ({"page_id": "my-page"}, r"channels\.messenger\.page_id: expected the Page's numeric id"),
        ({"page_id": "1/../2"}, r"channels\.messenger\.page_id"),
        ({"graph_url": "ftp://graph.example"}, r"channels\.messenger\.graph_url: expected an http\(s\) URL"),
        ({"graph_url": "https://graph.facebook.com/v25.0?access_token=x"}, r"channels\.messenger\.graph_url"),
        ({"graph_url": 3}, r"channels\.messenger\.graph_url"),
        ({"enabled": "yes"}, r"channels\.messenger\.enabled: expected true or false"),
        ({"app_secret": ["a"]}, r"channels\.messenger\.app_secret: expected a string"),
        ({"page_token": "x"}, r"channels\.messenger\.page_token: unknown key"),
    ],
)
def test_bad_values_name_their_key(section: dict[str, Any], override: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        MessengerConfig.from_section({**section, **override})


def test_channel_refuses_to_build_on_a_bad_section(
    section: dict[str, Any], make_channel: Callable[[dict[str, Any]], MessengerChannel]
) -> None:
    with pytest.raises(ConfigError, match="channels.messenger.verify_token"):
        make_channel({k: v for k, v in section.items() if k != "verify_token"})


def test_the_channel_is_labelled_messenger_and_reads_whole_commands() -> None:
    assert MessengerChannel.display_label() == "Messenger" and MessengerChannel.commands_in_first_line is False


def test_normalize_address_accepts_psids_only() -> None:
    assert MessengerChannel.normalize_address(" 2000000000000001 ") == "2000000000000001"
    with pytest.raises(ValueError, match="PSID"):
        MessengerChannel.normalize_address("+15551234567")


async def test_simulated_request_passes_the_channels_own_webhook(
    section: dict[str, Any], webhook: TestClient, core: Core
) -> None:
    first = MessengerChannel.simulate(section, "2000000000000042", "Bonjour, ça va ?")
    second = MessengerChannel.simulate(section, "2000000000000042", "again")
    assert (first.method, first.path) == ("POST", "/webhooks/messenger")
    assert b"\\u00e7" in first.body  # escaped as Meta sends it
    for request in (first, second):
        async with webhook.post(request.path, data=request.body, headers=dict(request.headers)) as resp:
            assert resp.status == 200
    one, two = core.messages
    assert (one.sender, one.text) == ("2000000000000042", "Bonjour, ça va ?")
    assert one.external_id != two.external_id
    assert json.loads(first.body)["entry"][0]["id"] == PAGE_ID


def test_simulate_refuses_a_bad_sender(section: dict[str, Any]) -> None:
    with pytest.raises(BridgeError, match="^--from: not a Messenger PSID"):
        MessengerChannel.simulate(section, "alice", "hi")


def test_installed_distribution_registers_the_channel_through_its_entry_point() -> None:
    registry = make_plugin_manager()
    info = registry.plugins["messenger"]
    assert info.error is None
    assert info.distribution == "carebridge-messenger"
    assert info.channels == ["messenger"]
    assert registry.channels["messenger"] is MessengerChannel


def test_channel_limits_are_declared() -> None:
    assert MessengerChannel.name == "messenger"
    assert MessengerChannel.max_text_length == 2000
    assert MessengerChannel.reply_window == 24 * 3600


async def test_start_reports_connected(channel: MessengerChannel, core: Core) -> None:
    await channel.start()
    assert core.reports == [(ChannelState.CONNECTED, None)]


def test_carebridge_plugins_lists_messenger(tmp_path: Path) -> None:
    status, out, err = run_cli_sync("plugins", cwd=tmp_path)
    assert status == 0, err
    assert "messenger (carebridge-messenger " in out
    line = next(line for line in out.splitlines() if line.startswith("messenger "))
    assert line.endswith("channels: messenger")
