"""Gemini's thinking tokens (`usageMetadata.thoughtsTokenCount`) are billed as output, so they
count as output tokens, streamed or not (issue 10, item 8), and its cached prompt tokens
(`cachedContentTokenCount`) are reported apart. The adapter calls the fake vendor through
google-genai, in the fake's `thinking` and `cached` modes."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx2
import pytest

from llm_service.providers.base import ChatRequest, ChatTurn, Credentials, StreamUsage
from llm_service.providers.gemini import SPEC, GeminiProvider
from tests.fakes.vendor import FakeVendor

REQUEST = ChatRequest(model="gemini-3.1-pro-preview", messages=[ChatTurn("user", "Hello")],
                      temperature=0.5, max_tokens=1000)
PLAIN_OUTPUT = 5  # "Echo from gemini gemini-3.1-pro-preview: Hello"


@pytest.fixture
async def gemini(fake_vendor: FakeVendor) -> AsyncIterator[tuple[GeminiProvider, Credentials]]:
    fake_vendor.reset()
    async with httpx2.AsyncClient() as http:
        yield (GeminiProvider(SPEC, http, 5.0),
               Credentials(api_key="AIza-test-key", base_url=fake_vendor.base_url("gemini")))
    fake_vendor.reset()  # the fake is shared by the session


async def test_thinking_tokens_count_as_output(
    gemini: tuple[GeminiProvider, Credentials], fake_vendor: FakeVendor
) -> None:
    adapter, creds = gemini
    fake_vendor.set_behaviour("thinking", provider="gemini", thinking_tokens=300)
    completion = await adapter.complete(REQUEST, creds)
    assert (completion.input_tokens, completion.output_tokens) == (1, PLAIN_OUTPUT + 300)
    assert fake_vendor.requests_for("gemini")[-1].status == 200


async def test_thinking_tokens_count_as_output_in_a_stream(
    gemini: tuple[GeminiProvider, Credentials], fake_vendor: FakeVendor
) -> None:
    adapter, creds = gemini
    fake_vendor.set_behaviour("thinking", provider="gemini", thinking_tokens=300)
    events = [event async for event in adapter.stream(REQUEST, creds)]
    usage = [e for e in events if isinstance(e, StreamUsage) and e.output_tokens is not None]
    assert [(u.input_tokens, u.output_tokens) for u in usage] == [(1, PLAIN_OUTPUT + 300)]


async def test_cached_prompt_tokens_are_reported_apart(
    gemini: tuple[GeminiProvider, Credentials], fake_vendor: FakeVendor
) -> None:
    adapter, creds = gemini
    long = ChatRequest(model=REQUEST.model, messages=[ChatTurn("user", "a b c d e f g h")],
                       temperature=0.5, max_tokens=1000)
    fake_vendor.set_behaviour("cached", provider="gemini", cached_tokens=6)
    completion = await adapter.complete(long, creds)
    assert (completion.input_tokens, completion.cached_input_tokens) == (8, 6)
