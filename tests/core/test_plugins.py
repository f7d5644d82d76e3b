"""Plugin discovery and hook calling: entry points, failures by name, notify() fan-out."""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

from bridge import hookimpl
from bridge.errors import PluginLoadError
from bridge.plugins import make_plugin_manager, notify


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

    with pytest.raises(PluginLoadError, match="plugin 'typo' has an unknown hook"):
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
        await notify(registry.pm.hook.message_received, bridge=SimpleNamespace(), message=object(), conversation_id=7)
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

        with pytest.raises(PluginLoadError, match="registers channel 'acme', which another plugin already has"):
            make_plugin_manager(plugins=[("copycat", Copycat())])
    finally:
        sys.modules.pop("acme_chat", None)
