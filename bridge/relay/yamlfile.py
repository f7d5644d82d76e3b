"""Read a small YAML file while keeping line numbers for error messages.

Rules and templates are edited by hand; a mistake must be reported as
``FILE:LINE: what is wrong`` so the operator can find it. PyYAML's composed
nodes carry those marks; ``Node`` wraps one with typed accessors.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import yaml

from bridge.errors import ConfigError


@dataclass(frozen=True)
class Node:
    """One YAML node and the file it came from."""

    node: yaml.Node
    source: str

    @property
    def line(self) -> int:
        """The 1-based line where the node starts."""
        return int(self.node.start_mark.line) + 1

    def error(self, message: str) -> ConfigError:
        """Return a ConfigError naming the file and this node's line."""
        return ConfigError(f"{self.source}:{self.line}: {message}")

    @property
    def is_null(self) -> bool:
        """True for an empty value or an explicit ``null``."""
        return isinstance(self.node, yaml.ScalarNode) and self.node.tag == "tag:yaml.org,2002:null"

    def mapping(self, what: str) -> Iterator[tuple[str, Node]]:
        """Yield ``(key, value)`` pairs of a mapping with string keys.

        :raises ConfigError: when the node is not a mapping or a key repeats.
        """
        if not isinstance(self.node, yaml.MappingNode):
            raise self.error(f"{what} must be a mapping")
        seen: set[str] = set()
        for key_node, value_node in self.node.value:
            key = Node(key_node, self.source)
            name = key.text(f"a key of {what}")
            if name in seen:
                raise key.error(f"duplicate key {name!r} in {what}")
            seen.add(name)
            yield name, Node(value_node, self.source)

    def sequence(self, what: str) -> list[Node]:
        """Return the items of a sequence.

        :raises ConfigError: when the node is not a sequence.
        """
        if not isinstance(self.node, yaml.SequenceNode):
            raise self.error(f"{what} must be a list")
        return [Node(item, self.source) for item in self.node.value]

    def text(self, what: str) -> str:
        """Return a scalar as text (numbers and booleans are refused).

        :raises ConfigError: when the node is not a plain string.
        """
        if not isinstance(self.node, yaml.ScalarNode) or self.node.tag != "tag:yaml.org,2002:str":
            raise self.error(f"{what} must be a string")
        return str(self.node.value)

    def strings(self, what: str) -> tuple[str, ...]:
        """Return a string or a list of strings as a tuple."""
        if isinstance(self.node, yaml.SequenceNode):
            return tuple(item.text(f"an item of {what}") for item in self.sequence(what))
        return (self.text(what),)


def load_yaml(path: Path) -> Node | None:
    """Compose ``path`` into a node tree; None for an empty file.

    :raises ConfigError: naming the file and line of a syntax error, or a missing file.
    """
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as err:
        raise ConfigError(f"{path}: cannot read: {err.strerror or err}") from err
    except UnicodeDecodeError as err:
        raise ConfigError(f"{path}: not UTF-8 text") from err
    return load_yaml_text(text, str(path))


def load_yaml_text(text: str, source: str) -> Node | None:
    """Compose YAML ``text``; ``source`` names it in errors."""
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as err:
        mark = err.problem_mark or err.context_mark
        line = f"{mark.line + 1}:" if mark is not None else ""
        problem = err.problem or err.context or "invalid YAML"
        raise ConfigError(f"{source}:{line} {problem}") from err
    except yaml.YAMLError as err:
        raise ConfigError(f"{source}: invalid YAML: {err}") from err
    return None if node is None else Node(node, source)
