"""AES-256-GCM key encryption: round trip, tamper, swap, keyring, rotation."""

from __future__ import annotations

import base64

import pytest

from llm_service.security.crypto import Keyring, KeyUnreadable, generate_key_hex, key_id

OLD, NEW = generate_key_hex(), generate_key_hex()
SECRET = "sk-proj-the-real-key-0123456789"


def sealed(ring: Keyring, user_id: int = 1, provider: str = "openai") -> str:
    return ring.encrypt(SECRET, user_id=user_id, provider=provider)


def test_round_trip() -> None:
    ring = Keyring.from_hex(NEW)
    assert ring.decrypt(sealed(ring), user_id=1, provider="openai") == SECRET


def test_stored_format_names_version_and_key() -> None:
    ring = Keyring.from_hex(NEW)
    version, kid, token = sealed(ring).split(".")
    assert (version, kid) == ("v1", key_id(bytes.fromhex(NEW)))
    blob = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
    assert len(blob) == 12 + len(SECRET) + 16  # nonce + ciphertext + tag
    assert SECRET.encode() not in blob


def test_each_encryption_uses_a_fresh_nonce() -> None:
    ring = Keyring.from_hex(NEW)
    values = {sealed(ring) for _ in range(50)}
    assert len(values) == 50


def test_every_flipped_byte_fails_closed() -> None:
    ring = Keyring.from_hex(NEW)
    value = sealed(ring)
    prefix, token = value.rsplit(".", 1)
    blob = bytearray(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
    for i in range(len(blob)):
        for bit in (0x01, 0x80):
            broken = bytearray(blob)
            broken[i] ^= bit
            tampered = f"{prefix}.{base64.urlsafe_b64encode(bytes(broken)).decode().rstrip('=')}"
            with pytest.raises(KeyUnreadable):
                ring.decrypt(tampered, user_id=1, provider="openai")


@pytest.mark.parametrize(("user_id", "provider"), [(2, "openai"), (1, "claude"), (11, "openai")])
def test_value_moved_to_another_row_fails(user_id: int, provider: str) -> None:
    ring = Keyring.from_hex(NEW)
    with pytest.raises(KeyUnreadable):
        ring.decrypt(sealed(ring), user_id=user_id, provider=provider)


@pytest.mark.parametrize(
    "value", ["", "v1", "v1..", "v2.abcdef01.AAAA", "v1.00000000.AAAA", "plain-text-key",
              "v1.{kid}.", "v1.{kid}.!!!", "v1.{kid}.AAAAAAAAAAAAAAAA"]
)
def test_malformed_values_fail_closed(value: str) -> None:
    ring = Keyring.from_hex(NEW)
    with pytest.raises(KeyUnreadable):
        ring.decrypt(value.format(kid=ring.current_id), user_id=1, provider="openai")


def test_unknown_key_fails_closed() -> None:
    value = sealed(Keyring.from_hex(OLD))
    with pytest.raises(KeyUnreadable):
        Keyring.from_hex(NEW).decrypt(value, user_id=1, provider="openai")


def test_previous_keys_still_decrypt_and_need_rotation() -> None:
    value = sealed(Keyring.from_hex(OLD))
    ring = Keyring.from_hex(NEW, [OLD])
    assert ring.decrypt(value, user_id=1, provider="openai") == SECRET
    assert ring.needs_rotation(value)
    assert not ring.needs_rotation(sealed(ring))


def test_new_values_use_the_current_key_only() -> None:
    ring = Keyring.from_hex(NEW, [OLD])
    assert Keyring.from_hex(NEW).decrypt(sealed(ring), user_id=1, provider="openai") == SECRET


@pytest.mark.parametrize("bad", ["00" * 31, "00" * 33, "zz" * 32])
def test_keys_must_be_32_bytes_of_hex(bad: str) -> None:
    with pytest.raises(ValueError):
        Keyring.from_hex(bad)
