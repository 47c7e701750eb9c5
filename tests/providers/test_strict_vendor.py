"""The strict fake vendor (issue 12 items 2 and 3): it refuses what today's vendors refuse
(retired ids, a temperature on OpenAI reasoning models, a Qwen3 non-streaming call that thinks),
and the service sends each vendor only what it accepts: a configuration saved without a model
chats, plain and streamed, for every vendor."""

from __future__ import annotations

from typing import Any

import httpx2
import pytest

from llm_service.providers.registry import provider_ids
from tests.conftest import Api
from tests.fakes.vendor import FakeVendor

PROVIDERS = provider_ids()
QWEN_PATH = "/api/v1/services/aigc/text-generation/generation"
MESSAGES = [{"role": "user", "content": "hi"}]


async def save(api: Api, provider: str, **fields: Any) -> None:
    body = {"apiKey": f"sk-strict-{provider}-0001", **fields}
    response = await api.client.post(f"/llm/config/{provider}", json=body, headers=api.auth(1))
    assert response.status_code == 200, response.text


async def chat(api: Api, provider: str, *, stream: bool = False) -> httpx2.Response:
    path = f"/llm/chat/{provider}/stream" if stream else f"/llm/chat/{provider}"
    return await api.client.post(path, json={"message": "Hello there", "history": []},
                                 headers=api.auth(1))


@pytest.mark.parametrize("provider", PROVIDERS)
@pytest.mark.parametrize("stream", [False, True], ids=["plain", "streamed"])
async def test_a_new_configuration_without_a_model_chats(
    api: Api, fake_vendor: FakeVendor, provider: str, stream: bool
) -> None:
    await save(api, provider)
    response = await chat(api, provider, stream=stream)
    assert response.status_code == 200, response.text
    default = api.runtime.catalog.default_model(provider)
    expected = f"Echo from {provider} {default}: Hello there"
    if stream:
        assert "event: done" in response.text
        assert response.text.count("event: error") == 0
    else:
        assert response.json()["response"] == expected
    (record,) = fake_vendor.requests_for(provider)
    assert record.status == 200


@pytest.mark.parametrize(
    ("provider", "model"),
    [("openai", "o4-mini"), ("gemini", "gemini-2.0-flash-exp"),
     ("claude", "claude-sonnet-4-5-20250929"), ("gemini", "gemini-2.5-flash")],
)
async def test_a_retired_model_is_refused_by_the_vendor_and_said_so(
    api: Api, fake_vendor: FakeVendor, provider: str, model: str
) -> None:
    await save(api, provider, model=model)
    response = await chat(api, provider)
    assert response.status_code == 400
    assert response.json()["code"] == "provider_bad_request"
    (record,) = fake_vendor.requests_for(provider)
    assert record.status == 404  # as OpenAI, Gemini and Anthropic answer a gone model


@pytest.mark.parametrize("model", ["gpt-6.2-sol", "gpt-5.4", "o3", "o9-mini"])
async def test_openai_reasoning_models_receive_no_temperature(
    api: Api, fake_vendor: FakeVendor, model: str
) -> None:
    await save(api, "openai", model=model, temperature=0.3)
    for stream in (False, True):
        assert (await chat(api, "openai", stream=stream)).status_code == 200
    for record in fake_vendor.requests_for("openai"):
        assert "temperature" not in record.body
        assert "max_tokens" not in record.body
        assert record.body["max_completion_tokens"] == 2048


async def test_the_fake_refuses_a_temperature_on_a_reasoning_model(fake_vendor: FakeVendor) -> None:
    async with httpx2.AsyncClient() as http:
        answer = await http.post(
            fake_vendor.base_url("openai") + "/chat/completions",
            headers={"Authorization": "Bearer sk-x"},
            json={"model": "gpt-5.4", "messages": MESSAGES, "temperature": 0.7},
        )
        limit = await http.post(
            fake_vendor.base_url("openai") + "/chat/completions",
            headers={"Authorization": "Bearer sk-x"},
            json={"model": "gpt-5.4", "messages": MESSAGES, "max_tokens": 10},
        )
        one = await http.post(
            fake_vendor.base_url("openai") + "/chat/completions",
            headers={"Authorization": "Bearer sk-x"},
            json={"model": "gpt-5.4", "messages": MESSAGES, "temperature": 1},
        )
    assert answer.status_code == 400
    assert answer.json()["error"]["code"] == "unsupported_value"
    assert answer.json()["error"]["param"] == "temperature"
    assert (limit.status_code, limit.json()["error"]["code"]) == (400, "unsupported_parameter")
    assert one.status_code == 200


@pytest.mark.parametrize("model", ["qwen3-32b", "qwen4-max"])
async def test_qwen3_open_models_chat_with_thinking_off_without_streaming(
    api: Api, fake_vendor: FakeVendor, model: str
) -> None:
    await save(api, "qwen", model=model)
    assert (await chat(api, "qwen")).status_code == 200
    assert (await chat(api, "qwen", stream=True)).status_code == 200
    plain, streamed = fake_vendor.requests_for("qwen")
    assert plain.body["parameters"]["enable_thinking"] is False
    assert "enable_thinking" not in streamed.body["parameters"]


async def test_the_fake_refuses_a_thinking_qwen3_call_without_streaming(
    fake_vendor: FakeVendor,
) -> None:
    body = {"model": "qwen3-32b", "input": {"messages": MESSAGES},
            "parameters": {"result_format": "message"}}
    async with httpx2.AsyncClient() as http:
        answer = await http.post(fake_vendor.base_url("qwen") + QWEN_PATH,
                                 headers={"Authorization": "Bearer sk-x"}, json=body)
    assert answer.status_code == 400
    assert answer.json()["code"] == "InvalidParameter"
    assert "enable_thinking" in answer.json()["message"]


async def test_the_fake_refuses_retired_ids_as_each_vendor_does(fake_vendor: FakeVendor) -> None:
    async with httpx2.AsyncClient() as http:
        qwen = await http.post(
            fake_vendor.base_url("qwen") + QWEN_PATH, headers={"Authorization": "Bearer k"},
            json={"model": "qwen-retired-for-test", "input": {"messages": MESSAGES}},
        )
        claude = await http.post(
            fake_vendor.base_url("claude") + "/v1/messages", headers={"x-api-key": "k"},
            json={"model": "claude-sonnet-4-5-20250929", "max_tokens": 5, "messages": MESSAGES},
        )
        gemini = await http.post(
            fake_vendor.base_url("gemini") + "/v1beta/models/gemini-2.0-flash-exp:generateContent",
            headers={"x-goog-api-key": "k"}, json={"contents": [{"parts": [{"text": "hi"}]}]},
        )
    assert qwen.status_code == 200  # an id the catalogue does not list is not refused
    assert (claude.status_code, claude.json()["error"]["type"]) == (404, "not_found_error")
    assert (gemini.status_code, gemini.json()["error"]["status"]) == (404, "NOT_FOUND")
