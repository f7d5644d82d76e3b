"""Config validation, chat-id addresses, ``start`` (getMe), ``simulate`` and discovery."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from carebridge_telegram import TelegramChannel, TelegramConfig
from carebridge_telegram.config import DEFAULT_API_URL

from bridge import BridgeError, ChannelAuthError, ChannelState, ChannelUnavailable, ConfigError
from bridge.plugins import make_plugin_manager
from tests.daemon import run_cli_sync
from tests.fakes.telegram_bot_api import FakeBotApi
from tests.plugins.telegram.conftest import BOT_TOKEN, SECRET, Client, Core


def test_valid_section_is_typed_and_api_url_defaults_to_telegrams(section: dict[str, Any]) -> None:
    del section["api_url"]
    config = TelegramConfig.from_section(section)
    assert (config.bot_token, config.webhook_secret) == (BOT_TOKEN, SECRET)
    assert config.api_url == DEFAULT_API_URL == "https://api.telegram.org"
    assert config.bot_id == "123456789"
    assert BOT_TOKEN not in repr(config) and SECRET not in repr(config)


@pytest.mark.parametrize("key", ["bot_token", "webhook_secret"])
def test_each_required_key_is_named_when_missing_or_empty(section: dict[str, Any], key: str) -> None:
    with pytest.raises(ConfigError, match=rf"^channels\.telegram\.{key}: required$"):
        TelegramChannel.check_config({k: v for k, v in section.items() if k != key})
    with pytest.raises(ConfigError, match=rf"^channels\.telegram\.{key}: must not be empty$"):
        TelegramChannel.check_config({**section, key: " "})


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ({"bot_token": "not-a-token"}, r"^channels\.telegram\.bot_token: expected the token from @BotFather"),
        ({"bot_token": "123:abc/def"}, r"^channels\.telegram\.bot_token: expected"),
        ({"bot_token": 123456}, r"^channels\.telegram\.bot_token: expected a string"),
        ({"webhook_secret": "has spaces in it"}, r"^channels\.telegram\.webhook_secret: expected 1-256 characters"),
        ({"webhook_secret": "x" * 257}, r"^channels\.telegram\.webhook_secret: expected 1-256 characters"),
        ({"webhook_secret": "sécret"}, r"^channels\.telegram\.webhook_secret"),
        ({"api_url": "ftp://api.telegram.org"}, r"^channels\.telegram\.api_url: expected an http\(s\) URL"),
        ({"api_url": "https://api.telegram.org?x=1"}, r"^channels\.telegram\.api_url"),
        ({"enabled": 1}, r"^channels\.telegram\.enabled: expected true or false"),
        ({"token": "x"}, r"^channels\.telegram\.token: unknown key"),
    ],
)
def test_bad_values_name_their_key(section: dict[str, Any], override: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        TelegramConfig.from_section({**section, **override})


@pytest.mark.parametrize(("key", "value"), [("bot_token", "999:secret/part"), ("webhook_secret", "my secret!")])
def test_a_refused_secret_is_never_quoted_back(section: dict[str, Any], key: str, value: str) -> None:
    with pytest.raises(ConfigError) as info:
        TelegramConfig.from_section({**section, key: value})
    assert value not in str(info.value)


def test_the_longest_allowed_webhook_secret_is_accepted(section: dict[str, Any]) -> None:
    assert TelegramConfig.from_section({**section, "webhook_secret": "A-z_9" * 51 + "x"}).webhook_secret


@pytest.mark.parametrize(
    ("raw", "expected"),
    [("0043", "43"), ("43", "43"), (" +43 ", "43"), ("-1001234567890", "-1001234567890"), ("-0", "0")],
)
def test_normalize_address_returns_the_canonical_integer(raw: str, expected: str) -> None:
    assert TelegramChannel.normalize_address(raw) == expected


@pytest.mark.parametrize("raw", ["@ann", "43a", "4 3", "", "+-43", "٤٣", "4.3"])
def test_normalize_address_refuses_anything_else(raw: str) -> None:
    with pytest.raises(ValueError, match="not a Telegram chat id"):
        TelegramChannel.normalize_address(raw)


def test_channel_declares_its_label_and_limits() -> None:
    assert TelegramChannel.name == "telegram" and TelegramChannel.display_label() == "Telegram"
    assert TelegramChannel.max_text_length == 4096 and TelegramChannel.reply_window is None


def test_channel_refuses_to_build_on_a_bad_section(
    section: dict[str, Any], make_channel: Callable[[dict[str, Any]], TelegramChannel]
) -> None:
    with pytest.raises(ConfigError, match=r"channels\.telegram\.webhook_secret"):
        make_channel({k: v for k, v in section.items() if k != "webhook_secret"})


async def test_start_checks_the_token_with_get_me(
    channel: TelegramChannel, api: FakeBotApi, core: Core, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="carebridge.telegram"):
        await channel.start()
    assert api.calls == ["getMe"]
    assert core.reports == [(ChannelState.CONNECTED, None)]
    assert "Telegram bot @carebridge_test_bot ready" in caplog.text and BOT_TOKEN not in caplog.text


async def test_start_with_a_refused_token_is_channel_auth_error(
    section: dict[str, Any], api: FakeBotApi, make_channel: Callable[[dict[str, Any]], TelegramChannel]
) -> None:
    for token in ("123456789:AAwrong-token", "987654321:AAtest-bot-token_0123456789"):
        with pytest.raises(ChannelAuthError, match="Unauthorized") as info:
            await make_channel({**section, "bot_token": token}).start()
        assert token not in str(info.value)
    api.revoke_token()
    with pytest.raises(ChannelAuthError, match="channels.telegram.bot_token"):
        await make_channel(section).start()


@pytest.mark.parametrize("failure", ["flood", "500", "proxy"])
async def test_start_when_telegram_is_failing_is_channel_unavailable(
    channel: TelegramChannel, api: FakeBotApi, failure: str
) -> None:
    if failure == "flood":
        api.flood(1, retry_after=5)
    else:
        api.fail_next(1, status=500 if failure == "500" else 502, json=failure == "500")
    with pytest.raises(ChannelUnavailable):
        await channel.start()


async def test_start_when_the_bot_api_is_unreachable_is_channel_unavailable(
    section: dict[str, Any], make_channel: Callable[[dict[str, Any]], TelegramChannel]
) -> None:
    with pytest.raises(ChannelUnavailable) as info:
        await make_channel({**section, "api_url": "http://127.0.0.1:9"}).start()
    assert BOT_TOKEN not in str(info.value) and "127.0.0.1" not in str(info.value)


async def test_simulated_request_passes_the_channels_own_webhook(
    section: dict[str, Any], webhook: Client, core: Core
) -> None:
    first = TelegramChannel.simulate(section, "0043", "Grüß Gott")
    second = TelegramChannel.simulate(section, "43", "again")
    assert (first.method, first.path) == ("POST", "/webhooks/telegram")
    assert first.headers["X-Telegram-Bot-Api-Secret-Token"] == SECRET
    for request in (first, second):
        async with webhook.post(request.path, data=request.body, headers=dict(request.headers)) as resp:
            assert resp.status == 200
    one, two = core.messages
    assert (one.channel, one.sender, one.text, one.sender_name) == ("telegram", "43", "Grüß Gott", "Simulated")
    assert one.external_id.startswith("43:") and one.external_id != two.external_id
    assert json.loads(first.body)["message"]["chat"]["type"] == "private"


def test_simulate_refuses_a_bad_sender(section: dict[str, Any]) -> None:
    with pytest.raises(BridgeError, match="^--from: not a Telegram chat id"):
        TelegramChannel.simulate(section, "@ann", "hi")


def test_installed_distribution_registers_the_channel_and_its_cli_command() -> None:
    registry = make_plugin_manager()
    info = registry.plugins["telegram"]
    assert info.error is None
    assert (info.distribution, info.channels) == ("carebridge-telegram", ["telegram"])
    assert registry.channels["telegram"] is TelegramChannel
    assert "telegram" in [impl.plugin_name for impl in registry.pm.hook.register_cli.get_hookimpls()]


def test_check_config_names_the_telegram_key(tmp_path: Path) -> None:
    (tmp_path / "bridge.toml").write_text(
        f'[channels.telegram]\nbot_token = "{BOT_TOKEN}"\nwebhook_secret = "no spaces allowed"\n', encoding="utf-8"
    )
    status, _out, err = run_cli_sync("check-config", "-c", str(tmp_path / "bridge.toml"), cwd=tmp_path)
    assert status == 1
    assert "channels.telegram.webhook_secret: expected 1-256 characters" in err
    assert "no spaces allowed" not in err
