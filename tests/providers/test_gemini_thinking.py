"""Gemini's thinking tokens (`usageMetadata.thoughtsTokenCount`) are billed as output, so they
count as output tokens, streamed or not (issue 10, item 8). A fake Gemini answers through
httpx2's MockTransport with the usage a thinking model reports."""

from __future__ import annotations

import json

import httpx2

from llm_service.providers.base import ChatRequest, ChatTurn, Credentials, StreamUsage
from llm_service.providers.gemini import SPEC, GeminiProvider

USAGE = {"promptTokenCount": 7, "candidatesTokenCount": 5, "thoughtsTokenCount": 300,
         "totalTokenCount": 312}
ANSWER = {"candidates": [{"content": {"role": "model", "parts": [{"text": "Hi"}]},
                          "finishReason": "STOP"}],
          "usageMetadata": USAGE, "modelVersion": "gemini-2.5-pro"}
CREDS = Credentials(api_key="AIza-test-key", base_url="http://gemini.test")
REQUEST = ChatRequest(model="gemini-2.5-pro", messages=[ChatTurn("user", "Hello")],
                      temperature=0.5, max_tokens=1000)


def handler(request: httpx2.Request) -> httpx2.Response:
    if ":streamGenerateContent" in request.url.path:
        body = f"data: {json.dumps(ANSWER)}\r\n\r\n".encode()
        return httpx2.Response(200, content=body, headers={"content-type": "text/event-stream"})
    return httpx2.Response(200, json=ANSWER)


def provider() -> GeminiProvider:
    client = httpx2.AsyncClient(transport=httpx2.MockTransport(handler))
    return GeminiProvider(SPEC, client, 5.0)


async def test_thinking_tokens_count_as_output() -> None:
    completion = await provider().complete(REQUEST, CREDS)
    assert (completion.input_tokens, completion.output_tokens) == (7, 305)


async def test_thinking_tokens_count_as_output_in_a_stream() -> None:
    events = [event async for event in provider().stream(REQUEST, CREDS)]
    usage = [e for e in events if isinstance(e, StreamUsage)]
    assert [(u.input_tokens, u.output_tokens) for u in usage] == [(7, 305)]
