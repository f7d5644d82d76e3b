"""``carebridge plugins --check`` and ``check-config`` tell a plugin author what is wrong, by name.

The plugins are installed the way pip installs them (a ``*.dist-info`` with
the entry point beside the module, on ``PYTHONPATH``), so discovery is the
production one.
"""

from __future__ import annotations

import json
from pathlib import Path

from tests.conftest import ACME_PLUGIN, install_plugin
from tests.daemon import DaemonProcess, run_cli_sync, write_config

NO_HOOKS = '''
"""A plugin whose author forgot the @hookimpl marker."""
from bridge import Channel, DeliveryReceipt


class Quiet(Channel):
    name = "quiet"

    async def send(self, message):
        return DeliveryReceipt(("1",))


def register_channels(register):
    register(Quiet)
'''

MISNAMED = '''
"""A plugin whose channel is not named like its entry point."""
from bridge import Channel, DeliveryReceipt, hookimpl


class Chatter(Channel):
    name = "chatter"

    async def send(self, message):
        return DeliveryReceipt(("1",))


@hookimpl
def register_channels(register):
    register(Chatter)
'''

LOUD = '''
"""A plugin that logs its own secret (which it must never do): the daemon's filter is the last defence."""
import logging
from bridge import Channel, ChannelSchema, ConfigKey, DeliveryReceipt, hookimpl


class Loud(Channel):
    name = "loud"
    schema = ChannelSchema("loud", ConfigKey("pin", required=True, secret=True), ConfigKey("tokenizer"))

    async def start(self):
        logging.getLogger("carebridge.loud").warning("starting with pin %s and tokenizer %s",
                                                     self.config["pin"], self.config["tokenizer"])

    async def send(self, message):
        return DeliveryReceipt(("1",))


@hookimpl
def register_channels(register):
    register(Loud)
'''


def site(tmp_path: Path, *plugins: str) -> dict[str, str]:
    """Install the named test plugins into a site folder; return the environment that finds them."""
    folder = tmp_path / "site"
    sources = {"acme": ACME_PLUGIN, "quiet": NO_HOOKS, "talk": MISNAMED, "loud": LOUD}
    for name in plugins:
        install_plugin(folder, f"{name}-plugin", "1.0", {name: f"{name}_plugin"}, {f"{name}_plugin": sources[name]})
    return {"PYTHONPATH": str(folder)}


def test_check_lists_each_plugins_hooks_and_passes_when_all_is_well(tmp_path: Path) -> None:
    status, out, err = run_cli_sync("plugins", "--check", cwd=tmp_path, env=site(tmp_path, "acme"))
    assert status == 0, out + err
    assert "acme (acme-plugin 1.0): channels: acme; hooks: lifespan, register_channels" in out
    assert "telegram (carebridge-telegram " in out and "hooks: register_channels, register_cli" in out
    assert "core-routing (carebridge " in out and "hooks: choose_agent" in out
    assert out.rstrip().endswith("no problems found")


def test_check_reports_a_plugin_without_hooks_and_a_misnamed_channel(tmp_path: Path) -> None:
    env = site(tmp_path, "acme", "quiet", "talk")
    status, out, _ = run_cli_sync("plugins", "--check", cwd=tmp_path, env=env)
    assert status == 1
    assert "quiet (quiet-plugin 1.0): channels: -; hooks: -" in out
    assert "problem: plugin 'quiet' (quiet-plugin): implements no hooks" in out
    assert (
        "problem: plugin 'talk' (talk-plugin): registers channel 'chatter', but its entry point is named 'talk': "
        "[channels.chatter] would ask for a plugin 'chatter'; name the entry point 'chatter'"
    ) in out
    assert "problem: plugin 'acme'" not in out and out.rstrip().endswith("2 problem(s) found")
    # Without --check the listing is as before, and these mistakes are not errors of their own.
    status, out, _ = run_cli_sync("plugins", cwd=tmp_path, env=env)
    assert status == 0 and "problem" not in out and "hooks" not in out


def test_check_counts_a_plugin_that_failed_to_load_and_speaks_json(tmp_path: Path, plugin_site: Path) -> None:
    status, out, _ = run_cli_sync("plugins", "--check", "--json", cwd=tmp_path, env={"PYTHONPATH": str(plugin_site)})
    assert status == 1
    document = json.loads(out)
    rows = {row["name"]: row for row in document["plugins"]}
    assert rows["acme"]["hooks"] == ["lifespan", "register_channels"] and rows["broken"]["hooks"] == []
    assert document["problems"] == [
        "plugin 'broken' (broken-plugin): failed to load: ImportError: needs libbroken, which is not installed"
    ]


def test_check_config_names_the_plugin_it_expected_for_a_channel(tmp_path: Path) -> None:
    env = site(tmp_path, "talk")
    config = write_config(tmp_path, "[channels.acme]\ntoken = 'x'\n[channels.talk]\n")
    status, _, err = run_cli_sync("check-config", "-c", str(config), env=env)
    assert status == 1
    assert (
        "channels.acme: enabled, but no installed plugin provides this channel: expected plugin 'acme' "
        "(an entry point 'acme' in the 'carebridge' group), which is not installed"
    ) in err
    assert (
        "channels.talk: enabled, but no installed plugin provides this channel: expected plugin 'talk' "
        "(an entry point 'talk' in the 'carebridge' group); plugin 'talk' is installed but registers channels: "
        "'chatter'"
    ) in err


async def test_the_daemon_masks_what_a_channels_schema_declares_secret(tmp_path: Path) -> None:
    config = write_config(tmp_path, "[channels.loud]\npin = 'pin-4471-secret'\ntokenizer = 'words-public'\n")
    async with DaemonProcess(config, env=site(tmp_path, "loud")) as daemon:
        pass
    assert "starting with pin *** and tokenizer words-public" in daemon.stderr
    assert "pin-4471-secret" not in daemon.stderr
