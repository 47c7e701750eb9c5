"""Budgets cannot be outrun (issue 10, item 8), on both databases: the input estimate counts
non-ASCII text at a token a character, and whatever usage or model a vendor reports is checked
before it is stored or charged, on both chat routes."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
from sqlalchemy import select

from llm_service.db.models import ChatMessage
from llm_service.providers.base import (
    MAX_USAGE_TOKENS,
    ChatRequest,
    Completion,
    StreamDelta,
    StreamEvent,
    StreamUsage,
    checked_model,
    checked_tokens,
)
from llm_service.services.budgets import TOKENS_PER_TURN, estimate_tokens
from tests.conftest import Api, AppFactory, sse_events
from tests.fakes.vendor import FakeVendor

MODEL = "gpt-4o"
HOSTILE_MODEL = "x" * 150


async def configure(api: Api, max_tokens: int = 100) -> None:
    response = await api.client.post(
        "/llm/config/openai", json={"apiKey": "sk-outrun-key", "model": MODEL,
                                    "maxTokens": max_tokens}, headers=api.auth(1))
    assert response.status_code == 200, response.text


async def limits(api: Api) -> dict[str, Any]:
    return (await api.client.get("/llm/usage/limits", headers=api.auth(1))).json()  # type: ignore[no-any-return]


def hostile_vendor(api: Api, monkeypatch: pytest.MonkeyPatch, **usage: Any) -> None:
    """The vendor answers "fine" and reports `usage` (model, input_tokens, output_tokens)."""

    async def complete(provider: str, request: ChatRequest, api_key: str) -> Completion:
        return Completion("fine", usage["model"], usage["input_tokens"], usage["output_tokens"])

    async def open_stream(provider: str, request: ChatRequest, api_key: str
                          ) -> tuple[StreamEvent | None, AsyncIterator[StreamEvent]]:
        async def rest() -> AsyncIterator[StreamEvent]:
            yield StreamUsage(usage["model"], usage["input_tokens"], usage["output_tokens"])

        return StreamDelta("fine"), rest()

    monkeypatch.setattr(api.runtime.providers, "complete", complete)
    monkeypatch.setattr(api.runtime.providers, "open_stream", open_stream)


def test_the_estimate_counts_non_ascii_text_a_token_a_character() -> None:
    assert estimate_tokens("abcdefgh") == 2
    assert estimate_tokens("你好世界") == 4
    assert estimate_tokens("中" * 30_000) == 30_000
    assert estimate_tokens("hi 你好") == 1 + 2  # "hi " rounds up to one, two characters


@pytest.mark.parametrize(("value", "checked"), [
    (12, 12), (0, 0), (-2_000_000, None), (2**40, MAX_USAGE_TOKENS), (None, None),
    (True, None), (1.5, None), ("12", None),
])
def test_vendor_token_counts_are_checked(value: object, checked: int | None) -> None:
    assert checked_tokens(value) == checked


@pytest.mark.parametrize(("value", "checked"), [
    ("gpt-4o-2024-08-06", "gpt-4o-2024-08-06"),
    ("meta-llama/Llama-3.3-70B-Instruct:fireworks", "meta-llama/Llama-3.3-70B-Instruct:fireworks"),
    ("models/gemini-2.5-pro", "models/gemini-2.5-pro"),
    ("x" * 100, "x" * 100), ("x" * 101, MODEL), ("", MODEL), (None, MODEL),
    ("<script>alert(1)</script>", MODEL), ("gpt 4o", MODEL), ("-rf", MODEL), (42, MODEL),
])
def test_vendor_model_names_are_checked(value: object, checked: str) -> None:
    assert checked_model(value, MODEL) == checked


async def test_a_cjk_message_cannot_outrun_a_token_budget(
    make_api: AppFactory, fake_vendor: FakeVendor
) -> None:
    async with make_api(LLM_BUDGET_TOKENS_CLIENT=20_000) as api:
        await configure(api, max_tokens=10)
        response = await api.client.post("/llm/chat/openai", json={"message": "中" * 30_000,
                                         "history": []}, headers=api.auth(1))
        figures = await limits(api)
    assert response.status_code == 429, response.text
    assert response.json()["code"] == "budget_exceeded"
    assert fake_vendor.requests_for("openai") == []
    assert figures["tokens"]["used"] == 0 and figures["tokens"]["reserved"] == 0


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "streamed"])
async def test_nonsense_usage_from_a_vendor_is_estimated_capped_and_not_trusted(
    make_api: AppFactory, monkeypatch: pytest.MonkeyPatch, stream: bool
) -> None:
    async with make_api(LLM_BUDGET_TOKENS_CLIENT=1_000_000) as api:
        await configure(api, max_tokens=100)
        hostile_vendor(api, monkeypatch, model=HOSTILE_MODEL, input_tokens=-2_000_000,
                       output_tokens=2**40)
        path = "/llm/chat/openai/stream" if stream else "/llm/chat/openai"
        response = await api.client.post(path, json={"message": "hello there", "history": []},
                                         headers=api.auth(1))
        figures = await limits(api)
        async with api.runtime.engine.connect() as conn:
            stored = (await conn.execute(select(ChatMessage.model, ChatMessage.input_tokens,
                                                ChatMessage.output_tokens)
                                         .where(ChatMessage.role == "assistant"))).all()
    assert response.status_code == 200, response.text
    answer = sse_events(response.text)[-1][1] if stream else response.json()
    estimate = estimate_tokens("hello there") + TOKENS_PER_TURN
    assert (answer["model"], answer["inputTokens"], answer["outputTokens"]) == (
        MODEL, estimate, MAX_USAGE_TOKENS)
    assert answer["tokensEstimated"] is True
    assert [tuple(row) for row in stored] == [(MODEL, estimate, MAX_USAGE_TOKENS)]
    # The budget is charged at most the reservation: the input estimate plus maxTokens.
    assert figures["tokens"]["used"] == estimate + 100
    assert figures["tokens"]["reserved"] == 0


async def test_concurrent_chats_never_spend_past_the_budget_whatever_the_vendor_reports(
    make_api: AppFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    limit, max_tokens = 1000, 100
    async with make_api(LLM_BUDGET_TOKENS_CLIENT=limit, LLM_MAX_CONCURRENT_CHATS_PER_USER=50,
                        RATE_LIMIT_CHAT="1000/minute") as api:
        await configure(api, max_tokens=max_tokens)
        hostile_vendor(api, monkeypatch, model=MODEL, input_tokens=2**40, output_tokens=2**40)
        results = await asyncio.gather(*[
            api.client.post("/llm/chat/openai", json={"message": f"m {i}", "history": []},
                            headers=api.auth(1))
            for i in range(20)
        ])
        figures = await limits(api)
    statuses = [r.status_code for r in results]
    assert set(statuses) <= {200, 429} and 200 in statuses and 429 in statuses
    assert figures["tokens"]["reserved"] == 0
    assert figures["tokens"]["used"] <= limit
