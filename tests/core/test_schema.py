"""``ChannelSchema``: a channel section's keys declared once, for validation, log masking and ``init``."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

import pytest

from bridge import Channel, ChannelSchema, ConfigError, ConfigKey, DeliveryReceipt, OutboundMessage
from bridge.config import load_config
from bridge.testing import write_config

SCHEMA = ChannelSchema(
    "acme",
    ConfigKey("api_token", required=True, secret=True, pattern=r"[a-z]+-[0-9]+", invalid="expected NAME-DIGITS"),
    ConfigKey("account", kind="id", required=True, pattern=r"[0-9]+", invalid="expected digits"),
    ConfigKey("api_url", kind="url", default="https://api.acme.example/v1", comment="Acme's API base"),
    ConfigKey("greeting", default="hello", comment="first words"),
    ConfigKey("mode", choices=("push", "pull"), default="push"),
    ConfigKey("retries", kind="integer", default=3, minimum=0, maximum=10),
    ConfigKey("fast", kind="flag", default=False),
    ConfigKey("hosts", kind="texts", default=["a.example"]),
    ConfigKey("signing_key", secret=True, comment="optional second secret"),
    ConfigKey("odd", default="even", check=lambda v: None if len(v) % 2 == 0 else "expected an even length"),
    doc="Acme Chat, a made-up platform.\nTwo lines of doc.",
)
VALID = {"enabled": True, "api_token": "tok-123", "account": "42"}


def test_a_valid_section_gets_every_default() -> None:
    assert SCHEMA.validate(VALID) == {
        "enabled": True, "api_token": "tok-123", "account": "42", "api_url": "https://api.acme.example/v1",
        "greeting": "hello", "mode": "push", "retries": 3, "fast": False, "hosts": ["a.example"],
        "signing_key": None, "odd": "even",
    }  # fmt: skip


def test_values_are_normalised() -> None:
    values = SCHEMA.validate(
        {**VALID, "account": 42, "api_token": " tok-1 ", "api_url": "http://127.0.0.1:9/v1/", "greeting": "  "}
    )
    assert (values["account"], values["api_token"], values["api_url"]) == ("42", "tok-1", "http://127.0.0.1:9/v1")
    assert values["greeting"] == "hello"  # an optional text left empty takes its default


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ({"api_token": None}, r"^channels\.acme\.api_token: required$"),
        ({"api_token": "   "}, r"^channels\.acme\.api_token: must not be empty$"),
        ({"api_token": 12}, r"^channels\.acme\.api_token: expected a string$"),
        ({"account": "4a"}, r"^channels\.acme\.account: expected digits, got '4a'$"),
        ({"account": True}, r"^channels\.acme\.account: expected a string$"),
        ({"api_url": "ftp://x"}, r"^channels\.acme\.api_url: expected an http\(s\) URL like 'https://api\.acme"),
        ({"api_url": "https://x/?token=1"}, r"^channels\.acme\.api_url: expected an http\(s\) URL"),
        ({"api_url": 3}, r"^channels\.acme\.api_url: expected a URL like 'https://api\.acme\.example/v1'$"),
        ({"mode": "poll"}, r"^channels\.acme\.mode: expected one of push, pull, got 'poll'$"),
        ({"retries": "3"}, r"^channels\.acme\.retries: expected a whole number$"),
        ({"retries": True}, r"^channels\.acme\.retries: expected a whole number$"),
        ({"retries": 11}, r"^channels\.acme\.retries: expected at most 10, got 11$"),
        ({"retries": -1}, r"^channels\.acme\.retries: expected at least 0, got -1$"),
        ({"fast": "yes"}, r"^channels\.acme\.fast: expected true or false$"),
        ({"hosts": "a.example"}, r"^channels\.acme\.hosts: expected a list of strings$"),
        ({"hosts": ["a", 1]}, r"^channels\.acme\.hosts: expected a list of strings$"),
        ({"odd": "abc"}, r"^channels\.acme\.odd: expected an even length, got 'abc'$"),
        ({"enabled": 1}, r"^channels\.acme\.enabled: expected true or false$"),
        ({"tokn": "x"}, r"^channels\.acme\.tokn: unknown key \(expected one of account, api_token, api_url, "),
    ],
)
def test_every_error_names_its_key(override: dict[str, Any], message: str) -> None:
    section = {k: v for k, v in {**VALID, **override}.items() if v is not None}
    with pytest.raises(ConfigError, match=message):
        SCHEMA.validate(section)


def test_a_section_that_is_no_table_is_refused() -> None:
    with pytest.raises(ConfigError, match=r"^channels\.acme: expected a table$"):
        SCHEMA.validate(["api_token"])  # type: ignore[arg-type]


def test_a_refused_secret_is_never_quoted_back() -> None:
    with pytest.raises(ConfigError) as info:
        SCHEMA.validate({**VALID, "api_token": "Sup3r Secret!"})
    assert str(info.value) == "channels.acme.api_token: expected NAME-DIGITS"


def test_secret_values_are_the_secret_keys_values() -> None:
    section = {**VALID, "signing_key": "k3y-value", "greeting": "token-looking but public"}
    assert sorted(SCHEMA.secret_values(section)) == ["k3y-value", "tok-123"]
    assert SCHEMA.secret_keys == ("api_token", "signing_key") and SCHEMA.required == ("api_token", "account")


def test_the_init_section_is_commented_disabled_toml_with_env_references() -> None:
    text = SCHEMA.template()
    assert text.startswith("# Acme Chat, a made-up platform.\n# Two lines of doc.\n[channels.acme]\nenabled = false\n")
    assert 'api_token = "env:ACME_API_TOKEN"' in text and '# signing_key = "env:ACME_SIGNING_KEY"' in text
    assert 'account = ""' in text
    assert '# api_url = "https://api.acme.example/v1"  # Acme\'s API base' in text
    assert '# hosts = ["a.example"]' in text and "# fast = false" in text and "# retries = 3" in text
    assert tomllib.loads(text)["channels"]["acme"] == {
        "enabled": False,
        "api_token": "env:ACME_API_TOKEN",
        "account": "",
    }


def test_the_init_section_loads_while_its_secrets_are_unset(tmp_path: Path) -> None:
    config = load_config(write_config(tmp_path, SCHEMA.template()))
    assert config.channels["acme"]["enabled"] is False and config.enabled_channels() == []


def test_declarations_that_cannot_work_are_refused() -> None:
    with pytest.raises(ValueError, match="key name"):
        ConfigKey("Api-Token")
    with pytest.raises(ValueError, match="has no default"):
        ConfigKey("x", required=True, default="y")
    with pytest.raises(ValueError, match="duplicate key"):
        ChannelSchema("acme", ConfigKey("x"), ConfigKey("x"))
    with pytest.raises(ValueError, match="duplicate key"):
        ChannelSchema("acme", ConfigKey("enabled", kind="flag"))
    assert SCHEMA.key("mode").choices == ("push", "pull")
    with pytest.raises(KeyError):
        SCHEMA.key("nope")


class _Acme(Channel):
    name = "acme"
    schema = SCHEMA

    async def send(self, message: OutboundMessage) -> DeliveryReceipt:
        return DeliveryReceipt(("1",))


def test_check_config_validates_with_the_channels_schema() -> None:
    _Acme.check_config(VALID)
    with pytest.raises(ConfigError, match=r"^channels\.acme\.account: required$"):
        _Acme.check_config({"api_token": "tok-1"})


def test_the_init_template_describes_each_declared_channel_with_its_schemas_keys() -> None:
    """Channels the defaults describe by hand keep to their schema; init writes the others from it."""
    from bridge.cli.init import template
    from bridge.plugins import make_plugin_manager

    channels = make_plugin_manager().channels
    text = template(channels)
    declared = {name: cls.schema for name, cls in channels.items() if cls.schema is not None}
    assert {"instagram", "messenger", "telegram"} <= set(declared)
    for name, schema in declared.items():
        section = text.split(f"[channels.{name}]\n", 1)[1].split("\n[", 1)[0]
        written = {line.lstrip("# ").split(" =", 1)[0] for line in section.splitlines() if " = " in line}
        assert written == {key.name for key in schema.keys}, f"[channels.{name}] in the init template"
