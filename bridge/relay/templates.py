"""Notices the bridge writes itself, per language, with operator overrides.

Built-in texts live in ``bridge/defaults/templates.yaml``; ``[templates]
file`` may override any key for any language (see config/templates.yaml).
A text is a ``str.format`` template; only the fields in ``FIELDS`` exist, and
an unknown field is refused when the file loads, not when a customer waits.
"""

from __future__ import annotations

import string
from collections.abc import Collection, Mapping
from importlib import resources
from pathlib import Path

from bridge.errors import ConfigError
from bridge.relay.yamlfile import Node, load_yaml, load_yaml_text

#: Every placeholder a template may use.
FIELDS = frozenset(
    {
        "conversation",
        "contact",
        "channel",
        "agent",
        "from_agent",
        "queue",
        "error",
        "minutes",
        "email",
        "note",
        "list",
        "count",
        "link",
        "kinds",
        "text",
        "code",
    }
)
#: Keys the core uses; each must exist in English in the built-in file.
REQUIRED_KEYS = (
    "queued",
    "closed",
    "closed_idle",
    "transfer",
    "handoff",
    "window_closed_customer",
    "window_closed_customer_wait",
    "window_closed_agent",
    "window_warning",
    "email_hint",
    "delivery_failed",
    "channel_unavailable",
    "which_conversation",
    "no_conversation",
    "conversation_closed",
    "sensitive_notice",
    "sensitive_withheld",
    "sensitive_reply_refused",
    "secure_ask_email",
    "secure_code_sent",
    "secure_code_wrong",
    "secure_mailed",
    "secure_cancelled",
    "secure_mail_subject",
    "secure_mail",
    "secure_code_subject",
    "secure_code_mail",
)
#: Fields a key's every text must use: a mail without the text or the code it exists for would be useless.
MUST_USE = {"secure_mail": "text", "secure_code_mail": "code"}
FALLBACK_LANGUAGE = "en"


class _Missing(dict[str, object]):
    def __missing__(self, key: str) -> str:
        return ""


class Templates:
    """Rendered notices: ``render(key, language, **fields)``."""

    def __init__(self, texts: Mapping[str, Mapping[str, str]], *, source: str = "built-in") -> None:
        self._texts = {key: dict(langs) for key, langs in texts.items()}
        self.source = source

    def keys(self) -> list[str]:
        """Every template key known."""
        return sorted(self._texts)

    def languages(self, key: str) -> list[str]:
        """The languages ``key`` has a text for."""
        return sorted(self._texts.get(key, {}))

    def render(self, key: str, language: str | None = None, **fields: object) -> str:
        """Return the text of ``key`` in ``language`` (else English, else any).

        Fields not given render empty, so a notice never shows ``{braces}``.

        :raises KeyError: for a key no file defines (a programming error).
        """
        langs = self._texts[key]
        text = langs.get((language or "").lower()) or langs.get(FALLBACK_LANGUAGE) or next(iter(langs.values()))
        return text.format_map(_Missing(fields)).strip()


def load_templates(path: Path | None) -> Templates:
    """Load the built-in notices, then apply the override file if any.

    :raises ConfigError: ``FILE:LINE: reason`` for a bad override file.
    """
    builtin = resources.files("bridge").joinpath("defaults/templates.yaml").read_text(encoding="utf-8")
    root = load_yaml_text(builtin, "bridge/defaults/templates.yaml")
    texts = _parse(root) if root is not None else {}
    missing = [k for k in REQUIRED_KEYS if FALLBACK_LANGUAGE not in texts.get(k, {})]
    if missing:
        raise ConfigError(f"built-in templates lack {', '.join(missing)}")
    source = "built-in"
    if path is not None:
        node = load_yaml(path)
        if node is not None and not node.is_null:
            for key, langs in _parse(node, known=set(texts)).items():
                texts.setdefault(key, {}).update(langs)
        source = str(path)
    return Templates(texts, source=source)


def _parse(root: Node, known: Collection[str] | None = None) -> dict[str, dict[str, str]]:
    """Read ``key: {language: text}``; with ``known``, a key outside it is an error (a typo)."""
    out: dict[str, dict[str, str]] = {}
    for key, value in root.mapping("the templates file"):
        if known is not None and key not in known:
            raise value.error(f"unknown template {key!r} (known: {', '.join(sorted(known))})")
        langs: dict[str, str] = {}
        if not value.is_null and value.node.tag.endswith(":str"):
            raise value.error(f"template {key!r} must map languages to texts, e.g. 'en: ...'")
        for language, text_node in value.mapping(f"template {key!r}"):
            text = text_node.text(f"template {key}.{language}")
            used = _check_fields(text, text_node, f"{key}.{language}")
            if key in MUST_USE and MUST_USE[key] not in used:
                raise text_node.error(f"template {key}.{language} must contain {{{MUST_USE[key]}}}")
            langs[language.lower()] = text
        if not langs:
            raise value.error(f"template {key!r} has no text")
        out[key] = langs
    return out


def _check_fields(text: str, node: Node, name: str) -> set[str]:
    """Refuse unknown fields and format specs; return the fields ``text`` uses."""
    try:
        parsed = list(string.Formatter().parse(text))
    except ValueError as err:
        raise node.error(f"template {name}: {err} (write '{{{{' for a literal brace)") from err
    used: set[str] = set()
    for _literal, field, spec, conversion in parsed:
        if field is None:
            continue
        used.add(field)
        if field not in FIELDS:
            raise node.error(f"template {name}: unknown field {{{field}}} (known: {', '.join(sorted(FIELDS))})")
        if spec or conversion:
            raise node.error(f"template {name}: field {{{field}}} takes no format spec")
    return used
