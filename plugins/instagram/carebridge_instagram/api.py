"""The Instagram messaging API client, its text limit and the meaning of its errors.

The client, the error codes and their meaning are Meta's and shared with
Messenger (``carebridge_meta.send_api``). What is Instagram's: the
Instagram User access token travels as an ``Authorization: Bearer`` header,
as the Instagram API with Instagram Login's examples show, so it is never
part of a URL; a text must keep to both of Meta's limits; and the echoes of
our sends name no delivery, so an answer lost in transit is retried like
any network failure.
"""

from __future__ import annotations

from bridge import DeliveryError, split_text
from carebridge_meta import GraphError, SendApiClient, classify_refusal

#: Longest text one Instagram message may carry: Meta's pages say both "less than 1000
#: characters" and "UTF-8 and 1000 bytes or less", so every part keeps to both limits.
MAX_TEXT = 1000
MAX_BYTES = 1000
PLATFORM = "Instagram"


def split_message(text: str, limit: int = MAX_TEXT, max_bytes: int = MAX_BYTES) -> list[str]:
    """Split ``text`` into parts of at most ``limit`` characters and ``max_bytes`` UTF-8 bytes, in order.

    Cuts at word boundaries (``bridge.split_text``). A part short enough in
    characters but too long in bytes (emoji, non-Latin scripts) is split again
    with as many characters as its first ``max_bytes`` bytes hold; that count
    is below the part's length, so every round makes progress.
    """
    parts: list[str] = []
    for part in split_text(text, limit):
        encoded = part.encode("utf-8")
        if len(encoded) <= max_bytes:
            parts.append(part)
            continue
        fitting = len(encoded[:max_bytes].decode("utf-8", "ignore"))
        parts.extend(split_message(part, max(1, fitting), max_bytes))
    return parts


class GraphClient(SendApiClient):
    """Post to ``{graph_url}/{ig_user_id}/messages`` with the Instagram User access token as a Bearer header."""

    platform = PLATFORM
    api = "Instagram API"
    token_in = "header"


def classify(error: GraphError, retry_after: float | None = None) -> DeliveryError:
    """Return the error the core should see for an Instagram refusal (``classify_refusal``)."""
    return classify_refusal(error, retry_after, platform=PLATFORM)
