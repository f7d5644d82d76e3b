"""The CLI sees the installed plugin: listing, config checks, simulate's error path."""

from __future__ import annotations

from pathlib import Path

import pytest

from bridge.cli import main


def write(tmp_path: Path, section: str) -> Path:
    path = tmp_path / "bridge.toml"
    path.write_text('[store]\npath = "var/carebridge.db"\nkey = "file:var/master.key"\n' + section, encoding="utf-8")
    return path


def test_plugins_lists_whatsapp(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["plugins"]) == 0
    assert "whatsapp (carebridge-whatsapp" in capsys.readouterr().out


def test_check_config_names_the_missing_whatsapp_key(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = write(
        tmp_path, '[channels.whatsapp]\nphone_number_id = "400000000000001"\naccess_token = "t"\nverify_token = "v"\n'
    )
    assert main(["check-config", "-c", str(config)]) == 1
    assert "channels.whatsapp.app_secret: required" in capsys.readouterr().err


def test_check_config_accepts_a_complete_section_with_secret_references(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WA_TOKEN", "token-from-env")
    (tmp_path / "app_secret").write_text("secret-from-file\n", encoding="utf-8")
    config = write(
        tmp_path,
        "[channels.whatsapp]\n"
        "phone_number_id = 400000000000001\n"
        'access_token = "env:WA_TOKEN"\n'
        f'app_secret = "file:{tmp_path / "app_secret"}"\n'
        'verify_token = "v"\n'
        'reengage_template = "hello_world"\n',
    )
    assert main(["check-config", "-c", str(config)]) == 0, capsys.readouterr().err
    assert "whatsapp" in capsys.readouterr().out


def test_simulate_with_a_bad_number_is_a_one_line_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = write(
        tmp_path,
        '[channels.whatsapp]\nphone_number_id = "1"\naccess_token = "t"\napp_secret = "s"\nverify_token = "v"\n',
    )
    assert main(["simulate", "whatsapp", "--from", "alice", "--text", "hi", "-c", str(config)]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("carebridge: --from: not an E.164 phone number") and "\n" not in err
