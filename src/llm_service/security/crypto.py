"""API keys at rest: AES-256-GCM under a keyring, bound to the row they belong to.

Stored format: ``v1.<key id>.<base64url(nonce || ciphertext+tag)>`` where the key id is the first 8
hex characters of SHA-256 over the key, so a value names the key that wrote it and rotation needs
no ordering. The associated data is ``llm-service/api-key/v1/<user id>/<provider>``: a value copied
to another user's or provider's row does not decrypt. Every failure raises ``KeyUnreadable``.
"""

from __future__ import annotations

import base64
import hashlib
import os
from dataclasses import dataclass

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

FORMAT_VERSION = "v1"
NONCE_BYTES = 12  # 96-bit nonce, as NIST SP 800-38D recommends for GCM


class KeyUnreadable(Exception):
    """A stored value does not decrypt: unknown key version, tampered, or moved to another row."""


def key_id(key: bytes) -> str:
    return hashlib.sha256(key).hexdigest()[:8]


def _associated_data(user_id: int, provider: str) -> bytes:
    return f"llm-service/api-key/{FORMAT_VERSION}/{user_id}/{provider}".encode()


@dataclass(frozen=True, slots=True)
class Keyring:
    """The current key (encrypts and decrypts) and previous keys (decrypt only)."""

    current_id: str
    _ciphers: dict[str, AESGCM]

    @classmethod
    def from_hex(cls, current: str, previous: list[str] | tuple[str, ...] = ()) -> Keyring:
        ciphers: dict[str, AESGCM] = {}
        for hex_key in (current, *previous):
            raw = bytes.fromhex(hex_key)
            if len(raw) != 32:
                raise ValueError("encryption keys must be 32 bytes (64 hex characters)")
            ciphers.setdefault(key_id(raw), AESGCM(raw))
        return cls(current_id=key_id(bytes.fromhex(current)), _ciphers=ciphers)

    def encrypt(self, plaintext: str, *, user_id: int, provider: str) -> str:
        nonce = os.urandom(NONCE_BYTES)
        sealed = self._ciphers[self.current_id].encrypt(
            nonce, plaintext.encode(), _associated_data(user_id, provider)
        )
        token = base64.urlsafe_b64encode(nonce + sealed).decode().rstrip("=")
        return f"{FORMAT_VERSION}.{self.current_id}.{token}"

    def decrypt(self, stored: str, *, user_id: int, provider: str) -> str:
        try:
            version, kid, token = stored.split(".")
            cipher = self._ciphers[kid]
            if version != FORMAT_VERSION:
                raise KeyUnreadable("unknown format version")
            blob = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
            if len(blob) <= NONCE_BYTES:
                raise KeyUnreadable("value too short")
            plain = cipher.decrypt(
                blob[:NONCE_BYTES], blob[NONCE_BYTES:], _associated_data(user_id, provider)
            )
            return plain.decode()
        except KeyUnreadable:
            raise
        except (ValueError, KeyError, InvalidTag, UnicodeDecodeError) as exc:
            raise KeyUnreadable(type(exc).__name__) from None

    def needs_rotation(self, stored: str) -> bool:
        return stored.split(".", 2)[1:2] != [self.current_id]


def generate_key_hex() -> str:
    return os.urandom(32).hex()
