"""Plugins reach the core only through the names the top-level ``bridge`` package exports.

Everything under ``bridge.*`` other than the package itself is the core's
own business and may change; a plugin that imports it would break silently.
The check reads the source of every module under ``plugins/`` (imports in
``TYPE_CHECKING`` blocks and functions included) without importing it.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import bridge

PLUGINS = Path(__file__).resolve().parents[2] / "plugins"
MODULES = sorted(PLUGINS.glob("*/**/*.py"))


def core_imports_outside_the_api(source: str) -> list[str]:
    """Every import in ``source`` that reaches into ``bridge`` past its public exports."""
    exported = set(bridge.__all__)
    problems: list[str] = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            problems += [f"import {a.name}" for a in node.names if a.name.startswith("bridge.")]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            if node.module.startswith("bridge."):
                problems.append(f"from {node.module} import ...")
            elif node.module == "bridge":
                problems += [f"from bridge import {a.name}" for a in node.names if a.name not in exported]
    return problems


def test_every_plugin_distribution_is_checked() -> None:
    packages = {path.relative_to(PLUGINS).parts[0] for path in MODULES}
    assert {"email", "messenger", "meta", "whatsapp"} <= packages
    sources = "".join(path.read_text(encoding="utf-8") for path in MODULES)
    assert "from bridge import" in sources


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(PLUGINS)))
def test_plugin_module_imports_only_the_public_bridge_api(path: Path) -> None:
    assert core_imports_outside_the_api(path.read_text(encoding="utf-8")) == []


def test_the_check_catches_each_way_around_the_public_api() -> None:
    source = """
import bridge
import bridge.store
from bridge import Channel, hookimpl
from bridge import normalize_everything
from bridge.channel import RegisterChannel
from typing import TYPE_CHECKING
if TYPE_CHECKING:
    from bridge.models import StatusKind
def late():
    import bridge.relay.retry as outbox
"""
    assert sorted(core_imports_outside_the_api(source)) == [
        "from bridge import normalize_everything",
        "from bridge.channel import ...",
        "from bridge.models import ...",
        "import bridge.relay.retry",
        "import bridge.store",
    ]
