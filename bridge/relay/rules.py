"""Queues and the rules that put a new conversation into one.

The rules file (``[routing] rules_file``, YAML) lists queues and ordered
rules; the first rule whose conditions all hold names the queue. With no
file, every conversation goes to ``default`` (the queue every agent added
without ``--queue`` serves). See config/routing.yaml for the documented format.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from bridge.relay.yamlfile import Node, load_yaml

DEFAULT_QUEUE = "default"
_QUEUE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
_WORD = re.compile(r"\w+", re.UNICODE)


@dataclass(frozen=True)
class Rule:
    """One rule: every condition given must hold (an empty one always holds)."""

    queue: str
    channels: frozenset[str] = frozenset()
    keywords: tuple[str, ...] = ()
    languages: frozenset[str] = frozenset()
    line: int = 0

    def matches(self, channel: str, text: str, language: str | None) -> bool:
        """Return True when the message satisfies every condition of the rule."""
        if self.channels and channel not in self.channels:
            return False
        if self.languages and (language or "") not in self.languages:
            return False
        if self.keywords:
            lowered = text.casefold()
            words = set(_WORD.findall(lowered))
            if not any((k in words) if _WORD.fullmatch(k) else (k in lowered) for k in self.keywords):
                return False
        return True


@dataclass(frozen=True)
class Rules:
    """The loaded rules: queues, ordered rules and language hints."""

    rules: tuple[Rule, ...] = ()
    queues: frozenset[str] = frozenset({DEFAULT_QUEUE})
    default_queue: str = DEFAULT_QUEUE
    default_language: str = "en"
    language_hints: Mapping[str, frozenset[str]] = field(default_factory=dict)
    source: str = "built-in"

    def detect_language(self, text: str, meta: Mapping[str, str] | None = None) -> str | None:
        """Guess a message's language: the channel's own hint, else hint words.

        A channel may pass ``meta["language"]`` (email's Content-Language).
        Otherwise the language with most hint words in the text wins; None if none.
        """
        if meta and meta.get("language"):
            return meta["language"].split("-")[0].strip().lower() or None
        words = set(_WORD.findall(text.casefold()))
        best: tuple[int, str] | None = None
        for language, hints in sorted(self.language_hints.items()):
            score = len(words & hints)
            if score and (best is None or score > best[0]):
                best = (score, language)
        return best[1] if best else None

    def match(self, channel: str, text: str, language: str | None) -> str:
        """Return the queue of the first matching rule, else the default queue."""
        for rule in self.rules:
            if rule.matches(channel, text, language):
                return rule.queue
        return self.default_queue


def load_rules(path: Path | None) -> Rules:
    """Load the rules file; None gives the built-in single ``default`` queue.

    :raises ConfigError: ``FILE:LINE: reason`` for a syntax or structure error.
    """
    if path is None:
        return Rules()
    root = load_yaml(path)
    if root is None or root.is_null:
        return Rules(source=str(path))
    queues: dict[str, int] = {}
    default_queue = DEFAULT_QUEUE
    default_language = "en"
    hints: dict[str, frozenset[str]] = {}
    rule_nodes: list[Node] = []
    default_node: Node | None = None
    for key, value in root.mapping("the rules file"):
        if key == "queues":
            for name in _queue_entries(value):
                queues[name.text("a queue name")] = name.line
        elif key == "default_queue":
            default_node = value
            default_queue = _queue_name(value)
        elif key == "default_language":
            default_language = value.text("default_language").strip().lower()
        elif key == "language_hints":
            for language, words in value.mapping("language_hints"):
                hints[language.lower()] = frozenset(w.casefold() for w in words.strings(f"language_hints.{language}"))
        elif key == "rules":
            rule_nodes = [] if value.is_null else value.sequence("rules")
        else:
            raise value.error(
                f"unknown key {key!r} (expected queues, default_queue, default_language, language_hints, rules)"
            )
    known = set(queues) | {DEFAULT_QUEUE}
    if default_node is not None and default_queue not in known:
        raise default_node.error(f"default_queue {default_queue!r} is not listed under queues")
    rules = tuple(_parse_rule(node, known) for node in rule_nodes)
    return Rules(
        rules=rules,
        queues=frozenset(known | {default_queue}),
        default_queue=default_queue,
        default_language=default_language,
        language_hints=hints,
        source=str(path),
    )


def _queue_entries(node: Node) -> list[Node]:
    """Accept ``queues: [a, b]`` or ``queues: {a: description, ...}``; return the name nodes."""
    if node.is_null:
        return []
    if isinstance(node.node, yaml.SequenceNode):
        names = node.sequence("queues")
    elif isinstance(node.node, yaml.MappingNode):
        names = [Node(key, node.source) for key, _ in node.node.value]
    else:
        raise node.error("queues must be a list of names or a mapping of name to description")
    for name in names:
        _queue_name(name)
    return names


def _queue_name(node: Node) -> str:
    name = node.text("a queue name")
    if not _QUEUE_NAME.match(name):
        raise node.error(f"invalid queue name {name!r} (letters, digits, '_', '-', '.')")
    return name


def _parse_rule(node: Node, known: set[str]) -> Rule:
    queue: str | None = None
    queue_node: Node | None = None
    channels: tuple[str, ...] = ()
    keywords: tuple[str, ...] = ()
    languages: tuple[str, ...] = ()
    for key, value in node.mapping("a rule"):
        if key == "queue":
            queue, queue_node = _queue_name(value), value
        elif key == "channel" or key == "channels":
            channels = tuple(c.strip().lower() for c in value.strings("channel"))
        elif key == "keyword" or key == "keywords":
            keywords = tuple(k.strip().casefold() for k in value.strings("keywords") if k.strip())
            if not keywords:
                raise value.error("keywords must not be empty")
        elif key == "language" or key == "languages":
            languages = tuple(lang.strip().lower() for lang in value.strings("language"))
        else:
            raise value.error(f"unknown key {key!r} in a rule (expected queue, channel, keywords, language)")
    if queue is None or queue_node is None:
        raise node.error("a rule needs a queue")
    if queue not in known:
        raise queue_node.error(f"queue {queue!r} is not listed under queues")
    return Rule(queue, frozenset(channels), keywords, frozenset(languages), node.line)
