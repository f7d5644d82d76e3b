"""A channel section's keys, declared once: validation, secret masking and the ``init`` template.

Every channel plugin checks its ``[channels.<name>]`` section, and every one
wrote the same loops by hand: unknown keys, required strings, URLs, flags,
errors that name ``channels.<name>.<key>``. A ``ChannelSchema`` declares the
keys instead (type, required or default, secret or not, a comment), and the
core reads the same declaration for two more jobs: the daemon masks the
values of secret keys in every log line, and ``carebridge init`` writes the
commented section of each installed plugin from it.

    SCHEMA = ChannelSchema(
        "acme",
        ConfigKey("api_token", secret=True, required=True, comment="the token from Acme's dashboard"),
        ConfigKey("api_url", kind="url", default="https://api.acme.example/v1", comment="Acme's API base"),
        doc="Acme Chat: webhooks in, REST sends out.",
    )

    class AcmeChannel(Channel):
        name = "acme"
        schema = SCHEMA            # check_config validates with it

    values = SCHEMA.validate(section)   # {"enabled": True, "api_token": "...", "api_url": "..."}

Secret values are never quoted back in an error: a mistyped token must not
end up in a log or a terminal's scroll-back.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import urlsplit

from bridge.errors import ConfigError

KeyKind = Literal["text", "id", "url", "flag", "integer", "texts"]
_NAME = re.compile(r"^[a-z][a-z0-9_]*$")
#: What each kind expects, as its error says it.
_EXPECTED: dict[str, str] = {
    "text": "expected a string",
    "id": "expected a string",
    "flag": "expected true or false",
    "integer": "expected a whole number",
    "texts": "expected a list of strings",
}


def check_section_keys(path: str, section: object, known: Iterable[str]) -> None:
    """Refuse a section that is not a table or holds a key not in ``known``.

    For channels that validate their section by hand rather than with a
    :class:`ChannelSchema` (which calls it too), so every section's errors
    read the same.

    :raises ConfigError: ``<path>: expected a table`` or
        ``<path>.<key>: unknown key (expected one of ...)``.
    """
    if not isinstance(section, Mapping):
        raise ConfigError(f"{path}: expected a table")
    names = sorted(known)
    unknown = sorted(set(section) - set(names))
    if unknown:
        raise ConfigError(f"{path}.{unknown[0]}: unknown key (expected one of {', '.join(names)})")


@dataclass(frozen=True, slots=True)
class ConfigKey:
    """One key of a channel section.

    :param name: the key as written in ``bridge.toml``.
    :param kind: ``text`` (a string, surrounding whitespace removed), ``id``
        (a platform id: a string, or a whole number written without quotes),
        ``url`` (an absolute http(s) URL without query or fragment; a trailing
        ``/`` is removed), ``flag`` (true or false), ``integer`` or ``texts``
        (a list of strings).
    :param required: the section is refused without it (``<path>: required``);
        an empty text is refused too (``<path>: must not be empty``).
    :param default: the value when the key is absent (or, for an optional
        text, empty); what ``init`` shows commented out.
    :param secret: a credential: masked in the daemon's logs, never quoted in
        an error, written by ``init`` as an ``env:`` reference.
    :param comment: one line for the operator, written by ``init`` beside the key.
    :param pattern: a regular expression the whole text must match.
    :param invalid: what the error says when ``pattern``, ``choices`` or
        ``check`` refuse a value (``expected ...``); the value follows it
        unless the key is a secret.
    :param choices: the only values allowed (texts).
    :param minimum: the smallest integer allowed; ``maximum`` the largest.
    :param check: a last test of the parsed value: returns what is wrong, or None.
    :param example: the value ``init`` writes for a required key that is no
        secret (default: an empty string).
    :param env: the variable ``init`` names for a secret (default
        ``<CHANNEL>_<KEY>`` in capitals).
    """

    name: str
    kind: KeyKind = "text"
    required: bool = False
    default: Any = None
    secret: bool = False
    comment: str = ""
    pattern: str | None = None
    invalid: str | None = None
    choices: Sequence[str] = ()
    minimum: int | None = None
    maximum: int | None = None
    check: Callable[[Any], str | None] | None = None
    example: Any = None
    env: str | None = None

    def __post_init__(self) -> None:
        if not _NAME.match(self.name):
            raise ValueError(f"key name {self.name!r}: expected lower-case letters, digits and '_'")
        if self.required and self.default is not None:
            raise ValueError(f"key {self.name!r}: a required key has no default")


ENABLED = ConfigKey("enabled", kind="flag", default=True, comment="false keeps the section but turns the channel off")


class ChannelSchema:
    """The declared keys of ``[channels.<channel>]``.

    :param channel: the channel's name (its section is ``channels.<channel>``).
    :param keys: the keys besides ``enabled``, which every section has; they
        are checked, and written by ``init``, in this order.
    :param doc: a line or two about the section, written above it by ``init``.
    """

    def __init__(self, channel: str, *keys: ConfigKey, doc: str = "") -> None:
        names = [key.name for key in keys]
        if "enabled" in names or len(set(names)) != len(names):
            raise ValueError(f"channel {channel!r}: duplicate key or a redeclared 'enabled'")
        self.channel = channel
        self.path = f"channels.{channel}"
        self.keys: tuple[ConfigKey, ...] = (ENABLED, *keys)
        self.doc = doc

    def __repr__(self) -> str:
        return f"ChannelSchema({self.channel!r}, keys={[k.name for k in self.keys]!r})"

    def key(self, name: str) -> ConfigKey:
        """Return the declaration of ``name``.

        :raises KeyError: when the section has no such key.
        """
        for key in self.keys:
            if key.name == name:
                return key
        raise KeyError(name)

    @property
    def required(self) -> tuple[str, ...]:
        """The names of the required keys."""
        return tuple(key.name for key in self.keys if key.required)

    @property
    def secret_keys(self) -> tuple[str, ...]:
        """The names of the keys that hold credentials."""
        return tuple(key.name for key in self.keys if key.secret)

    def validate(self, section: Mapping[str, Any]) -> dict[str, Any]:
        """Check a section and return every key's value (defaults filled in).

        :raises ConfigError: naming ``channels.<channel>.<key>`` and what is
            wrong: an unknown key, a missing required one, a wrong type or value.
        """
        check_section_keys(self.path, section, [key.name for key in self.keys])
        return {key.name: self._value(key, section) for key in self.keys}

    def secret_values(self, section: Mapping[str, Any]) -> list[str]:
        """The values of a (resolved) section's secret keys, for the log filter to mask."""
        found: list[str] = []
        for name in self.secret_keys:
            value = section.get(name)
            if isinstance(value, str):
                found.append(value)
            elif isinstance(value, list):
                found += [item for item in value if isinstance(item, str)]
        return found

    def template(self) -> str:
        """The commented ``[channels.<channel>]`` section ``carebridge init`` writes.

        The channel is written disabled (``enabled = false``), so the file runs
        as it is; secrets are ``env:`` references; optional keys are shown
        commented out with their default.
        """
        lines: list[tuple[str, str]] = []
        for key in self.keys:
            if key is ENABLED:
                lines.append(("enabled = false", ""))
            elif key.secret:
                env = key.env or f"{self.channel}_{key.name}".upper()
                prefix = "" if key.required else "# "
                lines.append((f"{prefix}{key.name} = {_toml(f'env:{env}')}", key.comment))
            elif key.required:
                lines.append((f"{key.name} = {_toml('' if key.example is None else key.example)}", key.comment))
            else:
                shown = key.example if key.default is None else key.default
                lines.append((f"# {key.name} = {_toml('' if shown is None else shown)}", key.comment))
        width = max(len(text) for text, _ in lines)
        body = [f"{text:<{width}}  # {comment}" if comment else text for text, comment in lines]
        head = [f"# {line}" if line else "#" for line in self.doc.splitlines()]
        return "\n".join([*head, f"[{self.path}]", *body]) + "\n"

    # -- parsing one key ---------------------------------------------------

    def _value(self, key: ConfigKey, section: Mapping[str, Any]) -> Any:
        where = f"{self.path}.{key.name}"
        raw = section.get(key.name)
        if raw is None:
            if key.required:
                raise ConfigError(f"{where}: required")
            return key.default
        value = _parse(key, raw, where)
        if value is None:  # an optional text left empty
            return key.default
        self._refine(key, value, raw, where)
        return value

    @staticmethod
    def _refine(key: ConfigKey, value: Any, raw: Any, where: str) -> None:
        problem: str | None = None
        if key.pattern is not None and isinstance(value, str) and not re.fullmatch(key.pattern, value):
            problem = key.invalid or f"does not match {key.pattern!r}"
        elif key.choices and value not in key.choices:
            problem = key.invalid or f"expected one of {', '.join(key.choices)}"
        elif key.minimum is not None and isinstance(value, int) and value < key.minimum:
            problem = f"expected at least {key.minimum}"
        elif key.maximum is not None and isinstance(value, int) and value > key.maximum:
            problem = f"expected at most {key.maximum}"
        elif key.check is not None:
            found = key.check(value)
            if found is not None:
                problem = key.invalid or found
        if problem is not None:
            raise ConfigError(f"{where}: {problem}" + ("" if key.secret else f", got {raw!r}"))


def _parse(key: ConfigKey, raw: Any, where: str) -> Any:
    """Return the typed value, None for an optional empty text; raise naming ``where``."""
    if key.kind == "url":
        return _url(key, raw, where)
    if key.kind == "flag":
        if not isinstance(raw, bool):
            raise ConfigError(f"{where}: {_EXPECTED['flag']}")
        return raw
    if key.kind == "integer":
        if isinstance(raw, bool) or not isinstance(raw, int):
            raise ConfigError(f"{where}: {_EXPECTED['integer']}")
        return raw
    if key.kind == "texts":
        if not isinstance(raw, list) or not all(isinstance(item, str) for item in raw):
            raise ConfigError(f"{where}: {_EXPECTED['texts']}")
        return [item.strip() for item in raw]
    numbers = key.kind == "id" and isinstance(raw, int) and not isinstance(raw, bool)
    if not (isinstance(raw, str) or numbers):
        raise ConfigError(f"{where}: {_EXPECTED[key.kind]}")
    text = str(raw).strip()
    if not text:
        if key.required:
            raise ConfigError(f"{where}: must not be empty")
        return None
    return text


def _url(key: ConfigKey, raw: Any, where: str) -> str:
    like = key.example if key.example is not None else key.default
    hint = f" like {like!r}" if like else ""
    if not isinstance(raw, str) or not raw.strip():
        raise ConfigError(f"{where}: expected a URL{hint}")
    url = raw.strip().rstrip("/")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc or parts.query or parts.fragment:
        shown = "" if key.secret else f", got {raw!r}"
        raise ConfigError(f"{where}: expected an http(s) URL{hint}{shown}")
    return url


def _toml(value: Any) -> str:
    """Write a value as TOML (strings with JSON's escapes, which TOML's basic strings share)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml(item) for item in value) + "]"
    return json.dumps(str(value), ensure_ascii=False)
