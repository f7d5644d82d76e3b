"""Envelope encryption primitives: AES-256-GCM blobs, key wrapping, blind indexes.

Every ciphertext in the store is ``version byte || 96-bit nonce || GCM output``
and is bound, through the associated data, to the table, column and row it
belongs to (``"messages.body.42"``): a ciphertext copied to another row or
column fails to decrypt. Data keys (one per contact, per agent, one for the
system) are wrapped the same way by the master key with the associated data
``"keys.wrapped.<key id>"``. Lookups use a keyed HMAC ("blind index") so the
database never needs a plaintext phone number, email or platform id.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import unicodedata

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

VERSION = 1
_VERSION_BYTE = bytes([VERSION])
NONCE_BYTES = 12
OVERHEAD = 1 + NONCE_BYTES + 16
BLIND_BYTES = 16

BLIND_INFO = b"carebridge blind index v1"
AUDIT_INFO = b"carebridge audit chain v1"


class DecryptError(Exception):
    """A blob failed authentication; callers turn it into ``IntegrityError`` with context."""


def aad(table: str, column: str, row_id: object) -> bytes:
    """The associated data binding a ciphertext to one cell."""
    return f"{table}.{column}.{row_id}".encode()


def new_data_key() -> bytes:
    """A fresh random 256-bit data key."""
    return AESGCM.generate_key(bit_length=256)


def cipher(key: bytes) -> AESGCM:
    """An AES-256-GCM object for ``key`` (build once per key, reuse)."""
    return AESGCM(key)


def seal(aead: AESGCM, associated: bytes, plaintext: bytes) -> bytes:
    """Encrypt ``plaintext`` with a random nonce; the version byte is authenticated too."""
    nonce = os.urandom(NONCE_BYTES)
    return _VERSION_BYTE + nonce + aead.encrypt(nonce, plaintext, _VERSION_BYTE + associated)


def open_blob(aead: AESGCM, associated: bytes, blob: bytes) -> bytes:
    """Decrypt a blob made by :func:`seal`.

    :raises DecryptError: when the blob is malformed, of an unknown version,
        tampered with, moved to another cell, or sealed under another key.
    """
    if not isinstance(blob, (bytes, bytearray, memoryview)) or len(blob) < OVERHEAD:
        raise DecryptError("ciphertext too short")
    blob = bytes(blob)
    if blob[0] != VERSION:
        raise DecryptError(f"unknown ciphertext version {blob[0]}")
    try:
        return aead.decrypt(blob[1 : 1 + NONCE_BYTES], blob[1 + NONCE_BYTES :], _VERSION_BYTE + associated)
    except InvalidTag as err:
        raise DecryptError("authentication failed") from err


def derive(root: bytes, info: bytes) -> bytes:
    """Derive a 32-byte sub-key from ``root`` with HKDF-SHA256."""
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=info).derive(root)


def normalize(kind: str, value: str) -> str:
    """Normalize a looked-up value: NFC, trimmed; email addresses case-folded.

    Platform ids are case-sensitive (WhatsApp message ids are base64), so only
    email addresses are folded; callers normalize phone numbers to E.164 first.
    """
    value = value.strip()
    if not value.isascii():
        value = unicodedata.normalize("NFC", value)
    if kind == "email" or kind.endswith(":email"):
        value = value.casefold()
    return value


class BlindIndex:
    """HMAC-SHA256 over ``kind NUL normalized value``, truncated to 128 bits."""

    def __init__(self, key: bytes) -> None:
        self._key = key

    def __call__(self, kind: str, value: str) -> bytes:
        message = f"{kind}\0{normalize(kind, value)}".encode()
        return hmac.digest(self._key, message, "sha256")[:BLIND_BYTES]


def chain_hash(key: bytes, prev_hash: bytes, record: bytes) -> bytes:
    """One link of the audit hash chain: HMAC(key, prev_hash || record)."""
    return hmac.new(key, prev_hash + record, hashlib.sha256).digest()
