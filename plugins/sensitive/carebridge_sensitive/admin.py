"""Load the administrator's own patterns (``[sensitive] patterns_file``).

The file is a YAML list of mappings::

    - kind: employee_id
      pattern: 'EMP-\\d{6}'
    - kind: case_ref
      pattern: 'dossier (?P<value>\\d{7})'
      flags: [ignorecase]

It is edited by hand, so every mistake is reported as ``FILE:LINE: reason``
(the line of the entry, or of its key or value that is wrong), and a file
with any mistake is refused as a whole: start-up stops, and a reload keeps
the patterns that were loaded before.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import yaml

from bridge import ConfigError, Finding

KIND = re.compile(r"[a-z][a-z0-9_]{0,31}")
FLAGS = {"ignorecase": re.IGNORECASE}
KEYS = ("kind", "pattern", "flags")
# Texts a pattern is tried on to see whether it can match nothing at all
# (``a*``, ``x?``, ``\b``): such a pattern would hide no character.
_PROBES = ("", "aA0 _-.\n")
_STR = "tag:yaml.org,2002:str"
_NULL = "tag:yaml.org,2002:null"


@dataclass(frozen=True)
class AdminPattern:
    """One compiled administrator pattern and the finding kind it reports.

    ``group`` is ``"value"`` when the pattern has a group of that name (only
    that part is sensitive: ``dossier (?P<value>\\d{7})``), else 0, the whole match.
    """

    kind: str
    regex: re.Pattern[str]
    group: int | str = 0

    def findings(self, text: str) -> Iterator[Finding]:
        """Yield a finding per non-empty match (or ``value`` group) of the pattern in ``text``."""
        for match in self.regex.finditer(text):
            start, end = match.span(self.group)
            if end > start:
                yield Finding(self.kind, start, end)


def load_patterns(path: Path) -> tuple[AdminPattern, ...]:
    """Read and compile every pattern in ``path``; an empty file has none.

    :raises ConfigError: ``FILE:LINE: reason`` for the first mistake, or
        ``FILE: cannot read`` when the file is missing or unreadable.
    """
    source = str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as err:
        raise ConfigError(f"{source}: cannot read: {err.strerror or err}") from err
    except UnicodeDecodeError as err:
        raise ConfigError(f"{source}: not UTF-8 text") from err
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as err:
        mark = err.problem_mark or err.context_mark
        where = f"{mark.line + 1}:" if mark is not None else ""
        raise ConfigError(f"{source}:{where} {err.problem or err.context or 'invalid YAML'}") from err
    except yaml.YAMLError as err:
        raise ConfigError(f"{source}: invalid YAML: {err}") from err
    if root is None or _is_null(root):
        return ()
    if not isinstance(root, yaml.SequenceNode):
        raise _error(source, root, f"expected a list of {{kind, pattern}} mappings, got {_describe(root)}")
    return tuple(_entry(source, item) for item in root.value)


def _entry(source: str, node: yaml.Node) -> AdminPattern:
    if not isinstance(node, yaml.MappingNode):
        raise _error(source, node, f"each entry must be a mapping with kind and pattern, got {_describe(node)}")
    values: dict[str, yaml.Node] = {}
    for key_node, value_node in node.value:
        key = _text(source, key_node, "a key")
        if key not in KEYS:
            raise _error(source, key_node, f"unknown key {key!r} (expected one of: {', '.join(KEYS)})")
        if key in values:
            raise _error(source, key_node, f"duplicate key {key!r}")
        values[key] = value_node
    for required in ("kind", "pattern"):
        if required not in values:
            raise _error(source, node, f"entry without {required!r}")
    kind = _text(source, values["kind"], "kind")
    if not KIND.fullmatch(kind):
        raise _error(source, values["kind"], f"kind {kind!r} must match {KIND.pattern}")
    flags = _flags(source, values["flags"]) if "flags" in values else 0
    regex = _compile(source, values["pattern"], flags)
    return AdminPattern(kind, regex, "value" if "value" in regex.groupindex else 0)


def _flags(source: str, node: yaml.Node) -> int:
    if not isinstance(node, yaml.SequenceNode):
        raise _error(source, node, f"flags must be a list (one of: {', '.join(FLAGS)}), got {_describe(node)}")
    flags = 0
    for item in node.value:
        name = _text(source, item, "a flag")
        if name not in FLAGS:
            raise _error(source, item, f"unknown flag {name!r} (expected one of: {', '.join(FLAGS)})")
        flags |= FLAGS[name]
    return flags


def _compile(source: str, node: yaml.Node, flags: int) -> re.Pattern[str]:
    pattern = _text(source, node, "pattern")
    try:
        regex = re.compile(pattern, flags)
    except re.error as err:
        where = f" at position {err.pos}" if err.pos is not None else ""
        raise _error(source, node, f"invalid regular expression {pattern!r}: {err.msg}{where}") from err
    if any(match.end() == match.start() for probe in _PROBES for match in regex.finditer(probe)):
        raise _error(source, node, f"pattern {pattern!r} matches the empty string")
    return regex


def _text(source: str, node: yaml.Node, what: str) -> str:
    if not isinstance(node, yaml.ScalarNode) or node.tag != _STR:
        raise _error(source, node, f"{what} must be a string, got {_describe(node)}")
    return str(node.value)


def _is_null(node: yaml.Node) -> bool:
    return isinstance(node, yaml.ScalarNode) and node.tag == _NULL


def _describe(node: yaml.Node) -> str:
    if isinstance(node, yaml.MappingNode):
        return "a mapping"
    if isinstance(node, yaml.SequenceNode):
        return "a list"
    if _is_null(node):
        return "nothing"
    return f"{node.value!r}"


def _error(source: str, node: yaml.Node, reason: str) -> ConfigError:
    return ConfigError(f"{source}:{node.start_mark.line + 1}: {reason}")
