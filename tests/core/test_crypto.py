"""AES-GCM blobs, associated-data binding, blind indexes and key files."""

from __future__ import annotations

import base64
import hmac
import os
import stat

import pytest

from bridge.errors import ConfigError, StoreError
from bridge.store import crypto
from bridge.store.keyfile import (
    decode_key,
    generate_key,
    load_master_key,
    write_key_file,
)


def test_seal_roundtrip_and_layout() -> None:
    aead = crypto.cipher(crypto.new_data_key())
    blob = crypto.seal(aead, crypto.aad("messages", "body", 7), b"hello")
    assert blob[0] == crypto.VERSION
    assert len(blob) == len(b"hello") + crypto.OVERHEAD
    assert crypto.open_blob(aead, b"messages.body.7", blob) == b"hello"
    # a random nonce each time: the same text never gives the same blob
    assert crypto.seal(aead, b"x", b"hello") != crypto.seal(aead, b"x", b"hello")


@pytest.mark.parametrize("other", [b"messages.body.8", b"messages.meta.7", b"contacts.body.7"])
def test_blob_is_bound_to_its_cell(other: bytes) -> None:
    aead = crypto.cipher(crypto.new_data_key())
    blob = crypto.seal(aead, b"messages.body.7", b"hello")
    with pytest.raises(crypto.DecryptError):
        crypto.open_blob(aead, other, blob)


def test_tampered_wrong_key_and_unknown_version_fail() -> None:
    aead = crypto.cipher(crypto.new_data_key())
    blob = bytearray(crypto.seal(aead, b"a", b"hello"))
    flipped = bytes(blob[:-1]) + bytes([blob[-1] ^ 1])
    for bad in (flipped, bytes([2]) + bytes(blob[1:]), bytes(blob[:10])):
        with pytest.raises(crypto.DecryptError):
            crypto.open_blob(aead, b"a", bad)
    with pytest.raises(crypto.DecryptError):
        crypto.open_blob(crypto.cipher(crypto.new_data_key()), b"a", bytes(blob))


def test_blind_index_is_keyed_and_normalized() -> None:
    index = crypto.BlindIndex(b"k" * 32)
    other = crypto.BlindIndex(b"j" * 32)
    assert index("email", "Ann@Example.org ") == index("email", "ann@example.org")
    assert len(index("email", "ann@example.org")) == crypto.BLIND_BYTES
    # platform ids stay case-sensitive; kinds are separate namespaces
    assert index("message:whatsapp", "wamid.AbC") != index("message:whatsapp", "wamid.abc")
    assert index("contact:whatsapp", "+31612345678") != index("contact:messenger", "+31612345678")
    assert index("email", "ann@example.org") != other("email", "ann@example.org")


@pytest.mark.parametrize("key", [b"k" * 32, bytes(range(64)), b"long key " * 10])
def test_blind_index_is_standard_hmac_sha256(key) -> None:
    """Stored indexes stay findable: the precomputed-state HMAC equals hmac.digest."""
    index = crypto.BlindIndex(key)
    for kind, value in (("email", "ann@example.org"), ("message:whatsapp", "wamid.ÄbC=="), ("contact:x", "")):
        message = f"{kind}\0{crypto.normalize(kind, value)}".encode()
        assert index(kind, value) == hmac.digest(key, message, "sha256")[: crypto.BLIND_BYTES]


def test_nonces_never_repeat_across_pool_refills() -> None:
    aead = crypto.cipher(crypto.new_data_key())
    nonces = {crypto.seal(aead, b"a", b"x")[1 : 1 + crypto.NONCE_BYTES] for _ in range(3 * 256 + 7)}
    assert len(nonces) == 3 * 256 + 7


def test_key_file_written_atomically_with_mode_0600(tmp_path) -> None:
    key = generate_key()
    old = os.umask(0)
    try:
        path = write_key_file(tmp_path / "k" / "master.key", key)
    finally:
        os.umask(old)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    text = path.read_text()
    assert text.endswith("\n") and text.count("\n") == 1
    assert base64.b64decode(text) == key
    assert load_master_key(f"file:{path}") == key
    assert [p.name for p in path.parent.iterdir()] == ["master.key"]  # no temp file left
    with pytest.raises(StoreError, match="already exists"):
        write_key_file(path, key, exclusive=True)


def test_key_references(tmp_path, monkeypatch) -> None:
    key = generate_key()
    text = base64.b64encode(key).decode()
    monkeypatch.setenv("CB_KEY", text)
    assert load_master_key("env:CB_KEY") == key
    (tmp_path / "carebridge-key").write_text(text + "\n")
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(tmp_path))
    assert load_master_key("credential:carebridge-key") == key


@pytest.mark.parametrize(
    ("ref", "error", "message"),
    [
        ("env:CB_UNSET_KEY", StoreError, "CB_UNSET_KEY is not set"),
        ("file:/nonexistent/master.key", StoreError, "master key /nonexistent/master.key not found"),
        ("credential:nothere", StoreError, "credential nothere not found"),
        ("plain-text-key", ConfigError, "store.key: expected file:PATH"),
        ("vault:x", ConfigError, "store.key"),
    ],
)
def test_key_reference_errors(ref, error, message, tmp_path, monkeypatch) -> None:
    monkeypatch.delenv("CB_UNSET_KEY", raising=False)
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(tmp_path))
    with pytest.raises(error, match=message):
        load_master_key(ref)


def test_malformed_key_text() -> None:
    with pytest.raises(StoreError, match="not base64"):
        decode_key("not base64 !!", "test")
    with pytest.raises(StoreError, match="32 bytes"):
        decode_key(base64.b64encode(b"short").decode(), "test")
