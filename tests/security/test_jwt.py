"""Every /llm route needs a valid JWT; every failure is the same 401 body."""

from __future__ import annotations

import base64
import json
import time
from typing import Any

import jwt
import pytest

from tests.conftest import TEST_JWT_SECRET, Api

ROUTES = [
    ("GET", "/llm/configs"),
    ("POST", "/llm/config/openai"),
    ("DELETE", "/llm/config/openai"),
    ("GET", "/llm/history/openai"),
    ("DELETE", "/llm/history/openai"),
]


def b64(data: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).decode().rstrip("=")


def signed(claims: dict[str, Any], secret: str = TEST_JWT_SECRET, alg: str = "HS256",
           headers: dict[str, Any] | None = None) -> str:
    return jwt.encode(claims, secret, algorithm=alg, headers=headers)


def claims(**extra: Any) -> dict[str, Any]:
    return {"user_id": 1, "role": "CLIENT", "exp": int(time.time()) + 600, **extra}


def bad_tokens() -> dict[str, str]:
    valid = signed(claims())
    head, payload, sig = valid.split(".")
    now = int(time.time())
    return {
        "alg none": f"{b64({'alg': 'none', 'typ': 'JWT'})}.{payload}.",
        "alg None": f"{b64({'alg': 'None', 'typ': 'JWT'})}.{payload}.",
        "HS512 with the right secret": signed(claims(), alg="HS512"),
        "RS256 header, HMAC signature": f"{b64({'alg': 'RS256', 'typ': 'JWT'})}.{payload}.{sig}",
        "empty signature": f"{head}.{payload}.",
        "wrong secret": signed(claims(), secret="another-secret-" + "y" * 40),
        "tampered payload": f"{head}.{b64({**claims(), 'user_id': 2})}.{sig}",
        "no exp": signed({"user_id": 1, "role": "CLIENT"}),
        "expired past the leeway": signed(claims(exp=now - 31 - 5)),
        "nbf in the future": signed(claims(nbf=now + 3600)),
        "user id not numeric": signed(claims(user_id="abc", sub="abc")),
        "user id zero": signed(claims(user_id=0)),
        "user id negative": signed(claims(user_id=-5)),
        "user id boolean": signed(claims(user_id=True)),
        "user id float": signed(claims(user_id=1.5)),
        "user id of 5,000 digits": signed(claims(user_id="9" * 5000)),
        "user id over BIGINT": signed(claims(user_id=2**63)),
        "no user id": signed({"role": "CLIENT", "exp": now + 600}),
        "garbage": "not-a-jwt",
        "two parts": f"{head}.{payload}",
        "empty": "",
    }


@pytest.mark.parametrize("name", list(bad_tokens()))
async def test_bad_token_is_401_with_one_body(api: Api, name: str) -> None:
    token = bad_tokens()[name]
    response = await api.client.get("/llm/configs", headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 401
    body = response.json()
    assert body == {
        "success": False,
        "error": "Your session is missing or has expired: sign in again.",
        "code": "unauthorized",
        "requestId": response.headers["X-Request-ID"],
    }


@pytest.mark.parametrize(
    "header", [None, "Basic dXNlcjpwYXNz", "Bearer", "Bearer ", "Token abc", "bearer"]
)
async def test_missing_or_malformed_header_is_401(api: Api, header: str | None) -> None:
    headers = {} if header is None else {"Authorization": header}
    response = await api.client.get("/llm/configs", headers=headers)
    assert response.status_code == 401
    assert response.json()["code"] == "unauthorized"


@pytest.mark.parametrize(("method", "path"), ROUTES)
async def test_every_route_needs_a_token(api: Api, method: str, path: str) -> None:
    response = await api.client.request(method, path, json={"apiKey": "sk-12345678"})
    assert response.status_code == 401


async def test_expired_within_the_leeway_is_accepted(api: Api) -> None:
    token = signed(claims(exp=int(time.time()) - 5))
    response = await api.client.get("/llm/configs", headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 200


async def test_user_id_falls_back_to_sub_as_numeric_string(api: Api) -> None:
    token = signed({"sub": "7", "exp": int(time.time()) + 600})
    await api.client.post("/llm/config/qwen", json={"apiKey": "sk-12345678"},
                          headers={"Authorization": f"Bearer {token}"})
    assert set((await api.client.get("/llm/configs", headers=api.auth(7))).json()["configs"]) == {
        "qwen"
    }


async def test_bearer_scheme_is_case_insensitive(api: Api) -> None:
    response = await api.client.get(
        "/llm/configs", headers={"Authorization": f"bearer {api.token(1)}"}
    )
    assert response.status_code == 200


@pytest.mark.parametrize("role", ["CLIENT", "STAFF", "ADMIN", None])
async def test_known_roles_and_no_role_may_use_the_assistant(api: Api, role: str | None) -> None:
    token = signed(claims(role=role) if role else {k: v for k, v in claims().items()
                                                    if k != "role"})
    response = await api.client.get("/llm/configs", headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 200


@pytest.mark.parametrize("role", ["ROOT", "admin", "adm\u0131n", "client"])
async def test_unknown_role_is_403(api: Api, role: str) -> None:
    token = signed(claims(role=role))
    response = await api.client.get("/llm/configs", headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 403
    assert response.json()["code"] == "forbidden"


async def test_a_numeric_sub_beside_user_id_is_accepted(api: Api) -> None:
    token = signed(claims(sub=1))
    response = await api.client.get("/llm/configs", headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 200
