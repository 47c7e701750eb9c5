"""Chat input limits and the order of checks (401 → 404 → 413/422)."""

from __future__ import annotations

from typing import Any

import pytest

from llm_service.providers.base import scrub
from tests.conftest import Api
from tests.fakes.vendor import FakeVendor


@pytest.fixture
async def configured(api: Api) -> Api:
    response = await api.client.post(
        "/llm/config/openai", json={"apiKey": "sk-input-tests-key-1234"}, headers=api.auth(1)
    )
    assert response.status_code == 200
    return api


async def chat(api: Api, body: Any) -> Any:
    return await api.client.post("/llm/chat/openai", json=body, headers=api.auth(1))


INSIDE = [
    {"message": "x"},
    {"message": "  x  "},
    {"message": "y" * 32000},
    {"message": " " * 50 + "y" * 32000 + "\n"},
    {"message": "hi", "history": []},
    {"message": "hi", "history": [{"role": "user", "content": "z" * 32000}]},
    {"message": "hi", "history": [{"role": "user", "content": "q"}] * 100},
    {"message": "hi", "history": None},
    {"message": "hi", "userId": 2, "stream": True, "model": "other"},
]
OUTSIDE = [
    ({}, "message"),
    ({"message": ""}, "message"),
    ({"message": " \n\t "}, "message"),
    ({"message": "y" * 32001}, "message"),
    ({"message": 42}, "message"),
    ({"message": None}, "message"),
    ({"message": "hi", "history": [{"role": "user", "content": "z" * 32001}]},
     "history.0.content"),
    ({"message": "hi", "history": [{"role": "user", "content": "q"}] * 101}, "history"),
    ({"message": "hi", "history": [{"role": "system", "content": "q"}]}, "history.0.role"),
    ({"message": "hi", "history": [{"content": "q"}]}, "history.0.role"),
    ({"message": "hi", "history": "not a list"}, "history"),
]


@pytest.mark.parametrize("body", INSIDE, ids=lambda b: repr(b)[:60])
async def test_bounds_just_inside_are_accepted(configured: Api, body: dict[str, Any]) -> None:
    response = await chat(configured, body)
    assert response.status_code == 200, response.text[:300]


@pytest.mark.parametrize(("body", "field"), OUTSIDE, ids=lambda v: repr(v)[:60])
async def test_bounds_just_outside_are_422_and_call_no_vendor(
    configured: Api, fake_vendor: FakeVendor, body: dict[str, Any], field: str
) -> None:
    response = await chat(configured, body)
    assert response.status_code == 422
    assert response.json()["details"][0]["field"] == field
    assert fake_vendor.requests_for("openai") == []


async def test_message_is_sent_as_typed(configured: Api, fake_vendor: FakeVendor) -> None:
    await chat(configured, {"message": "  a < b && <div>x</div>\n"})
    body = fake_vendor.requests_for("openai")[0].body
    assert body["messages"][-1]["content"] == "  a < b && <div>x</div>\n"


async def test_body_over_the_limit_is_413_before_parsing(configured: Api) -> None:
    raw = b'{"message": "' + b"y" * configured.settings.max_body_bytes + b'"}'
    response = await configured.client.post(
        "/llm/chat/openai", content=raw, headers=configured.auth(1)
    )
    assert response.status_code == 413
    assert response.json()["code"] == "payload_too_large"


async def test_checks_run_in_contract_order(api: Api) -> None:
    assert (await api.client.post("/llm/chat/nope", json={})).status_code == 401
    unknown = await api.client.post("/llm/chat/nope", json={}, headers=api.auth(1))
    assert unknown.status_code == 404
    response = await api.client.post("/llm/chat/openai", json={}, headers=api.auth(1))
    assert response.status_code == 422


def test_scrub_removes_the_key_and_key_like_strings() -> None:
    key = "sk-proj-REALKEY1234567890"
    text = (f"Incorrect API key provided: sk-proj-***7890. Also {key} and hf_abcdefgh "
            "and AIzaSyA1b2c3d4 and api_key=abcdef123456.")
    cleaned = scrub(text, key) or ""
    for leaked in ("REALKEY", "sk-proj", "hf_abc", "AIzaSy", "abcdef123456"):
        assert leaked not in cleaned
    assert cleaned.startswith("Incorrect API key provided: [redacted]")


def test_scrub_keeps_a_useful_reason() -> None:
    assert scrub("The model `gpt-5x` does not exist", "sk-k") == "The model `gpt-5x` does not exist"


async def test_bad_request_carries_the_vendors_reason(
    configured: Api, fake_vendor: FakeVendor
) -> None:
    fake_vendor.set_behaviour("bad_request", provider="openai")
    body = (await chat(configured, {"message": "hi"})).json()
    assert body["code"] == "provider_bad_request"
    assert "OpenAI said:" in body["error"]
