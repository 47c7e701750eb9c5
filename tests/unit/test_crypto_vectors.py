"""Known-answer vectors for the stored key format: a change to the key id, the associated data or
the encoding would orphan every stored API key, so each is pinned to exact bytes here."""

from __future__ import annotations

import base64
import hashlib

import pytest

from llm_service.security import crypto
from llm_service.security.crypto import Keyring, KeyUnreadable, generate_key_hex, key_id

KEY = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f"
OTHER = "ff" * 32
NONCE = bytes(range(12))
# AES-256-GCM of "sk-known-answer" under KEY and NONCE, associated data
# "llm-service/api-key/v1/7/openai": computed once, never to change.
VECTOR = "v1.630dcd29.AAECAwQFBgcICQoLNGn7cKuKtXWgIPn4xowKxTSLs2P1Ci_TxpgcRgT2yw"


def test_key_id_is_the_first_8_hex_of_sha256() -> None:
    raw = bytes.fromhex(KEY)
    assert key_id(raw) == "630dcd29"
    assert key_id(raw) == hashlib.sha256(raw).hexdigest()[:8]
    assert Keyring.from_hex(KEY).current_id == "630dcd29"


def test_encryption_with_a_fixed_nonce_gives_the_exact_stored_string(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(crypto.os, "urandom", lambda n: NONCE[:n])
    stored = Keyring.from_hex(KEY).encrypt("sk-known-answer", user_id=7, provider="openai")
    assert stored == VECTOR


def test_a_token_ending_in_any_base64_character_is_kept_whole(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Only "=" padding is stripped: this value's last character is an "X".
    monkeypatch.setattr(crypto.os, "urandom", lambda n: NONCE[:n])
    stored = Keyring.from_hex(KEY).encrypt("sk-34", user_id=7, provider="openai")
    assert stored == "v1.630dcd29.AAECAwQFBgcICQoLNGn7KPFsEFSATpK6QvCRG4ocpuaX"


def test_rotation_reads_the_key_id_field_only() -> None:
    ring = Keyring.from_hex(KEY)
    assert not ring.needs_rotation("v1.630dcd29.AAAA.BBBB")
    assert ring.needs_rotation("v1.00000000.630dcd29.BBBB")


def test_the_vector_decrypts_to_its_plaintext() -> None:
    ring = Keyring.from_hex(KEY)
    assert ring.decrypt(VECTOR, user_id=7, provider="openai") == "sk-known-answer"
    assert not ring.needs_rotation(VECTOR)


def test_the_associated_data_binds_user_and_provider() -> None:
    raw = bytes.fromhex(KEY)
    blob = base64.urlsafe_b64decode(VECTOR.rsplit(".", 1)[1] + "==")
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    plain = AESGCM(raw).decrypt(blob[:12], blob[12:], b"llm-service/api-key/v1/7/openai")
    assert plain == b"sk-known-answer"


@pytest.mark.parametrize("plaintext", [*("k" * n for n in range(13)), "sk-ü-€-𝄞"])
def test_every_padding_length_round_trips(plaintext: str) -> None:
    ring = Keyring.from_hex(KEY)
    stored = ring.encrypt(plaintext, user_id=1, provider="claude")
    assert "=" not in stored
    assert ring.decrypt(stored, user_id=1, provider="claude") == plaintext


def test_previous_key_order_does_not_change_the_current_key() -> None:
    ring = Keyring.from_hex(KEY, [OTHER, KEY])
    assert ring.current_id == "630dcd29"
    old = Keyring.from_hex(OTHER).encrypt("old", user_id=1, provider="qwen")
    assert ring.decrypt(old, user_id=1, provider="qwen") == "old"
    assert ring.needs_rotation(old)
    assert ring.encrypt("x", user_id=1, provider="qwen").startswith("v1.630dcd29.")


@pytest.mark.parametrize(
    ("stored", "reason"),
    [
        ("v2.630dcd29." + VECTOR.rsplit(".", 1)[1], "unknown format version"),
        ("v1.630dcd29." + base64.urlsafe_b64encode(b"\0" * 12).decode(), "value too short"),
        ("v1.00000000.AAAA", "KeyError"),
        ("v1.630dcd29", "ValueError"),
        (VECTOR[:-2] + ("AA" if VECTOR[-2:] != "AA" else "BB"), "InvalidTag"),
    ],
)
def test_failures_name_their_reason_and_hide_the_cause(stored: str, reason: str) -> None:
    with pytest.raises(KeyUnreadable) as caught:
        Keyring.from_hex(KEY).decrypt(stored, user_id=7, provider="openai")
    assert str(caught.value) == reason
    error = caught.value  # no chained exception that a log would print with its details
    assert error.__cause__ is None and (error.__context__ is None or error.__suppress_context__)


def test_a_value_that_is_not_utf8_is_unreadable() -> None:
    ring = Keyring.from_hex(KEY)
    sealed = ring._ciphers[ring.current_id].encrypt(
        NONCE, b"\xff\xfe", b"llm-service/api-key/v1/7/openai"
    )
    token = base64.urlsafe_b64encode(NONCE + sealed).decode().rstrip("=")
    with pytest.raises(KeyUnreadable, match="UnicodeDecodeError"):
        ring.decrypt(f"v1.630dcd29.{token}", user_id=7, provider="openai")


@pytest.mark.parametrize("stored", ["", "v1", "plain-text-key"])
def test_values_without_a_key_id_need_rotation(stored: str) -> None:
    assert Keyring.from_hex(KEY).needs_rotation(stored)


def test_a_bad_key_length_says_what_is_expected() -> None:
    expected = r"^encryption keys must be 32 bytes \(64 hex characters\)$"
    with pytest.raises(ValueError, match=expected):
        Keyring.from_hex("00" * 16)
    with pytest.raises(ValueError, match="32 bytes"):
        Keyring.from_hex(KEY, ["00" * 31])


def test_generated_keys_are_32_random_bytes() -> None:
    keys = {generate_key_hex() for _ in range(20)}
    assert len(keys) == 20
    assert all(len(bytes.fromhex(k)) == 32 for k in keys)
