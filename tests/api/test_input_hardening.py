"""Bodies that once gave a 500 are refused with 422 before anything is stored or a vendor is
paid: NUL characters (PostgreSQL's text columns refuse U+0000) and JSON nested past the depth
limit. Both databases, both chat routes."""

from __future__ import annotations

from typing import Any

import pytest

from llm_service.api.deps import MAX_JSON_DEPTH
from tests.conftest import Api
from tests.fakes.vendor import FakeVendor

CHAT_ROUTES = ["/llm/chat/openai", "/llm/chat/openai/stream"]


@pytest.fixture
async def configured(api: Api) -> Api:
    response = await api.client.post(
        "/llm/config/openai", json={"apiKey": "sk-hardening-key-1234"}, headers=api.auth(1)
    )
    assert response.status_code == 200
    return api


async def history_rows(api: Api) -> int:
    response = await api.client.get("/llm/history/openai", headers=api.auth(1))
    return int(response.json()["total"])


NUL_CHATS = [
    ({"message": "hello\u0000world"}, "message"),
    ({"message": "\u0000"}, "message"),
    ({"message": "hi", "history": [{"role": "user", "content": "a\u0000"}]}, "history.0.content"),
    ({"message": "hi", "history": [{"role": "assistant", "content": "ok"},
                                   {"role": "user", "content": "\u0000b"}]}, "history.1.content"),
]


@pytest.mark.parametrize("route", CHAT_ROUTES)
@pytest.mark.parametrize(("body", "field"), NUL_CHATS, ids=lambda v: repr(v)[:50])
async def test_nul_in_a_chat_is_422_and_calls_no_vendor(
    configured: Api, fake_vendor: FakeVendor, route: str, body: dict[str, Any], field: str
) -> None:
    response = await configured.client.post(route, json=body, headers=configured.auth(1))
    assert response.status_code == 422
    error = response.json()
    assert error["code"] == "validation_error"
    assert error["details"] == [
        {"field": field, "reason": "Value error, must not contain NUL characters (U+0000)"}
    ]
    assert fake_vendor.requests_for("openai") == []
    assert await history_rows(configured) == 0


@pytest.mark.parametrize(("body", "field"), [
    ({"apiKey": "sk-hardening\u0000key-1234"}, "apiKey"),
    ({"apiKey": "sk-hardening-key-1234", "model": "gpt-4o\u0000"}, "model"),
])
async def test_nul_in_a_configuration_is_422_and_nothing_is_saved(
    api: Api, body: dict[str, Any], field: str
) -> None:
    response = await api.client.post("/llm/config/openai", json=body, headers=api.auth(1))
    assert response.status_code == 422
    assert response.json()["details"][0]["field"] == field
    listed = await api.client.get("/llm/configs", headers=api.auth(1))
    assert listed.json() == {"configs": {}}


def nested(depth: int) -> str:
    """A chat body whose ignored field `x` makes the whole body `depth` levels deep."""
    inner = depth - 1  # the body object is the first level
    return '{"message": "hi", "x": ' + "[" * inner + "]" * inner + "}"


@pytest.mark.parametrize("route", CHAT_ROUTES)
@pytest.mark.parametrize("depth", [MAX_JSON_DEPTH + 1, 1500, 200_000])
async def test_json_nested_past_the_limit_is_422_and_calls_no_vendor(
    configured: Api, fake_vendor: FakeVendor, route: str, depth: int
) -> None:
    response = await configured.client.post(
        route, content=nested(depth), headers={**configured.auth(1),
                                               "Content-Type": "application/json"}
    )
    assert response.status_code == 422
    error = response.json()
    assert error["code"] == "validation_error"
    assert error["details"] == [
        {"field": "body", "reason": f"the body nests deeper than {MAX_JSON_DEPTH} levels"}
    ]
    assert fake_vendor.requests_for("openai") == []


async def test_json_nested_to_the_limit_is_accepted(configured: Api) -> None:
    response = await configured.client.post(
        "/llm/chat/openai", content=nested(MAX_JSON_DEPTH),
        headers={**configured.auth(1), "Content-Type": "application/json"},
    )
    assert response.status_code == 200


async def test_deep_nesting_in_a_configuration_is_422(api: Api) -> None:
    body = '{"apiKey": "sk-hardening-key-1234", "x": ' + "{\"a\": " * 100 + "1" + "}" * 100 + "}"
    response = await api.client.post(
        "/llm/config/openai", content=body,
        headers={**api.auth(1), "Content-Type": "application/json"},
    )
    assert response.status_code == 422
    assert response.json()["details"][0]["field"] == "body"
