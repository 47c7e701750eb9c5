"""Decoding the platform's JWT: claims, names from settings, roles."""

from __future__ import annotations

import time
from pathlib import Path

import jwt
import pytest

from llm_service.security.jwt import InvalidToken, Principal, TokenDecoder, UnknownRole, issue_token
from tests.conftest import TEST_JWT_SECRET, make_settings


def decoder(tmp_path: Path, **overrides: object) -> TokenDecoder:
    return TokenDecoder(make_settings(tmp_path, "sqlite+aiosqlite://", **overrides))


def token(claims: dict[str, object], alg: str = "HS256") -> str:
    return jwt.encode({"exp": int(time.time()) + 60, **claims}, TEST_JWT_SECRET, algorithm=alg)


def test_user_id_and_role(tmp_path: Path) -> None:
    principal = decoder(tmp_path).decode(token({"user_id": 42, "role": "staff"}))
    assert principal == Principal(user_id=42, role="STAFF")


def test_user_id_wins_over_sub(tmp_path: Path) -> None:
    assert decoder(tmp_path).decode(token({"user_id": "5", "sub": "6"})).user_id == 5


def test_claim_names_are_settings(tmp_path: Path) -> None:
    custom = decoder(tmp_path, JWT_USER_ID_CLAIM="uid", JWT_ROLE_CLAIM="scope")
    assert custom.decode(token({"uid": 9, "scope": "ADMIN"})) == Principal(9, "ADMIN")


def test_algorithm_is_a_setting_and_pinned(tmp_path: Path) -> None:
    hs384 = decoder(tmp_path, JWT_ALGORITHM="HS384")
    assert hs384.decode(token({"user_id": 1}, alg="HS384")).user_id == 1
    with pytest.raises(InvalidToken):
        hs384.decode(token({"user_id": 1}, alg="HS256"))


def test_leeway_is_a_setting(tmp_path: Path) -> None:
    strict = decoder(tmp_path, JWT_LEEWAY_S=0)
    with pytest.raises(InvalidToken):
        strict.decode(token({"user_id": 1, "exp": int(time.time()) - 2}))


def test_unknown_role_is_its_own_error(tmp_path: Path) -> None:
    with pytest.raises(UnknownRole):
        decoder(tmp_path).decode(token({"user_id": 1, "role": "SUPERUSER"}))


def test_user_id_over_bigint_is_refused(tmp_path: Path) -> None:
    with pytest.raises(InvalidToken):
        decoder(tmp_path).decode(token({"user_id": 2**63}))


def test_issued_tokens_decode(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, "sqlite+aiosqlite://")
    issued = issue_token(settings, user_id=3, role="ADMIN", ttl_s=60)
    assert TokenDecoder(settings).decode(issued) == Principal(3, "ADMIN")
