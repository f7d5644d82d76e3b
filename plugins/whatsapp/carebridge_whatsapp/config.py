"""The ``[channels.whatsapp]`` section, validated into a typed ``WhatsAppConfig``.

The core hands the section over raw (secret references already resolved,
``enabled`` filled in). Every error names its key path, e.g.
``channels.whatsapp.app_secret: required``, so the operator knows what to fix.

Keys:

``phone_number_id``   the Cloud API id of the business number (digits; required)
``access_token``      system-user token sent as ``Authorization: Bearer`` (required)
``app_secret``        the Meta app secret that signs webhooks (required)
``verify_token``      the token typed into the app dashboard for ``hub.*`` (required)
``graph_url``         Graph API base with its version (default ``https://graph.facebook.com/v25.0``)
``reengage_template`` approved template sent when the 24-hour window is closed (optional;
                      without it a closed window cannot be re-opened from our side)
``template_language`` language code of that template (default ``en_US``)
``max_media_bytes``   largest inbound media file downloaded and stored, in bytes (default
                      16 MiB, WhatsApp's own limit for audio and video). A larger file is
                      not downloaded: the message is stored with its attachment described
                      but without its bytes, and the refusal is logged.
``media_url_allow``   URL prefixes media may be downloaded from (default
                      ``["https://lookaside.fbsbx.com/"]``, the host Meta's media answers name).
                      Each entry is an absolute https URL prefix (http only for 127.0.0.1 or
                      localhost, for tests); a download URL or redirect elsewhere is not
                      fetched, so the bearer token never reaches another host.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from bridge import ConfigError

from .guards import UrlPrefix

DEFAULT_GRAPH_URL = "https://graph.facebook.com/v25.0"
DEFAULT_MAX_MEDIA_BYTES = 16 * 1024 * 1024
#: Where Graph's media answers point: ``https://lookaside.fbsbx.com/whatsapp_business/attachments/?mid=…``.
DEFAULT_MEDIA_URL_ALLOW = ("https://lookaside.fbsbx.com/",)
_PREFIX = "channels.whatsapp"
_REQUIRED = ("phone_number_id", "access_token", "app_secret", "verify_token")
_OPTIONAL = ("enabled", "graph_url", "reengage_template", "template_language", "max_media_bytes", "media_url_allow")
_LANGUAGE = re.compile(r"^[a-z]{2,3}(_[A-Za-z0-9]{2,8})?$")


@dataclass(frozen=True, slots=True)
class WhatsAppConfig:
    """A validated ``[channels.whatsapp]`` section.

    ``repr`` hides the secrets so a logged config never leaks them.
    """

    phone_number_id: str
    access_token: str
    app_secret: str
    verify_token: str
    graph_url: str = DEFAULT_GRAPH_URL
    reengage_template: str | None = None
    template_language: str = "en_US"
    max_media_bytes: int = DEFAULT_MAX_MEDIA_BYTES
    media_url_allow: tuple[UrlPrefix, ...] = tuple(UrlPrefix.parse(p) for p in DEFAULT_MEDIA_URL_ALLOW)
    enabled: bool = True

    def __repr__(self) -> str:
        return (
            f"WhatsAppConfig(phone_number_id={self.phone_number_id!r}, graph_url={self.graph_url!r}, "
            f"reengage_template={self.reengage_template!r}, template_language={self.template_language!r}, "
            f"max_media_bytes={self.max_media_bytes}, "
            f"media_url_allow={[str(p) for p in self.media_url_allow]!r}, enabled={self.enabled})"
        )

    @classmethod
    def from_section(cls, section: Mapping[str, Any]) -> WhatsAppConfig:
        """Validate a raw section.

        Required keys are enforced only when the channel is enabled: a
        disabled section (as ``carebridge init`` writes it) may leave them out.

        :raises ConfigError: naming ``channels.whatsapp.<key>``.
        """
        if not isinstance(section, Mapping):
            raise ConfigError(f"{_PREFIX}: expected a table")
        unknown = sorted(set(section) - set(_REQUIRED) - set(_OPTIONAL))
        if unknown:
            raise ConfigError(f"{_PREFIX}.{unknown[0]}: unknown key (known: {', '.join(_REQUIRED + _OPTIONAL)})")
        enabled = section.get("enabled", True)
        if not isinstance(enabled, bool):
            raise ConfigError(f"{_PREFIX}.enabled: expected true or false")
        values = {key: _text(section, key, required=enabled) for key in _REQUIRED}
        phone_number_id = values["phone_number_id"]
        if phone_number_id and not phone_number_id.isdigit():
            raise ConfigError(f"{_PREFIX}.phone_number_id: expected the numeric id Meta shows, got {phone_number_id!r}")
        graph_url = (_text(section, "graph_url", required=False) or DEFAULT_GRAPH_URL).rstrip("/")
        parts = urlsplit(graph_url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ConfigError(f"{_PREFIX}.graph_url: expected an http(s) URL, got {graph_url!r}")
        language = _text(section, "template_language", required=False) or "en_US"
        if not _LANGUAGE.match(language):
            raise ConfigError(f"{_PREFIX}.template_language: expected a code like 'en_US' or 'de', got {language!r}")
        return cls(
            phone_number_id=phone_number_id,
            access_token=values["access_token"],
            app_secret=values["app_secret"],
            verify_token=values["verify_token"],
            graph_url=graph_url,
            reengage_template=_text(section, "reengage_template", required=False) or None,
            template_language=language,
            max_media_bytes=_max_media_bytes(section.get("max_media_bytes", DEFAULT_MAX_MEDIA_BYTES)),
            media_url_allow=_media_url_allow(section.get("media_url_allow", list(DEFAULT_MEDIA_URL_ALLOW))),
            enabled=enabled,
        )


def _text(section: Mapping[str, Any], key: str, *, required: bool) -> str:
    value = section.get(key)
    if value is None or value == "":
        if required:
            raise ConfigError(f"{_PREFIX}.{key}: required")
        return ""
    if key == "phone_number_id" and isinstance(value, int) and not isinstance(value, bool):
        return str(value)  # TOML users may write the id as a bare number
    if not isinstance(value, str):
        raise ConfigError(f"{_PREFIX}.{key}: expected a string, got {type(value).__name__}")
    return value.strip()


def _max_media_bytes(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ConfigError(f"{_PREFIX}.max_media_bytes: expected a positive number of bytes, got {value!r}")
    return value


def _media_url_allow(value: Any) -> tuple[UrlPrefix, ...]:
    key = f"{_PREFIX}.media_url_allow"
    if not isinstance(value, list):
        raise ConfigError(f"{key}: expected an array of URL prefixes such as ['https://lookaside.fbsbx.com/']")
    if not value:
        raise ConfigError(f"{key}: expected at least one URL prefix (media is downloaded only from these)")
    prefixes = []
    for index, item in enumerate(value):
        if not isinstance(item, str) or not item.strip():
            raise ConfigError(f"{key}[{index}]: expected a URL prefix string, got {item!r}")
        try:
            prefixes.append(UrlPrefix.parse(item))
        except ValueError as err:
            raise ConfigError(f"{key}[{index}]: {err}, got {item!r}") from None
    return tuple(prefixes)
