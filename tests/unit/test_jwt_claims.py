"""The JWT checks mutation testing found untested: `aud` without a configured audience, `exp`
required, the id range's ends, empty and non-string roles, `sub` as fallback, reasons for logs,
and `issue_token` under another algorithm."""

from __future__ import annotations

import time
from pathlib import Path

import jwt
import pytest

from llm_service.security.jwt import InvalidToken, Principal, TokenDecoder, UnknownRole, issue_token
from tests.conftest import TEST_JWT_SECRET, make_settings

LARGEST_ID = 2**63 - 1  # PostgreSQL BIGINT


def decoder(tmp_path: Path, **overrides: object) -> TokenDecoder:
    return TokenDecoder(make_settings(tmp_path, "sqlite+aiosqlite://", **overrides))


def token(claims: dict[str, object], alg: str = "HS256") -> str:
    return jwt.encode({"exp": int(time.time()) + 60, **claims}, TEST_JWT_SECRET, algorithm=alg)


def reason(tmp_path: Path, claims: dict[str, object]) -> str:
    with pytest.raises(InvalidToken) as caught:
        decoder(tmp_path).decode(token(claims))
    return str(caught.value)


def test_an_aud_claim_is_accepted_when_no_audience_is_configured(tmp_path: Path) -> None:
    principal = decoder(tmp_path).decode(token({"user_id": 4, "aud": "some-other-service"}))
    assert principal == Principal(4, "CLIENT")


def test_exp_is_required(tmp_path: Path) -> None:
    unbounded = jwt.encode({"user_id": 1}, TEST_JWT_SECRET, algorithm="HS256")
    with pytest.raises(InvalidToken, match=r"^MissingRequiredClaimError$"):
        decoder(tmp_path).decode(unbounded)


def test_expired_within_the_default_leeway_is_accepted(tmp_path: Path) -> None:
    claims = {"user_id": 1, "exp": int(time.time()) - 10}
    assert decoder(tmp_path).decode(token(claims)).user_id == 1
    with pytest.raises(InvalidToken, match=r"^ExpiredSignatureError$"):
        decoder(tmp_path).decode(token({"user_id": 1, "exp": int(time.time()) - 120}))


def test_a_wrong_signature_is_refused_with_its_reason(tmp_path: Path) -> None:
    forged = jwt.encode({"user_id": 1, "exp": int(time.time()) + 60}, "another-secret-" * 4)
    with pytest.raises(InvalidToken) as caught:
        decoder(tmp_path).decode(forged)
    assert str(caught.value) == "InvalidSignatureError"
    assert caught.value.__cause__ is None and caught.value.__suppress_context__


def test_the_largest_user_id_is_accepted(tmp_path: Path) -> None:
    assert decoder(tmp_path).decode(token({"user_id": LARGEST_ID})).user_id == LARGEST_ID
    assert decoder(tmp_path).decode(token({"user_id": str(LARGEST_ID)})).user_id == LARGEST_ID
    assert decoder(tmp_path).decode(token({"user_id": 1})).user_id == 1


@pytest.mark.parametrize(
    ("user_id", "why"),
    [
        (0, "user id out of range"),
        (-1, "user id out of range"),
        (LARGEST_ID + 1, "user id out of range"),
        (str(LARGEST_ID + 1), "user id out of range"),
        ("9" * 20, "user id out of range"),  # refused by its length, before int() parses it
        ("9" * 5000, "user id out of range"),
        ("0", "user id out of range"),
        (True, "user id is a boolean"),
        (1.0, "user id is not an integer"),
        ("12a", "user id is not an integer"),
        ("-3", "user id is not an integer"),
        ("١٢", "user id is not an integer"),  # Arabic-Indic digits: isdigit() but not ASCII
        ([1], "user id is not an integer"),
    ],
)
def test_user_ids_outside_the_range_are_refused(
    tmp_path: Path, user_id: object, why: str
) -> None:
    assert reason(tmp_path, {"user_id": user_id}) == why


def test_sub_is_used_when_user_id_is_null_or_absent(tmp_path: Path) -> None:
    assert decoder(tmp_path).decode(token({"user_id": None, "sub": "7"})).user_id == 7
    assert decoder(tmp_path).decode(token({"sub": "8"})).user_id == 8


def test_no_id_claim_at_all_is_refused(tmp_path: Path) -> None:
    assert reason(tmp_path, {"role": "ADMIN"}) == "no user id claim"
    assert reason(tmp_path, {"user_id": None}) == "no user id claim"


@pytest.mark.parametrize("role", [None, ""])
def test_an_empty_or_missing_role_is_client(tmp_path: Path, role: object) -> None:
    claims: dict[str, object] = {"user_id": 5}
    if role is not None:
        claims["role"] = role
    principal = decoder(tmp_path).decode(token(claims))
    assert principal == Principal(5, "CLIENT") and not principal.is_admin


@pytest.mark.parametrize("role", [["ADMIN"], 1, {"ADMIN": True}, "ROOT"])
def test_a_role_that_is_not_a_known_string_is_unknown(tmp_path: Path, role: object) -> None:
    with pytest.raises(UnknownRole):
        decoder(tmp_path).decode(token({"user_id": 5, "role": role}))


@pytest.mark.parametrize(("role", "admin"), [("ADMIN", True), ("STAFF", False), ("CLIENT", False)])
def test_only_admin_is_admin(tmp_path: Path, role: str, admin: bool) -> None:
    assert decoder(tmp_path).decode(token({"user_id": 5, "role": role})).is_admin is admin


def test_issue_token_uses_the_configured_algorithm(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, "sqlite+aiosqlite://", JWT_ALGORITHM="HS384")
    issued = issue_token(settings, user_id=11, role="STAFF", ttl_s=120)
    assert jwt.get_unverified_header(issued)["alg"] == "HS384"
    claims = jwt.decode(issued, TEST_JWT_SECRET, algorithms=["HS384"])
    assert claims["user_id"] == 11 and claims["sub"] == "11" and claims["role"] == "STAFF"
    assert claims["exp"] - claims["iat"] == 120
    assert abs(claims["iat"] - time.time()) < 60  # issued now, not at some fixed time
    with pytest.raises(jwt.InvalidAlgorithmError):
        jwt.decode(issued, TEST_JWT_SECRET, algorithms=["HS256"])
    assert TokenDecoder(settings).decode(issued) == Principal(11, "STAFF")
    with pytest.raises(InvalidToken):
        decoder(tmp_path).decode(issued)


def test_issue_token_uses_the_configured_claim_names(tmp_path: Path) -> None:
    settings = make_settings(
        tmp_path, "sqlite+aiosqlite://", JWT_USER_ID_CLAIM="uid", JWT_SUBJECT_CLAIM="subject",
        JWT_ROLE_CLAIM="scope",
    )
    claims = jwt.decode(issue_token(settings, user_id=12, role="ADMIN"), TEST_JWT_SECRET,
                        algorithms=["HS256"])
    assert {k: claims[k] for k in ("uid", "subject", "scope")} == {
        "uid": 12, "subject": "12", "scope": "ADMIN"}
    assert "user_id" not in claims and "role" not in claims
    assert claims["exp"] - claims["iat"] == 86_400


def test_leading_zeros_do_not_count_towards_the_length(tmp_path: Path) -> None:
    assert decoder(tmp_path).decode(token({"user_id": "0" * 40 + "7"})).user_id == 7


def test_a_numeric_jti_is_accepted(tmp_path: Path) -> None:
    # The service does not use `jti`; PyJWT's own check (a string) would refuse the platform's.
    assert decoder(tmp_path).decode(token({"user_id": 4, "jti": 123456})).user_id == 4
