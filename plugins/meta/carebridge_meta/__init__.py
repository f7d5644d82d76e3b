"""Meta's platform rules, shared by the Messenger and WhatsApp channels.

The webhook handshake, the ``X-Hub-Signature-256`` scheme and the Graph error
envelope are the same on both platforms; they are written once here, on top
of the public ``bridge`` API. What either platform's payloads mean stays in
its own plugin. This distribution is a library, not a plugin: it registers
no hooks.
"""

from __future__ import annotations

from .graph_errors import GraphError
from .handshake import verify_subscription
from .signatures import (
    SIGNATURE_HEADER,
    read_signed_json,
    sign,
    signature_ok,
    signed_body,
)

__all__ = [
    "SIGNATURE_HEADER",
    "GraphError",
    "read_signed_json",
    "sign",
    "signature_ok",
    "signed_body",
    "verify_subscription",
]
