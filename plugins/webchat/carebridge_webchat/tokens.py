"""Chat tokens and the addresses derived from them.

A customer's browser keeps one random token (256 bits, ``secrets``); the
bridge keeps no copy of it at all. Their address, ``webchat:<id>``, is a
one-way hash of the token: every request recomputes it, so there is no
token table to steal or to lose, and the address an agent sees, an export
prints or the store holds (sealed, blind-indexed like any address) does not
lead back to the token.

Why a plain domain-separated SHA-256 and not an HMAC under a key: a keyed
hash only helps when tokens could be guessed and tried offline against
known addresses; 256 random bits cannot be. A key would be one more secret
the operator must keep, whose loss would cut every customer off their
conversation, for no gain. Any well-formed token is a chat: a client that
makes one up instead of asking ``/session`` gains nothing it could not ask
for, and the rate limits apply to it all the same.
"""

from __future__ import annotations

import hashlib
import re
import secrets

TOKEN_BYTES = 32
#: What ``new_token`` makes: 43 characters of the URL-safe base64 alphabet.
_TOKEN = re.compile(r"^[A-Za-z0-9_-]{43}$")
_ADDRESS = re.compile(r"^[0-9a-f]{32}$")
_DOMAIN = b"carebridge-webchat-address\x00"


def new_token() -> str:
    """A fresh chat token."""
    return secrets.token_urlsafe(TOKEN_BYTES)


def address_of(token: str) -> str | None:
    """The chat's address id (32 hex digits) for ``token``, or None for something that is no token."""
    if not _TOKEN.match(token):
        return None
    return hashlib.sha256(_DOMAIN + token.encode("ascii")).hexdigest()[:32]


def is_address(text: str) -> bool:
    """Whether ``text`` has the form of an address id."""
    return bool(_ADDRESS.match(text))


def bearer(header: str) -> str:
    """The credential of an ``Authorization: Bearer ...`` header ("" when there is none)."""
    scheme, _, credential = header.strip().partition(" ")
    return credential.strip() if scheme.lower() == "bearer" else ""
