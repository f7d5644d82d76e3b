"""The plugin API is documented: every hookspec has a real docstring and a README entry."""

from __future__ import annotations

import inspect
from pathlib import Path

import pytest

from bridge import hookspecs

ROOT = Path(__file__).resolve().parents[2]
SPECS = sorted(
    name for name, fn in vars(hookspecs).items() if inspect.isfunction(fn) and hasattr(fn, "carebridge_spec")
)


def test_design_hooks_are_all_specified() -> None:
    expected = {
        "register_channels",
        "lifespan",
        "message_received",
        "message_sent",
        "delivery_failed",
        "detect_sensitive",
        "choose_agent",
        "register_commands",
        "register_cli",
    }
    assert expected <= set(SPECS)


def signature_text(name: str) -> str:
    """``name(param, param)`` as the README's hook reference writes it."""
    return f"{name}({', '.join(inspect.signature(getattr(hookspecs, name)).parameters)})"


@pytest.mark.parametrize("name", SPECS)
def test_hookspec_has_a_docstring_that_explains_it(name: str) -> None:
    doc = inspect.getdoc(getattr(hookspecs, name)) or ""
    summary = doc.splitlines()[0] if doc else ""
    assert len(summary) > 20, f"{name}: the first docstring line must say what the hook is for"


@pytest.mark.parametrize("name", SPECS)
def test_hookspec_appears_with_its_signature_in_the_readme(name: str) -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert signature_text(name) in readme, f"README.md does not document {signature_text(name)}"


def test_async_hooks_are_never_firstresult() -> None:
    for name in SPECS:
        fn = getattr(hookspecs, name)
        opts = fn.carebridge_spec
        if opts.get("firstresult"):
            assert "async" not in (inspect.getdoc(fn) or "").lower().split(".")[0], name
