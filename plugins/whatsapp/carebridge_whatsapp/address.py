"""WhatsApp addresses: phone numbers in E.164, written ``+<digits>``.

The Cloud API names a customer by ``wa_id``, their number's digits without
``+``; Carebridge stores and shows the ``+`` form, which is also what agents
and operators type. Which form an address takes is WhatsApp's rule, so it
lives here and not in the core.
"""

from __future__ import annotations

import re

_E164 = re.compile(r"^\+?[1-9]\d{6,14}$")
# Separators people type inside numbers: spaces, dashes, dots, brackets.
_SEPARATORS = re.compile(r"[\s\-().]")


def normalize_e164(raw: str) -> str:
    """Return ``raw`` as ``+<digits>``; the ``+`` is optional on input.

    :raises ValueError: when it is not an E.164 number.
    """
    digits = _SEPARATORS.sub("", raw)
    if not _E164.match(digits):
        raise ValueError(f"not an E.164 phone number: {raw!r}")
    return "+" + digits.lstrip("+")
