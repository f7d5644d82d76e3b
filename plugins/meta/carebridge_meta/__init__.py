"""Meta's platform rules, shared by the Messenger, Instagram and WhatsApp channels.

The webhook handshake, the ``X-Hub-Signature-256`` scheme and the Graph error
envelope are the same on all three platforms; Messenger and Instagram share
much more (the Send API, the ``entry[].messaging[]`` webhook shape, the
config section's shape and the reply window), so their channel is written
once here too, for each plugin to subclass with its platform's differences.
Everything is built on the public ``bridge`` API. This distribution is a
library, not a plugin: it registers no hooks.
"""

from __future__ import annotations

from .graph_errors import GraphError
from .handshake import verify_subscription
from .messaging import (
    Batch,
    MessagingParser,
    PayloadError,
    attachment_items,
    epoch_seconds,
    media_attachment,
    message_text,
    safe_kind,
    str_or_none,
)
from .messaging_channel import HUMAN_AGENT_WINDOW, STANDARD_WINDOW, MessagingChannel
from .messaging_config import MessagingConfig, messaging_schema
from .send_api import SendApiClient, classify_refusal
from .signatures import (
    SIGNATURE_HEADER,
    read_signed_json,
    sign,
    signature_ok,
    signed_body,
)

__all__ = [
    "HUMAN_AGENT_WINDOW",
    "SIGNATURE_HEADER",
    "STANDARD_WINDOW",
    "Batch",
    "GraphError",
    "MessagingChannel",
    "MessagingConfig",
    "MessagingParser",
    "PayloadError",
    "SendApiClient",
    "attachment_items",
    "classify_refusal",
    "epoch_seconds",
    "media_attachment",
    "message_text",
    "messaging_schema",
    "read_signed_json",
    "safe_kind",
    "sign",
    "signature_ok",
    "signed_body",
    "str_or_none",
    "verify_subscription",
]
