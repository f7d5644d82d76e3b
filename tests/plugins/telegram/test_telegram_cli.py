"""``carebridge telegram set-webhook`` as a subprocess against the fake Bot API on loopback."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from tests.daemon import run_cli
from tests.fakes.telegram_bot_api import FakeBotApi
from tests.plugins.telegram.conftest import BOT_TOKEN, SECRET

Serve = Callable[[web.Application], Awaitable[TestServer]]


async def _fake(aiohttp_server: Serve) -> tuple[FakeBotApi, str]:
    api = FakeBotApi(token=BOT_TOKEN)
    server = await aiohttp_server(api.app)
    return api, str(server.make_url("")).rstrip("/")


def _config(
    tmp_path: Path, api_url: str, *, public_url: str | None = "https://care.example.org/", extra: str = ""
) -> Path:
    server = f'[server]\npublic_url = "{public_url}"\n' if public_url is not None else ""
    path = tmp_path / "bridge.toml"
    path.write_text(
        server + "[channels.telegram]\n"
        'bot_token = "env:TG_TEST_TOKEN"\nwebhook_secret = "file:secrets/telegram-webhook"\n'
        f'api_url = "{api_url}"\n' + extra,
        encoding="utf-8",
    )
    (tmp_path / "secrets").mkdir(exist_ok=True)
    (tmp_path / "secrets" / "telegram-webhook").write_text(SECRET + "\n", encoding="utf-8")
    return path


ENV = {"TG_TEST_TOKEN": BOT_TOKEN}


async def test_set_webhook_registers_public_url_secret_and_update_kinds(tmp_path: Path, aiohttp_server: Serve) -> None:
    api, url = await _fake(aiohttp_server)
    config = _config(tmp_path, url)
    status, out, err = await run_cli("telegram", "set-webhook", "-c", str(config), env=ENV, cwd=tmp_path)
    assert status == 0, err
    assert api.webhook == {
        "url": "https://care.example.org/webhooks/telegram",
        "secret_token": SECRET,
        "allowed_updates": ["message", "edited_message", "callback_query"],
    }
    line = out.strip()
    assert line.startswith("setWebhook https://care.example.org/webhooks/telegram: ")
    assert json.loads(line.split(": ", 1)[1]) == {"ok": True, "result": True, "description": "Webhook was set"}
    assert BOT_TOKEN not in out + err and SECRET not in out + err


async def test_drop_pending_updates_is_passed_on_request_and_c_may_come_first(
    tmp_path: Path, aiohttp_server: Serve
) -> None:
    api, url = await _fake(aiohttp_server)
    config = _config(tmp_path, url)
    status, _out, err = await run_cli(
        "telegram", "set-webhook", "-c", str(config), "--drop-pending-updates", env=ENV, cwd=tmp_path
    )
    assert status == 0, err
    assert api.webhook is not None and api.webhook["drop_pending_updates"] is True


async def test_the_config_is_found_through_carebridge_config_too(tmp_path: Path, aiohttp_server: Serve) -> None:
    api, url = await _fake(aiohttp_server)
    config = _config(tmp_path, url)
    status, _out, err = await run_cli(
        "telegram", "set-webhook", env={**ENV, "CAREBRIDGE_CONFIG": str(config)}, cwd=tmp_path.parent
    )
    assert status == 0, err
    assert api.webhook is not None


async def test_a_refusal_prints_the_bot_apis_answer_and_exits_1(tmp_path: Path, aiohttp_server: Serve) -> None:
    api, url = await _fake(aiohttp_server)
    config = _config(tmp_path, url, public_url="http://care.example.org:8080")
    status, out, err = await run_cli("telegram", "set-webhook", "-c", str(config), env=ENV, cwd=tmp_path)
    assert status == 1
    answer = json.loads(out.strip().split(": ", 1)[1])
    assert answer == {
        "ok": False, "error_code": 400,
        "description": "Bad Request: bad webhook: An HTTPS URL must be provided for webhook",
    }  # fmt: skip
    assert err.strip() == (
        "carebridge: the Bot API refused setWebhook (HTTP 400): "
        "Bad Request: bad webhook: An HTTPS URL must be provided for webhook"
    )
    assert api.webhook is None


async def test_a_refused_token_exits_1_without_showing_it(tmp_path: Path, aiohttp_server: Serve) -> None:
    api, url = await _fake(aiohttp_server)
    api.revoke_token()
    config = _config(tmp_path, url)
    status, out, err = await run_cli("telegram", "set-webhook", "-c", str(config), env=ENV, cwd=tmp_path)
    assert status == 1
    assert "Unauthorized" in err and BOT_TOKEN not in out + err


async def test_an_unreachable_bot_api_exits_1_naming_the_server_only(tmp_path: Path) -> None:
    config = _config(tmp_path, "http://127.0.0.1:9")
    status, _out, err = await run_cli("telegram", "set-webhook", "-c", str(config), env=ENV, cwd=tmp_path)
    assert status == 1
    assert err.strip().startswith("carebridge: cannot reach the Bot API at http://127.0.0.1:9")
    assert BOT_TOKEN not in err and "/bot" not in err


@pytest.mark.parametrize(
    ("public_url", "extra", "env", "message"),
    [
        (None, "", ENV, "server.public_url: required to register the webhook"),
        ("ftp://care.example.org", "", ENV, "server.public_url: expected an http(s) URL"),
        ("https://care.example.org", "", {}, "channels.telegram.bot_token: environment variable TG_TEST_TOKEN"),
        ("https://care.example.org", "enabled = false\n", ENV, "channels.telegram: not enabled"),
        ("https://care.example.org", 'flavour = "x"\n', ENV, "channels.telegram.flavour: unknown key"),
    ],
)
async def test_configuration_mistakes_exit_1_naming_the_key(
    tmp_path: Path, public_url: str | None, extra: str, env: dict[str, str], message: str
) -> None:
    config = _config(tmp_path, "http://127.0.0.1:9", public_url=public_url, extra=extra)
    status, _out, err = await run_cli("telegram", "set-webhook", "-c", str(config), env=env, cwd=tmp_path)
    assert status == 1
    assert err.startswith("carebridge: ") and message in err and len(err.strip().splitlines()) == 1


async def test_a_file_without_a_telegram_section_or_no_file_at_all_exits_1(tmp_path: Path) -> None:
    (tmp_path / "bridge.toml").write_text('[server]\npublic_url = "https://care.example.org"\n', encoding="utf-8")
    status, _out, err = await run_cli("telegram", "set-webhook", "-c", str(tmp_path / "bridge.toml"), cwd=tmp_path)
    assert status == 1 and "channels.telegram: not configured (config file " in err
    empty = tmp_path / "empty"
    empty.mkdir()
    status, _out, err = await run_cli("telegram", "set-webhook", cwd=empty)
    assert status == 1 and "channels.telegram: not configured (embedded defaults" in err
    status, _out, err = await run_cli("telegram", "set-webhook", "-c", str(empty / "nope.toml"), cwd=empty)
    assert status == 1 and "configuration file not found (from -c)" in err


async def test_telegram_without_an_action_is_a_usage_error(tmp_path: Path) -> None:
    status, _out, err = await run_cli("telegram", cwd=tmp_path)
    assert status == 2 and "required: ACTION" in err
