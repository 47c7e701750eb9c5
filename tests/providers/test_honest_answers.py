"""Honest answers (issue 12 items 3 and 4), every vendor, both routes, against the strict fake's
answer modes: a blocked or refused answer is 400 `provider_refused` with nothing stored; a reply
cut at the token limit is returned and stored with finishReason "length", an empty one is 400
`provider_empty_answer`; thinking tokens count as output; cached input is priced at the cached
rate and kept on the row."""

from __future__ import annotations

import json
from typing import Any

import httpx2
import pytest
from sqlalchemy import select

from llm_service.db.models import ChatMessage
from llm_service.providers.registry import provider_ids
from tests.conftest import Api
from tests.fakes.vendor import FakeVendor

PROVIDERS = provider_ids()
# Current models that take a temperature where the vendor has one; priced where the catalogue
# has a price (it has none for Hugging Face).
MODELS = {"openai": "gpt-6.2-sol", "gemini": "gemini-3.1-flash-lite",
          "claude": "claude-sonnet-5-5", "qwen": "qwen-plus",
          "huggingface": "meta-llama/Llama-3.3-70B-Instruct"}
MESSAGE = "Tell me everything about the weather today please"


async def save(api: Api, provider: str) -> None:
    body = {"apiKey": f"sk-honest-{provider}-0001", "model": MODELS[provider]}
    response = await api.client.post(f"/llm/config/{provider}", json=body, headers=api.auth(1))
    assert response.status_code == 200, response.text


def sse_events(text: str) -> list[tuple[str, dict[str, Any]]]:
    events = []
    for block in text.strip().split("\n\n"):
        lines = dict(line.split(": ", 1) for line in block.splitlines() if ": " in line)
        if "event" in lines:
            events.append((lines["event"], json.loads(lines["data"])))
    return events


async def chat(api: Api, provider: str, stream: bool) -> tuple[int, dict[str, Any]]:
    """(status, the answer or the error), the stream's terminal event for a stream."""
    path = f"/llm/chat/{provider}/stream" if stream else f"/llm/chat/{provider}"
    response: httpx2.Response = await api.client.post(
        path, json={"message": MESSAGE, "history": []}, headers=api.auth(1))
    if not stream or response.status_code != 200:
        return response.status_code, response.json()
    event, data = sse_events(response.text)[-1]
    return (200 if event == "done" else 400), data


async def rows(api: Api) -> list[ChatMessage]:
    async with api.runtime.sessions() as session:
        return list(await session.scalars(select(ChatMessage).order_by(ChatMessage.id)))


@pytest.fixture(params=PROVIDERS)
def provider(request: pytest.FixtureRequest) -> str:
    return request.param  # type: ignore[no-any-return]


@pytest.fixture(params=[False, True], ids=["plain", "streamed"])
def stream(request: pytest.FixtureRequest) -> bool:
    return request.param  # type: ignore[no-any-return]


@pytest.mark.parametrize("mode", ["blocked", "refused"])
async def test_a_declined_answer_is_provider_refused_and_nothing_is_stored(
    api: Api, fake_vendor: FakeVendor, provider: str, stream: bool, mode: str
) -> None:
    await save(api, provider)
    fake_vendor.set_behaviour(mode, provider=provider)
    status, body = await chat(api, provider, stream)
    assert status == 400
    assert body["code"] == "provider_refused"
    assert "declined to answer" in body["error"]
    assert await rows(api) == []


async def test_a_reply_cut_at_the_limit_is_returned_and_stored_as_length(
    api: Api, fake_vendor: FakeVendor, provider: str, stream: bool
) -> None:
    await save(api, provider)
    fake_vendor.set_behaviour("truncated", provider=provider)
    status, body = await chat(api, provider, stream)
    assert status == 200, body
    assert body["finishReason"] == "length"
    assert body["response"] and body["response"] in f"Echo from {provider} {MODELS[provider]}: "\
        f"{MESSAGE}"
    _, reply = await rows(api)
    assert (reply.role, reply.finish_reason) == ("assistant", "length")


async def test_a_finished_reply_has_no_finish_reason(
    api: Api, fake_vendor: FakeVendor, provider: str, stream: bool
) -> None:
    await save(api, provider)
    status, body = await chat(api, provider, stream)
    assert status == 200, body
    assert "finishReason" not in body
    _, reply = await rows(api)
    assert reply.finish_reason is None


async def test_an_empty_cut_reply_asks_to_raise_max_tokens(
    api: Api, fake_vendor: FakeVendor, provider: str, stream: bool
) -> None:
    await save(api, provider)
    fake_vendor.set_behaviour("truncated", provider=provider, empty=True)
    status, body = await chat(api, provider, stream)
    assert status == 400
    assert body["code"] == "provider_empty_answer"
    assert "raise Max tokens" in body["error"]
    assert await rows(api) == []


async def test_thinking_tokens_count_as_output(
    api: Api, fake_vendor: FakeVendor, provider: str, stream: bool
) -> None:
    await save(api, provider)
    status, plain = await chat(api, provider, stream)
    fake_vendor.set_behaviour("thinking", provider=provider, thinking_tokens=40)
    status, thinking = await chat(api, provider, stream)
    assert status == 200, thinking
    assert thinking["outputTokens"] == plain["outputTokens"] + 40
    assert thinking["response"] == plain["response"]


async def test_cached_input_is_priced_at_the_cached_rate_and_kept(
    api: Api, fake_vendor: FakeVendor, provider: str, stream: bool
) -> None:
    await save(api, provider)
    fake_vendor.set_behaviour("cached", provider=provider, cached_tokens=6)
    status, body = await chat(api, provider, stream)
    assert status == 200, body
    catalog = api.runtime.catalog
    expected = catalog.cost(provider, MODELS[provider], body["inputTokens"],
                            body["outputTokens"], cached_input_tokens=6)
    full = catalog.cost(provider, MODELS[provider], body["inputTokens"], body["outputTokens"])
    cached_rate = catalog.model(provider, MODELS[provider]).cached_input  # type: ignore[union-attr]
    if provider == "huggingface":  # no Hugging Face prices
        assert body["costUsd"] is None
    else:
        assert expected is not None and full is not None
        assert body["costUsd"] == float(expected)
        # Cheaper where the model has a cached rate; else cached tokens are priced as input.
        assert (expected < full) if cached_rate is not None else (expected == full)
    _, reply = await rows(api)
    assert reply.cached_input_tokens == 6
    assert reply.input_tokens == body["inputTokens"]


@pytest.mark.parametrize(("billing_provider", "status", "code"), [
    ("openai", 429, "provider_rate_limited"), ("claude", 400, "provider_bad_request"),
    ("qwen", 400, "provider_bad_request"), ("huggingface", 400, "provider_bad_request"),
])
async def test_no_credit_says_to_add_credit(
    api: Api, fake_vendor: FakeVendor, billing_provider: str, status: int, code: str,
    stream: bool,
) -> None:
    await save(api, billing_provider)
    fake_vendor.set_behaviour("billing", provider=billing_provider)
    got, body = await chat(api, billing_provider, stream)
    assert (got, body["code"]) == (status, code)
    assert "add credit or check your plan" in body["error"]
    assert len(fake_vendor.requests_for(billing_provider)) == 1  # not retried
    assert await rows(api) == []
