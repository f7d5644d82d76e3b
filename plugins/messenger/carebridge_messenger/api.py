"""The Messenger Send API client, its text limit and the meaning of its errors.

The client, the error codes and their meaning are Meta's and shared with
Instagram (``carebridge_meta.send_api``). What is Messenger's: the Page
token travels as the ``access_token`` query parameter, as every official
Send API example shows (PROTOCOLS §1.4; the Authorization header is
unconfirmed for this endpoint), and the echo of every send names its
delivery (``webhook.send_metadata``), so an answer lost after Meta took the
message is settled by that echo rather than by a blind resend.
"""

from __future__ import annotations

from bridge import DeliveryError
from carebridge_meta import GraphError, SendApiClient, classify_refusal

#: Longest text one Messenger message may carry (Send API ``message.text``).
MAX_TEXT = 2000
PLATFORM = "Messenger"


class GraphClient(SendApiClient):
    """Post to ``{graph_url}/{page_id}/messages?access_token=…`` with the Page token."""

    platform = PLATFORM
    token_in = "query"
    confirmed_by_echo = True


def classify(error: GraphError, retry_after: float | None = None) -> DeliveryError:
    """Return the error the core should see for a Messenger refusal (``classify_refusal``)."""
    return classify_refusal(error, retry_after, platform=PLATFORM)
