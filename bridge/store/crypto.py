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

_SHA256_BLOCK = 64
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


_NONCE_POOL = 256
_nonces: list[bytes] = []


def _nonce() -> bytes:
    """A fresh random 96-bit nonce, taken from a pool refilled 256 at a time from os.urandom.

    One getrandom() call per 256 seals instead of one per seal (the store seals
    two or three cells per message). ``list.pop`` is atomic, so no two threads
    ever get the same nonce; a forked child starts with an empty pool.
    """
    try:
        return _nonces.pop()
    except IndexError:
        pool = os.urandom(NONCE_BYTES * _NONCE_POOL)
        _nonces.extend([pool[i : i + NONCE_BYTES] for i in range(0, len(pool), NONCE_BYTES)])
        return _nonces.pop()


os.register_at_fork(after_in_child=_nonces.clear)


def seal(aead: AESGCM, associated: bytes, plaintext: bytes) -> bytes:
    """Encrypt ``plaintext`` with a random nonce; the version byte is authenticated too."""
    nonce = _nonce()
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
    """HMAC-SHA256 over ``kind NUL normalized value``, truncated to 128 bits.

    The HMAC's keyed inner and outer SHA-256 states are computed once and
    copied per call (RFC 2104, exactly what ``hmac.digest`` computes), which
    halves the cost of an index on the webhook path.
    """

    def __init__(self, key: bytes) -> None:
        if len(key) > _SHA256_BLOCK:
            key = hashlib.sha256(key).digest()
        key = key.ljust(_SHA256_BLOCK, b"\0")
        self._inner = hashlib.sha256(bytes(b ^ 0x36 for b in key))
        self._outer = hashlib.sha256(bytes(b ^ 0x5C for b in key))

    def __call__(self, kind: str, value: str) -> bytes:
        inner = self._inner.copy()
        inner.update(f"{kind}\0{normalize(kind, value)}".encode())
        outer = self._outer.copy()
        outer.update(inner.digest())
        return outer.digest()[:BLIND_BYTES]


def chain_hash(key: bytes, prev_hash: bytes, record: bytes) -> bytes:
    """One link of the audit hash chain: HMAC(key, prev_hash || record)."""
    return hmac.new(key, prev_hash + record, hashlib.sha256).digest()
