"""Plugin discovery and hook calling: entry points, failures by name, notify() fan-out."""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

from bridge import hookimpl
from bridge.errors import PluginLoadError
from bridge.plugins import make_plugin_manager
from bridge.plugins.hooks import Hooks
from tests.conftest import install_plugin


def test_third_party_plugin_found_through_a_real_dist_info(plugin_site: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(plugin_site))
    monkeypatch.delitem(sys.modules, "acme_chat", raising=False)
    try:
        registry = make_plugin_manager()
        assert registry.plugins["acme"].version == "1.2.3"
        assert registry.plugins["acme"].distribution == "acme-chat"
        assert registry.channels["acme"].name == "acme"
        assert registry.failures["broken"] == "ImportError: needs libbroken, which is not installed"
        with pytest.raises(PluginLoadError, match="broken: ImportError: needs libbroken"):
            make_plugin_manager(required=["broken"])
    finally:
        sys.modules.pop("acme_chat", None)


def test_installed_build_exposes_the_builtin_channels() -> None:
    registry = make_plugin_manager()
    for name in ("messenger", "whatsapp"):
        assert name in registry.channels, f"plugins/{name} is not installed (pip install -e plugins/{name})"
        assert registry.plugins[name].distribution == f"carebridge-{name}"


def test_misspelt_hookimpl_is_refused_by_name() -> None:
    class Typo:
        @hookimpl
        def mesage_received(self, bridge: object, message: object) -> None:
            """Misspelt on purpose."""

    with pytest.raises(PluginLoadError, match="plugin 'typo': unknown hook 'mesage_received'"):
        make_plugin_manager(load_entry_points=False, plugins=[("typo", Typo())])


async def test_notify_runs_sync_and_async_impls_and_survives_a_failing_one(caplog: pytest.LogCaptureFixture) -> None:
    seen: list[str] = []

    class SyncObserver:
        @hookimpl
        def message_received(self, bridge: object, message: object, conversation_id: int) -> None:
            seen.append(f"sync:{conversation_id}")

    class AsyncObserver:
        @hookimpl
        async def message_received(self, bridge: object, message: object, conversation_id: int) -> None:
            seen.append(f"async:{conversation_id}")

    class Failing:
        @hookimpl
        async def message_received(self, bridge: object, message: object) -> None:
            raise RuntimeError("boom")

    registry = make_plugin_manager(
        load_entry_points=False,
        plugins=[("sync-observer", SyncObserver()), ("failing", Failing()), ("async-observer", AsyncObserver())],
    )
    with caplog.at_level(logging.ERROR):
        await Hooks(registry.pm, bridge=SimpleNamespace()).message_received(object(), 7)  # type: ignore[arg-type]
    assert sorted(seen) == ["async:7", "sync:7"]
    assert "plugin 'failing' failed in hook message_received" in caplog.text


def test_two_plugins_cannot_register_one_channel_name(plugin_site: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(plugin_site))
    monkeypatch.delitem(sys.modules, "acme_chat", raising=False)
    try:
        import acme_chat

        class Copycat:
            @hookimpl
            def register_channels(self, register: object) -> None:
                register(acme_chat.AcmeChannel)  # type: ignore[operator]

        taken = "plugin 'copycat': register_channels: channel 'acme' is already registered"
        with pytest.raises(PluginLoadError, match=taken):
            make_plugin_manager(plugins=[("copycat", Copycat())])
    finally:
        sys.modules.pop("acme_chat", None)


BAD_PLUGINS = {
    "typo_plugin": """
        from bridge import hookimpl

        @hookimpl
        def mesage_received(bridge, message):
            pass
        """,
    "zdup_plugin": """
        from bridge import Channel, hookimpl

        class Impostor(Channel):
            name = "messenger"

            async def send(self, message):
                raise NotImplementedError

        @hookimpl
        def register_channels(register):
            register(Impostor)
        """,
    "buggy_plugin": """
        from bridge import hookimpl

        @hookimpl
        def register_channels(register):
            raise RuntimeError("oops")
        """,
    "clibug_plugin": """
        from bridge import hookimpl

        @hookimpl
        def register_cli(subparsers):
            raise RuntimeError("no cli")
        """,
}


def install_bad_plugins(site: Path) -> None:
    """Installed plugins that import fine but are wrong: a misspelt hook, a taken channel, two crashes."""
    for dist, version in (("typo-plugin", "0.1"), ("zdup-plugin", "0.2"), ("buggy-plugin", "0.3"), ("clibug", "0.4")):
        name = dist.removesuffix("-plugin")
        module = f"{name}_plugin"
        install_plugin(site, dist, version, {name: module}, {module: BAD_PLUGINS[module]})


def test_installed_plugins_with_wrong_hooks_are_reported_by_name_not_fatal(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    install_bad_plugins(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    for module in BAD_PLUGINS:
        monkeypatch.delitem(sys.modules, module, raising=False)
    registry = make_plugin_manager()
    assert registry.failures["typo"].startswith("unknown hook 'mesage_received'")
    assert registry.failures["zdup"] == "register_channels: channel 'messenger' is already registered by another plugin"
    assert registry.failures["buggy"] == "register_channels: RuntimeError: oops"
    assert registry.pm.get_plugin("typo") is None and registry.pm.get_plugin("zdup") is None
    assert registry.channels["messenger"].__module__.startswith("carebridge_messenger")
    assert registry.plugins["zdup"].channels == []
    with pytest.raises(PluginLoadError, match="typo: unknown hook"):
        make_plugin_manager(required=["typo"])
