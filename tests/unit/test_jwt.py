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
    principal = decoder(tmp_path).decode(token({"user_id": 42, "role": "STAFF"}))
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


@pytest.mark.parametrize("role", ["admin", "Admin", "adm\u0131n", "ADMIN ", "client", "", 7])
def test_roles_compare_exactly(tmp_path: Path, role: object) -> None:
    # "" is the one spelling of "no role" besides leaving the claim out (CLIENT).
    if role == "":
        assert decoder(tmp_path).decode(token({"user_id": 1, "role": role})).role == "CLIENT"
        return
    with pytest.raises(UnknownRole):
        decoder(tmp_path).decode(token({"user_id": 1, "role": role}))


def test_a_numeric_sub_beside_user_id_is_accepted(tmp_path: Path) -> None:
    assert decoder(tmp_path).decode(token({"user_id": 5, "sub": 5})).user_id == 5


def test_a_numeric_sub_alone_is_the_user_id(tmp_path: Path) -> None:
    assert decoder(tmp_path).decode(token({"sub": 12})).user_id == 12


@pytest.mark.parametrize("value", [2**63 - 1, str(2**63 - 1), "0009"])
def test_largest_user_id_and_leading_zeros_are_accepted(tmp_path: Path, value: object) -> None:
    assert decoder(tmp_path).decode(token({"user_id": value})).user_id == int(str(value))


@pytest.mark.parametrize(
    "value", ["9" * 5000, 10**4000, str(2**63), "\uff11\uff12", "1e3", 3.0, -1]
)
def test_out_of_range_or_odd_user_ids_are_refused(tmp_path: Path, value: object) -> None:
    with pytest.raises(InvalidToken):
        decoder(tmp_path).decode(token({"user_id": value}))


def test_aud_is_not_checked_when_no_audience_is_set(tmp_path: Path) -> None:
    assert decoder(tmp_path).decode(token({"user_id": 1, "aud": "elsewhere"})).user_id == 1


def test_audience_when_set_is_required_and_checked(tmp_path: Path) -> None:
    strict = decoder(tmp_path, JWT_AUDIENCE="llm-service")
    assert strict.decode(token({"user_id": 1, "aud": "llm-service"})).user_id == 1
    assert strict.decode(token({"user_id": 1, "aud": ["x", "llm-service"]})).user_id == 1
    for claims in ({"user_id": 1}, {"user_id": 1, "aud": "other"}):
        with pytest.raises(InvalidToken):
            strict.decode(token(claims))


def test_issuer_when_set_is_required_and_checked(tmp_path: Path) -> None:
    strict = decoder(tmp_path, JWT_ISSUER="https://auth.example")
    assert strict.decode(token({"user_id": 1, "iss": "https://auth.example"})).user_id == 1
    for claims in ({"user_id": 1}, {"user_id": 1, "iss": "https://evil.example"}):
        with pytest.raises(InvalidToken):
            strict.decode(token(claims))
    assert decoder(tmp_path).decode(token({"user_id": 1, "iss": "anyone"})).user_id == 1


def test_issue_token_uses_the_configured_algorithm(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, "sqlite+aiosqlite://", JWT_ALGORITHM="HS384")
    issued = issue_token(settings, user_id=3, role="STAFF", ttl_s=60)
    assert jwt.get_unverified_header(issued)["alg"] == "HS384"
    assert TokenDecoder(settings).decode(issued) == Principal(3, "STAFF")


def test_a_remembered_token_is_refused_once_it_expires(tmp_path: Path) -> None:
    strict = decoder(tmp_path, JWT_LEEWAY_S=0)
    expires = int(time.time()) + 1
    short = token({"user_id": 3, "exp": expires})
    assert strict.decode(short).user_id == 3
    assert strict.decode(short).user_id == 3  # answered from memory
    time.sleep(max(0.0, expires - time.time()) + 0.05)  # PyJWT reads the real clock
    with pytest.raises(InvalidToken):
        strict.decode(short)
    assert short not in strict._accepted


def test_a_refused_token_is_not_remembered(tmp_path: Path) -> None:
    decoding = decoder(tmp_path)
    forged = jwt.encode({"user_id": 4, "exp": int(time.time()) + 60}, "another-secret-" * 3,
                        algorithm="HS256")
    for _ in range(2):
        with pytest.raises(InvalidToken):
            decoding.decode(forged)
    unknown = token({"user_id": 4, "role": "ROOT"})
    for _ in range(2):
        with pytest.raises(UnknownRole):
            decoding.decode(unknown)


def test_remembered_tokens_are_bounded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from llm_service.security import jwt as module

    monkeypatch.setattr(module, "ACCEPTED_CACHE_SIZE", 3)
    decoding = decoder(tmp_path)
    tokens = [token({"user_id": n}) for n in range(1, 6)]
    for item in tokens:
        decoding.decode(item)
    assert list(decoding._accepted) == tokens[2:]  # the oldest two forgotten
