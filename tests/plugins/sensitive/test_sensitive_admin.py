"""Admin patterns from ``[sensitive] patterns_file``: loaded by ``configure``, every mistake as FILE:LINE."""

from __future__ import annotations

from pathlib import Path

import pytest

from bridge import ConfigError, Finding
from bridge.config import load_config
from carebridge_sensitive import SensitivePlugin
from carebridge_sensitive.admin import load_patterns

PATTERNS = """\
# Our own references that must not reach a chat app.
- kind: employee_id
  pattern: 'EMP-\\d{6}'
- kind: case_ref
  pattern: 'dossier (?P<value>\\d{7})'
  flags: [ignorecase]
"""


def _configured(tmp_path: Path, patterns: str | None) -> SensitivePlugin:
    """A plugin configured from a real bridge.toml (and patterns file, unless None)."""
    toml = "[sensitive]\n"
    if patterns is not None:
        (tmp_path / "patterns.yaml").write_text(patterns, encoding="utf-8")
        toml += 'patterns_file = "patterns.yaml"\n'
    (tmp_path / "bridge.toml").write_text(toml, encoding="utf-8")
    plugin = SensitivePlugin()
    plugin.configure(config=load_config(tmp_path / "bridge.toml"))
    return plugin


def test_admin_patterns_are_applied_with_their_kind(tmp_path: Path) -> None:
    plugin = _configured(tmp_path, PATTERNS)
    text = "Medewerker EMP-123456 over DOSSIER 7654321, code 4821"
    findings = plugin.detect_sensitive(text=text)
    assert [(f.kind, text[f.start : f.end]) for f in findings] == [
        ("employee_id", "EMP-123456"),
        ("case_ref", "7654321"),  # only the value group
        ("code", "4821"),
    ]


def test_without_ignorecase_case_matters(tmp_path: Path) -> None:
    plugin = _configured(tmp_path, PATTERNS)
    assert plugin.detect_sensitive(text="emp-123456") == []


def test_no_patterns_file_means_no_admin_patterns(tmp_path: Path) -> None:
    plugin = _configured(tmp_path, None)
    assert plugin.admin_patterns == ()
    assert plugin.detect_sensitive(text="EMP-123456") == []


@pytest.mark.parametrize("content", ["", "# nothing yet\n", "[]\n", "~\n"])
def test_an_empty_file_has_no_patterns(tmp_path: Path, content: str) -> None:
    assert _configured(tmp_path, content).admin_patterns == ()


def test_reconfigure_replaces_the_patterns(tmp_path: Path) -> None:
    plugin = _configured(tmp_path, PATTERNS)
    (tmp_path / "patterns.yaml").write_text("- kind: ticket\n  pattern: 'T#\\d+'\n", encoding="utf-8")
    plugin.configure(config=load_config(tmp_path / "bridge.toml"))
    assert plugin.detect_sensitive(text="EMP-123456 T#42") == [Finding("ticket", 11, 15)]


def test_a_bad_file_on_reconfigure_keeps_the_previous_patterns(tmp_path: Path) -> None:
    plugin = _configured(tmp_path, PATTERNS)
    (tmp_path / "patterns.yaml").write_text("- kind: ticket\n  pattern: '('\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"patterns\.yaml:2: "):
        plugin.configure(config=load_config(tmp_path / "bridge.toml"))
    assert [p.kind for p in plugin.admin_patterns] == ["employee_id", "case_ref"]


BAD_FILES = {
    "yaml syntax error": ("- kind: a\n  pattern: 'b'\n- kind: [c\n", 4, "expected ',' or ']'"),
    "tab indentation": ("- kind: a\n\tpattern: b\n", 2, "found character '\\t'"),
    "not a list": ("kind: a\npattern: b\n", 1, "expected a list of {kind, pattern} mappings, got a mapping"),
    "a scalar": ("just text\n", 1, "expected a list of {kind, pattern} mappings, got 'just text'"),
    "entry not a mapping": ("- kind: a\n  pattern: b\n- EMP-\\d+\n", 3, "each entry must be a mapping"),
    "unknown key": ("- kind: a\n  pattern: b\n  flag: ignorecase\n", 3, "unknown key 'flag' (expected one of: kind"),
    "duplicate key": ("- kind: a\n  pattern: b\n  kind: c\n", 3, "duplicate key 'kind'"),
    "missing kind": ("- kind: a\n  pattern: b\n\n- pattern: c\n", 4, "entry without 'kind'"),
    "missing pattern": ("- kind: a\n  pattern: b\n- kind: c\n", 3, "entry without 'pattern'"),
    "kind not a string": ("- kind: 12\n  pattern: b\n", 1, "kind must be a string, got '12'"),
    "kind with capitals": ("- pattern: b\n  kind: Employee\n", 2, "kind 'Employee' must match [a-z][a-z0-9_]{0,31}"),
    "kind with a dash": ("- kind: case-ref\n  pattern: b\n", 1, "kind 'case-ref' must match"),
    "kind too long": (f"- kind: {'k' * 33}\n  pattern: b\n", 1, "must match [a-z][a-z0-9_]{0,31}"),
    "empty kind": ("- kind: ''\n  pattern: b\n", 1, "kind '' must match"),
    "pattern not a string": ("- kind: a\n  pattern: [x]\n", 2, "pattern must be a string, got a list"),
    "invalid regex": ("- kind: a\n  pattern: b\n- kind: c\n  pattern: '(unclosed'\n", 4, "invalid regular expression"),
    "bad escape": ("- kind: a\n  pattern: '\\q'\n", 2, "invalid regular expression '\\\\q': bad escape"),
    "matches the empty string": ("- kind: a\n  pattern: 'x*'\n", 2, "pattern 'x*' matches the empty string"),
    "empty pattern": ("- kind: a\n  pattern: ''\n", 2, "matches the empty string"),
    "only a word boundary": ("- kind: a\n  pattern: '\\b'\n", 2, "matches the empty string"),
    "optional everything": ("- kind: a\n  pattern: '(abc)?'\n", 2, "matches the empty string"),
    "flags not a list": ("- kind: a\n  pattern: b\n  flags: ignorecase\n", 3, "flags must be a list"),
    "unknown flag": ("- kind: a\n  pattern: b\n  flags: [ignorecase, dotall]\n", 3, "unknown flag 'dotall'"),
}


@pytest.mark.parametrize(("content", "line", "reason"), BAD_FILES.values(), ids=BAD_FILES.keys())
def test_bad_patterns_file_names_file_and_line(tmp_path: Path, content: str, line: int, reason: str) -> None:
    path = tmp_path / "patterns.yaml"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(ConfigError) as caught:
        load_patterns(path)
    message = str(caught.value)
    assert message.startswith(f"{path}:{line}: "), message
    assert reason in message


def test_configure_raises_the_file_and_line(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"patterns\.yaml:3: unknown key 'colour'"):
        _configured(tmp_path, "- kind: a\n  pattern: b\n  colour: red\n")


def test_missing_file_is_named(tmp_path: Path) -> None:
    path = tmp_path / "nowhere.yaml"
    with pytest.raises(ConfigError, match=r"nowhere\.yaml: cannot read: No such file"):
        load_patterns(path)


def test_file_that_is_not_utf8_is_named(tmp_path: Path) -> None:
    path = tmp_path / "patterns.yaml"
    path.write_bytes(b"- kind: a\n  pattern: '\xff'\n")
    with pytest.raises(ConfigError, match=r"patterns\.yaml: not UTF-8 text"):
        load_patterns(path)
