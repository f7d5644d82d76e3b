"""The installed distribution is found through the ``carebridge`` entry points like any plugin."""

from __future__ import annotations

from pathlib import Path

import carebridge_sensitive
from bridge import Finding
from bridge.config import load_config
from bridge.plugins import make_plugin_manager


def test_installed_plugin_is_found_and_detects() -> None:
    registry = make_plugin_manager()
    info = registry.plugins["sensitive"]
    assert (info.distribution, info.error) == ("carebridge-sensitive", None)
    assert registry.pm.get_plugin("sensitive") is carebridge_sensitive.plugin
    text = "IBAN NL91 ABNA 0417 1643 00, code 4821"
    results = registry.pm.hook.detect_sensitive(text=text)
    assert [Finding("iban", 5, 27), Finding("code", 34, 38)] in results
    assert registry.hooks.detect_sensitive(text) == [Finding("iban", 5, 27), Finding("code", 34, 38)]


def test_configure_through_the_hook(tmp_path: Path) -> None:
    (tmp_path / "patterns.yaml").write_text("- kind: ticket\n  pattern: 'T#\\d+'\n", encoding="utf-8")
    (tmp_path / "bridge.toml").write_text('[sensitive]\npatterns_file = "patterns.yaml"\n', encoding="utf-8")
    registry = make_plugin_manager(
        load_entry_points=False, plugins=[("sensitive", carebridge_sensitive.SensitivePlugin())]
    )
    registry.pm.hook.configure(config=load_config(tmp_path / "bridge.toml"))
    assert registry.hooks.detect_sensitive("see T#42") == [Finding("ticket", 4, 8)]
