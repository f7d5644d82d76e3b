"""What from outside may reach a URL we call with the access token.

Two values the daemon does not choose end up in requests that carry the
bearer token: the media id of a webhook (it becomes a Graph path) and the
download URL Graph answers with. A media id is a decimal number in every
answer and example of the Cloud API (``"id": "2621233374848975"``), so
anything else is refused before a request is made: an id such as
``../../me/accounts?fields=access_token#`` would otherwise turn the media
lookup into a call to another Graph endpoint. A download URL is fetched
only when it lies under one of the configured ``media_url_allow`` prefixes,
compared as parsed URLs (scheme, host, port, then path), never as text.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from yarl import URL

#: Hosts allowed plain http in ``media_url_allow``: the local fakes of the tests.
LOCAL_HOSTS = frozenset({"127.0.0.1", "localhost"})
_MEDIA_ID = re.compile(r"[0-9]{1,64}")


def is_media_id(value: object) -> bool:
    """True for a media id as Meta writes it: ASCII digits only."""
    return isinstance(value, str) and _MEDIA_ID.fullmatch(value) is not None


@dataclass(frozen=True, slots=True)
class UrlPrefix:
    """One ``media_url_allow`` entry, parsed: a URL is under it when all four parts agree."""

    scheme: str
    host: str
    port: int | None
    path: str

    @classmethod
    def parse(cls, text: str) -> UrlPrefix:
        """Parse an absolute https URL prefix (http only for 127.0.0.1 and localhost).

        :raises ValueError: saying what is wrong, for the caller to prefix with the key.
        """
        try:
            url = URL(text.strip())
        except (ValueError, TypeError) as err:
            raise ValueError(f"not a URL ({err})") from None
        if not url.absolute or not url.host:
            raise ValueError("expected an absolute URL such as 'https://lookaside.fbsbx.com/'")
        if url.scheme != "https" and not (url.scheme == "http" and url.host in LOCAL_HOSTS):
            raise ValueError("expected an https URL (http only for 127.0.0.1 or localhost)")
        if url.user is not None or url.password is not None:
            raise ValueError("a URL prefix must not carry a user name or password")
        if url.raw_query_string or url.raw_fragment:
            raise ValueError("a URL prefix must not have a query or fragment")
        return cls(scheme=url.scheme, host=url.host, port=url.port, path=url.path or "/")

    def covers(self, url: URL) -> bool:
        """Whether ``url`` (already parsed, so ``..`` is resolved) lies under this prefix."""
        return (
            url.scheme == self.scheme
            and url.host == self.host
            and url.port == self.port
            and url.user is None
            and url.password is None
            and url.path.startswith(self.path)
        )

    def __str__(self) -> str:
        return str(URL.build(scheme=self.scheme, host=self.host, port=self.port, path=self.path))


def allowed_url(text: str, prefixes: Sequence[UrlPrefix]) -> URL | None:
    """The parsed URL when it lies under one of ``prefixes``, else None.

    The caller fetches the returned object itself, so what was checked is
    exactly what is requested.
    """
    try:
        url = URL(text)
    except (ValueError, TypeError):
        return None
    if not url.absolute:
        return None
    return url if any(prefix.covers(url) for prefix in prefixes) else None


def url_host(text: str) -> str:
    """The host of ``text`` for a log line; the whole URL is never logged."""
    try:
        return URL(text).host or "?"
    except (ValueError, TypeError):
        return "?"
