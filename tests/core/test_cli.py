"""The CLI frame commands as real subprocesses: init, check-config, plugins, simulate."""

from __future__ import annotations

import base64
import os
import stat
from pathlib import Path

import pytest

from bridge.config import load_config
from tests.daemon import free_port, run_cli_sync, write_config


def site_env(site: Path) -> dict[str, str]:
    return {"PYTHONPATH": str(site)}


def test_help_works_without_any_config(tmp_path: Path) -> None:
    status, out, _ = run_cli_sync("--help", cwd=tmp_path)
    assert status == 0
    for command in ("init", "run", "check-config", "plugins", "simulate"):
        assert command in out


def test_help_and_plugins_survive_installed_plugins_with_wrong_hooks(tmp_path: Path) -> None:
    from tests.core.test_plugins import install_bad_plugins

    site = tmp_path / "site"
    install_bad_plugins(site)
    status, out, err = run_cli_sync("--help", cwd=tmp_path, env=site_env(site))
    assert status == 0 and "check-config" in out
    assert "typo (typo-plugin) failed to load: unknown hook 'mesage_received'" in err
    assert "carebridge: plugin 'clibug': register_cli failed: RuntimeError('no cli')" in err
    assert "Traceback" not in err
    status, out, err = run_cli_sync("plugins", cwd=tmp_path, env=site_env(site))
    assert status == 1 and "Traceback" not in err
    assert "zdup (zdup-plugin 0.2): FAILED to load: register_channels: channel 'messenger' is already" in out
    assert "buggy (buggy-plugin 0.3): FAILED to load: register_channels: RuntimeError: oops" in out
    assert "messenger (carebridge-messenger " in out


def test_a_closed_stdout_is_not_a_traceback(tmp_path: Path) -> None:
    import subprocess
    import sys

    from tests.daemon import cli_env

    read_end, write_end = os.pipe()
    os.close(read_end)  # the reader is gone before anything is written: `carebridge plugins | head -0`
    try:
        done = subprocess.run(
            [sys.executable, "-m", "bridge", "plugins"],
            cwd=tmp_path,
            env=cli_env(None),
            stdout=write_end,
            stderr=subprocess.PIPE,
            timeout=60,
            check=False,
        )
    finally:
        os.close(write_end)
    assert done.returncode == 1
    assert done.stderr.decode() == ""


def test_init_writes_a_working_config_and_a_private_key(tmp_path: Path) -> None:
    target = tmp_path / "etc"
    status, out, err = run_cli_sync("init", str(target), cwd=tmp_path)
    assert status == 0, err
    key_file = target / "master.key"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    raw = key_file.read_bytes()
    assert raw.endswith(b"\n") and raw.count(b"\n") == 1
    assert len(base64.b64decode(raw.strip(), validate=True)) == 32
    config = load_config(target / "bridge.toml")
    assert config.store.key == f"file:{key_file}"
    assert config.store.path == target / "var" / "carebridge.db"
    assert set(config.channels) >= {"messenger", "whatsapp", "email"}
    # Platforms wait for their secrets; the website chat needs none and is on (DESIGN §12).
    assert config.enabled_channels() == ["webchat"]
    assert "[store]" in (target / "bridge.toml").read_text() and "# " in (target / "bridge.toml").read_text()
    status, out, err = run_cli_sync("check-config", "-c", str(target / "bridge.toml"), cwd=tmp_path)
    assert (status, err) == (0, "")
    assert "configuration OK" in out


def test_two_inits_make_different_keys(tmp_path: Path) -> None:
    for name in ("a", "b"):
        assert run_cli_sync("init", str(tmp_path / name))[0] == 0
    assert (tmp_path / "a" / "master.key").read_bytes() != (tmp_path / "b" / "master.key").read_bytes()


@pytest.mark.parametrize("existing", ["bridge.toml", "master.key"])
def test_init_refuses_to_overwrite_either_file(tmp_path: Path, existing: str) -> None:
    (tmp_path / existing).write_text("precious\n")
    status, out, err = run_cli_sync("init", str(tmp_path))
    assert status == 1
    assert f"{tmp_path / existing} already exists; refusing to overwrite it" in err
    assert (tmp_path / existing).read_text() == "precious\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == [existing]


def test_check_config_rejects_a_misspelt_key_with_its_path(tmp_path: Path) -> None:
    config = write_config(tmp_path, "[routing]\nstrategy = 'least_busy'\nrules_fiel = 'x.yaml'\n")
    status, out, err = run_cli_sync("check-config", "-c", str(config))
    assert status == 1
    assert err.startswith("carebridge: routing.rules_fiel: unknown key (expected one of: strategy, rules_file")
    assert err.count("\n") == 1  # one line, no traceback


def test_check_config_uses_env_variable_and_option_after_leaf(tmp_path: Path) -> None:
    config = write_config(tmp_path, "[logging]\nlevel = 'verbose'\n")
    status, _, err = run_cli_sync("check-config", env={"CAREBRIDGE_CONFIG": str(config)})
    assert status == 1 and "logging.level: expected one of" in err
    status, _, err = run_cli_sync("check-config", "--config", str(tmp_path / "missing.toml"))
    assert status == 1 and "missing.toml: configuration file not found" in err


def test_check_config_reports_missing_files(tmp_path: Path) -> None:
    config = write_config(tmp_path, "[routing]\nrules_file = 'rules.yaml'\n[templates]\nfile = 't.yaml'\n")
    status, _, err = run_cli_sync("check-config", "-c", str(config))
    assert status == 1
    assert f"routing.rules_file: file {tmp_path / 'rules.yaml'} not found" in err
    assert f"templates.file: file {tmp_path / 't.yaml'} not found" in err


def test_check_config_reports_broken_rules_and_templates_files_with_their_line(tmp_path: Path) -> None:
    (tmp_path / "rules.yaml").write_text("queues:\n  billing: Invoices\nrules:\n  - queue: [billing\n")
    (tmp_path / "templates.yaml").write_text("closed:\n  en: Bye\nqueued:\n  en: 'Hi {nmae}'\n")
    config = write_config(tmp_path, "[routing]\nrules_file = 'rules.yaml'\n[templates]\nfile = 'templates.yaml'\n")
    status, out, err = run_cli_sync("check-config", "-c", str(config))
    assert (status, out) == (1, "")
    lines = err.splitlines()
    assert len(lines) == 2, err
    assert lines[0].startswith(f"carebridge: {tmp_path / 'rules.yaml'}:5:")
    assert lines[1].startswith(f"carebridge: {tmp_path / 'templates.yaml'}:4:")
    assert "unknown field {nmae}" in lines[1]
    # Fixed files pass: the same loaders as start-up, nothing else to complain about.
    fixed = "queues:\n  billing: Invoices\nrules:\n  - queue: billing\n    keywords: [refund]\n"
    (tmp_path / "rules.yaml").write_text(fixed)
    (tmp_path / "templates.yaml").write_text("")
    status, out, err = run_cli_sync("check-config", "-c", str(config))
    assert (status, err) == (0, ""), err
    assert "configuration OK" in out


def test_check_config_refuses_a_strategy_no_plugin_provides(tmp_path: Path) -> None:
    config = write_config(tmp_path, "[routing]\nstrategy = 'least_bussy'\n")
    status, _, err = run_cli_sync("check-config", "-c", str(config))
    assert status == 1
    assert err == (
        "carebridge: routing.strategy: no installed plugin provides strategy 'least_bussy'"
        " (built in: least_busy, round_robin; see `carebridge plugins`)\n"
    )
    site = tmp_path / "site"
    from tests.conftest import install_plugin

    strategy = """
        from bridge import hookimpl

        @hookimpl
        def choose_agent(strategy, conversation, candidates):
            return candidates[-1] if strategy == "least_bussy" and candidates else None
        """
    install_plugin(site, "busy-strategy", "1.0", {"busy": "busy_strategy"}, {"busy_strategy": strategy})
    status, out, err = run_cli_sync("check-config", "-c", str(config), env=site_env(site))
    assert (status, err) == (0, ""), err


def test_check_config_runs_the_channel_plugins_validator(tmp_path: Path, plugin_site: Path) -> None:
    config = write_config(tmp_path, "[channels.acme]\ntoken = ''\n")
    status, _, err = run_cli_sync("check-config", "-c", str(config), env=site_env(plugin_site))
    assert status == 1 and "channels.acme.token: required" in err
    write_config(tmp_path, "[channels.acme]\ntoken = 'env:ACME_TOKEN'\n")
    status, out, err = run_cli_sync(
        "check-config", "-c", str(config), env={**site_env(plugin_site), "ACME_TOKEN": "t0ken"}
    )
    assert status == 0
    # The broken plugin is not needed by this config: a warning, once, not an error.
    assert err.splitlines() == [
        "plugin broken (broken-plugin) failed to load: ImportError: needs libbroken, which is not installed"
    ]
    assert "enabled channels: acme" in out
    status, _, err = run_cli_sync("check-config", "-c", str(config), env=site_env(plugin_site))
    assert status == 1 and "channels.acme.token: environment variable ACME_TOKEN is not set" in err


def test_check_config_reports_enabled_channel_without_plugin(tmp_path: Path, plugin_site: Path) -> None:
    config = write_config(
        tmp_path, "[channels.broken]\ntoken = 'x'\n[channels.nowhere]\n[channels.off]\nenabled = false\n"
    )
    status, _, err = run_cli_sync("check-config", "-c", str(config), env=site_env(plugin_site))
    assert status == 1
    assert "channels.broken: enabled, but plugin 'broken' failed to load: ImportError: needs libbroken" in err
    assert "channels.nowhere: enabled, but no installed plugin provides this channel" in err
    assert "channels.off" not in err


def test_check_config_reports_a_required_plugin_that_is_missing(tmp_path: Path) -> None:
    config = write_config(tmp_path, "[plugins]\nrequired = ['telepathy']\n")
    status, _, err = run_cli_sync("check-config", "-c", str(config))
    assert status == 1 and "plugins.required: plugin 'telepathy' is not available: not installed" in err


def test_plugins_lists_a_third_party_plugin_and_a_broken_one(tmp_path: Path, plugin_site: Path) -> None:
    status, out, _ = run_cli_sync("plugins", cwd=tmp_path, env=site_env(plugin_site))
    assert "acme (acme-chat 1.2.3): channels: acme" in out
    assert "broken (broken-plugin 0.1): FAILED to load: ImportError: needs libbroken, which is not installed" in out
    assert status == 1  # a plugin failed
    status, out, _ = run_cli_sync("plugins", "--json", cwd=tmp_path, env=site_env(plugin_site))
    import json

    rows = {row["name"]: row for row in json.loads(out)["plugins"]}
    assert rows["acme"]["channels"] == ["acme"] and rows["acme"]["version"] == "1.2.3"
    assert rows["broken"]["error"].startswith("ImportError")


def test_plugins_works_with_no_config_and_shows_builtins(tmp_path: Path, plugin_site: Path) -> None:
    good = tmp_path / "good"
    from tests.conftest import ACME_PLUGIN, install_plugin

    install_plugin(good, "acme-chat", "1.2.3", {"acme": "acme_chat"}, {"acme_chat": ACME_PLUGIN})
    config = write_config(tmp_path, "[channels.acme]\ntoken = 'x'\n")
    status, out, err = run_cli_sync("plugins", "-c", str(config), cwd=tmp_path, env=site_env(good))
    assert status == 0, err
    assert "acme (acme-chat 1.2.3): channels: acme [enabled]" in out
    assert "core-routing (carebridge " in out  # the core's own hooks come through the same entry points


def test_plugins_finds_the_config_the_usual_ways_and_survives_a_broken_one(tmp_path: Path) -> None:
    elsewhere = tmp_path / "etc"
    elsewhere.mkdir()
    config = write_config(elsewhere, "[channels.whatsapp]\nenabled = true\nphone_number_id = '1'\n")
    status, out, err = run_cli_sync("plugins", cwd=tmp_path, env={"CAREBRIDGE_CONFIG": str(config)})
    assert "whatsapp (carebridge-whatsapp " in out and "channels: whatsapp [enabled]" in out, err
    status, out, err = run_cli_sync("plugins", cwd=elsewhere)  # ./bridge.toml
    assert "channels: whatsapp [enabled]" in out, err
    config.write_text("[server]\nprot = 1\n")
    status, out, err = run_cli_sync("plugins", cwd=elsewhere)
    assert status == 0 and "channels: whatsapp" in out and "[enabled]" not in out
    assert err.startswith("carebridge: server.prot: unknown key") and "(listing plugins without it)" in err
    status, out, err = run_cli_sync("plugins", "-c", str(config), cwd=tmp_path)
    assert (status, out) == (1, "") and err.startswith("carebridge: server.prot: unknown key")


def test_simulate_reports_a_daemon_that_is_not_running(tmp_path: Path, plugin_site: Path) -> None:
    config = write_config(tmp_path, "[channels.acme]\ntoken = 'x'\n", port=free_port())
    status, _, err = run_cli_sync(
        "simulate", "acme", "--from", "ann", "--text", "hello", "-c", str(config), env=site_env(plugin_site)
    )
    assert status == 1
    assert "cannot reach the daemon at http://127.0.0.1:" in err and "is `carebridge run` running?" in err


def test_simulate_rejects_unknown_or_disabled_channels(tmp_path: Path, plugin_site: Path) -> None:
    config = write_config(tmp_path, "[channels.acme]\nenabled = false\ntoken = 'x'\n")
    status, _, err = run_cli_sync(
        "simulate", "acme", "--from", "a", "--text", "t", "-c", str(config), env=site_env(plugin_site)
    )
    assert status == 1 and "channels.acme: not enabled" in err
    status, _, err = run_cli_sync("simulate", "nope", "--from", "a", "--text", "t", "-c", str(config))
    assert status == 1 and "channel 'nope': no installed plugin provides it" in err


def test_usage_errors_exit_2(tmp_path: Path) -> None:
    status, _, err = run_cli_sync("simulate", "acme", cwd=tmp_path)
    assert status == 2 and "--from" in err
    assert os.path.exists(tmp_path)


def test_config_option_anywhere_among_the_leaf_arguments(tmp_path: Path) -> None:
    config = write_config(tmp_path)
    status, out, err = run_cli_sync(
        "agent", "add", "alice", "-c", str(config), "--channel", "whatsapp:+15551234567", "--password-stdin",
        cwd=tmp_path / "..", stdin=b"correct horse battery staple\n",
    )  # fmt: skip
    assert status == 0, err
    assert out.startswith("otpauth://totp/Carebridge:alice?secret=")
    status, out, err = run_cli_sync("agent", f"--config={config}", "list", cwd=tmp_path / "..")
    assert status == 2 and "unrecognized arguments: --config=" in err  # -c belongs to the leaf, not `agent`
    status, out, err = run_cli_sync("agent", "list", f"--config={config}", cwd=tmp_path / "..")
    assert status == 0 and out.splitlines()[1].startswith("alice  agent  whatsapp:+1555")
