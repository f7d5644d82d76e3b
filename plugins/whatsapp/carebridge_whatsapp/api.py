"""HTTP calls to the WhatsApp Cloud API and the mapping of its errors to ours.

Every request goes through the core's shared ``aiohttp.ClientSession`` with
the token in the ``Authorization`` header, never in a URL, so no logged URL
carries a secret. The token goes only to ``graph_url`` and to download URLs
under ``media_url_allow``: a media id must be a number before it becomes a
path, and media redirects are followed by hand, each hop checked
(``guards.py``). Decisions are taken on Meta's ``error.code`` (PROTOCOLS
§0.4, §2.8), not on the HTTP status, except that any 5xx is worth a retry.
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import aiohttp
from yarl import URL

from bridge import ChannelAuthFailed, DeliveryError, DeliveryUncertain, WindowClosedError
from carebridge_meta import GraphError

from .guards import UrlPrefix, allowed_url, is_media_id, url_host

# Throughput, pair and account rate limits, and Graph's "unknown"/"service" errors.
RETRYABLE_CODES = frozenset({130429, 131056, 80007, 4, 1, 2})
WINDOW_CLOSED = 131047
TOKEN_INVALID = 190
# Meta asks for about one message per 6 s to the same user after a pair-rate-limit refusal.
PAIR_RATE_LIMIT_WAIT = 6.0
_TIMEOUT = aiohttp.ClientTimeout(total=30)
_REDIRECTS = (301, 302, 303, 307, 308)
#: Redirect hops followed for one download, each checked against ``media_url_allow``.
MAX_REDIRECTS = 3


def error_for(graph: GraphError, retry_after: float | None = None) -> DeliveryError:
    """Map a Graph error answer to the typed error the core acts on."""
    code = str(graph.code) if graph.code is not None else f"http_{graph.status}"
    text = f"WhatsApp refused the message (HTTP {graph.status}, code {code}): {graph.message}"
    if graph.code == WINDOW_CLOSED:
        return WindowClosedError(text, code=code)
    if graph.code == TOKEN_INVALID:
        return ChannelAuthFailed(text, code=code)
    if graph.code in RETRYABLE_CODES or graph.status >= 500 or graph.status == 429:
        if retry_after is None and graph.code == 131056:
            retry_after = PAIR_RATE_LIMIT_WAIT
        return DeliveryError(text, retryable=True, code=code, retry_after=retry_after)
    return DeliveryError(text, retryable=False, code=code)


@dataclass(frozen=True, slots=True)
class MediaInfo:
    """What ``GET /{media_id}`` answers: a short-lived download URL and checks for the bytes."""

    url: str
    mime: str | None
    sha256: str | None
    size: int | None


class MediaTooLarge(Exception):
    """The media file is larger than ``max_media_bytes``; it will not be downloaded."""


class MediaGone(Exception):
    """The download URL no longer works (expired after its 5 minutes): ask for a new one."""


class MediaRefused(DeliveryError):
    """A media id or download URL we will not send the token to; never retried."""

    def __init__(self, message: str, code: str) -> None:
        super().__init__(message, retryable=False, code=code)


class CloudClient:
    """A thin client for the endpoints the channel uses: messages, media, phone number.

    :param media_url_allow: prefixes a download URL (and every redirect hop)
        must lie under to be fetched with the token.
    """

    def __init__(
        self,
        http: aiohttp.ClientSession,
        graph_url: str,
        phone_number_id: str,
        token: str,
        media_url_allow: Sequence[UrlPrefix] = (),
    ) -> None:
        self._http = http
        self._base = graph_url.rstrip("/")
        self._phone = phone_number_id
        self._headers = {"Authorization": f"Bearer {token}"}
        self._media_url_allow = tuple(media_url_allow)

    async def post_message(self, body: Mapping[str, Any]) -> dict[str, Any]:
        """POST ``{graph_url}/{phone_number_id}/messages``; return the JSON answer.

        :raises DeliveryError: (or a subclass) mapped from the error code; a
            network failure or timeout is retryable.
        :raises DeliveryUncertain: the request was written in full and the
            connection failed before the answer: Meta may have the message.
        """
        return await self._call("POST", f"{self._base}/{self._phone}/messages", json=body, may_act=True)

    async def phone_number(self) -> dict[str, Any]:
        """GET ``{graph_url}/{phone_number_id}``: proves the token and the number id.

        :raises DeliveryError: mapped as for sends (``ChannelAuthFailed`` on 190).
        """
        return await self._get_json(f"{self._base}/{self._phone}")

    async def media_info(self, media_id: str) -> MediaInfo:
        """GET ``{graph_url}/{media_id}`` for the short-lived download URL.

        :raises MediaRefused: the id is not a number; no request is made.
        :raises DeliveryError: mapped from the error answer or the network failure.
        """
        if not is_media_id(media_id):
            raise MediaRefused("the media id is not the number WhatsApp uses", code="bad_media_id")
        answer = await self._get_json(f"{self._base}/{media_id}", params={"phone_number_id": self._phone})
        url = answer.get("url")
        if not isinstance(url, str) or not url:
            raise DeliveryError("media answer carries no url", retryable=True, code="bad_media_answer")
        size = answer.get("file_size")
        try:
            size_int = int(size) if size is not None else None
        except (TypeError, ValueError):
            size_int = None
        sha = answer.get("sha256")
        return MediaInfo(
            url=url, mime=answer.get("mime_type"), sha256=sha if isinstance(sha, str) else None, size=size_int
        )

    async def download(self, info: MediaInfo, limit: int) -> bytes:
        """GET the media URL with the bearer token, streaming, refusing more than ``limit`` bytes.

        The URL and every redirect hop must lie under ``media_url_allow``;
        redirects are followed here, not by aiohttp, so the token is never
        sent to a hop that was not checked.

        :raises MediaRefused: the URL or a redirect leaves ``media_url_allow``; nothing is sent there.
        :raises MediaTooLarge: past ``limit`` (announced or counted).
        :raises MediaGone: 401/403/404: the URL expired; ask ``media_info`` again.
        :raises DeliveryError: other failures (retryable when a retry can help).
        """
        if info.size is not None and info.size > limit:
            raise MediaTooLarge(f"{info.size} bytes announced, limit {limit}")
        url = self._allowed(info.url)
        try:
            for _hop in range(MAX_REDIRECTS + 1):
                async with self._http.get(url, headers=self._headers, timeout=_TIMEOUT, allow_redirects=False) as resp:
                    if resp.status in _REDIRECTS:
                        location = resp.headers.get("Location")
                        if not location:
                            raise DeliveryError(
                                "media redirect without a Location", retryable=True, code="bad_redirect"
                            )
                        url = self._allowed(_join(url, location))
                        continue
                    data = await _read_media(resp, limit)
                    break
            else:
                raise DeliveryError("too many media redirects", retryable=False, code="too_many_redirects")
        except (TimeoutError, aiohttp.ClientError) as err:
            raise DeliveryError(f"media download failed: {type(err).__name__}", retryable=True, code="network") from err
        if info.sha256 and not sha256_matches(data, info.sha256):
            raise DeliveryError("media sha256 does not match", retryable=True, code="sha256_mismatch")
        return data

    def _allowed(self, text: str) -> URL:
        url = allowed_url(text, self._media_url_allow)
        if url is None:
            raise MediaRefused(
                f"media URL on host {url_host(text)} is not under channels.whatsapp.media_url_allow; not fetched",
                code="media_url_refused",
            )
        return url

    async def _get_json(self, url: str, params: Mapping[str, str] | None = None) -> dict[str, Any]:
        return await self._call("GET", url, params=params)

    async def _call(self, method: str, url: str, *, may_act: bool = False, **kwargs: Any) -> dict[str, Any]:
        """One Graph call: its JSON answer, or the typed error its error code calls for.

        :param may_act: the call changes something at Meta (a send): a
            connection lost after the whole request was written is then
            ``DeliveryUncertain``, not a plain retryable failure.
        """
        tracker = aiohttp.UploadTracker()
        try:
            async with self._http.request(
                method, url, headers=self._headers, timeout=_TIMEOUT, upload_tracker=tracker, **kwargs
            ) as resp:
                answer = await _json_or_none(resp)
                if resp.status >= 300:
                    raise error_for(GraphError.from_response(resp.status, answer), _retry_after(resp))
        except (TimeoutError, aiohttp.ClientError) as err:
            if may_act and _written(tracker):
                raise DeliveryUncertain(
                    f"WhatsApp API answer lost after the request was sent: {type(err).__name__}", confirmable=True
                ) from err
            raise DeliveryError(
                f"WhatsApp API unreachable: {type(err).__name__}", retryable=True, code="network"
            ) from err
        return answer if isinstance(answer, dict) else {}


def _written(tracker: aiohttp.UploadTracker) -> bool:
    """Whether the whole request body reached the connection (so Meta may have acted on it)."""
    done = tracker.upload_complete
    return done.done() and not done.cancelled() and done.exception() is None


def sha256_matches(data: bytes, expected: str) -> bool:
    """Compare with the announced digest, which Meta gives as hex or base64 depending on the endpoint."""
    digest = hashlib.sha256(data)
    return (
        expected.strip().lower() == digest.hexdigest() or expected.strip() == base64.b64encode(digest.digest()).decode()
    )


def _join(base: URL, location: str) -> str:
    """The absolute target of a redirect; an unreadable Location becomes one no prefix covers."""
    try:
        return str(base.join(URL(location)))
    except (ValueError, TypeError):
        return ""


async def _read_media(resp: aiohttp.ClientResponse, limit: int) -> bytes:
    """The body of a final (non-redirect) media answer, mapped to our errors."""
    if resp.status in (401, 403, 404):
        raise MediaGone(f"HTTP {resp.status}")
    if resp.status >= 300:
        raise error_for(GraphError.from_response(resp.status, await _json_or_none(resp)))
    if resp.content_length is not None and resp.content_length > limit:
        raise MediaTooLarge(f"{resp.content_length} bytes sent, limit {limit}")
    data = bytearray()
    async for chunk in resp.content.iter_chunked(64 * 1024):
        data.extend(chunk)
        if len(data) > limit:
            raise MediaTooLarge(f"more than {limit} bytes")
    return bytes(data)


async def _json_or_none(resp: aiohttp.ClientResponse) -> Any:
    try:
        return json.loads(await resp.read())
    except (UnicodeDecodeError, json.JSONDecodeError):
        return None


def _retry_after(resp: aiohttp.ClientResponse) -> float | None:
    value = resp.headers.get("Retry-After")
    try:
        return max(0.0, float(value)) if value else None
    except ValueError:
        return None
