"""The Graph API error envelope that both Messenger and WhatsApp answer with.

``{"error": {"message", "type", "code", "error_subcode", "error_data", ...}}``.
Meta asks clients to decide on ``code`` (and ``error_subcode``), not on the
HTTP status or the titles; each plugin maps codes to the core's errors.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class GraphError:
    """The Graph API error envelope, reduced to what decisions need.

    :param status: the HTTP status of the answer.
    :param code: ``error.code``; None when the body is no Graph envelope.
    :param subcode: ``error.error_subcode``.
    :param message: ``error.message`` (or ``error_user_msg``, or ``HTTP <status>``).
    :param details: WhatsApp's ``error.error_data.details``.
    """

    status: int
    code: int | None
    subcode: int | None
    message: str
    details: str | None = None

    @classmethod
    def from_response(cls, status: int, body: Any) -> GraphError:
        """Read ``{"error": {...}}``; anything else keeps the HTTP status only."""
        error = body.get("error") if isinstance(body, dict) else None
        if not isinstance(error, dict):
            return cls(status=status, code=None, subcode=None, message=f"HTTP {status}")
        data = error.get("error_data")
        details = data.get("details") if isinstance(data, dict) else None
        return cls(
            status=status,
            code=_int_or_none(error.get("code")),
            subcode=_int_or_none(error.get("error_subcode")),
            message=str(error.get("message") or error.get("error_user_msg") or f"HTTP {status}"),
            details=str(details) if details else None,
        )


def _int_or_none(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None
