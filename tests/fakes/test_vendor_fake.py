"""The fake vendor speaks the real wire formats: proven by driving the official SDKs against it.

openai / anthropic / google-genai talk to it through their base-URL options; Qwen (DashScope) and
Hugging Face are driven with plain httpx2, as the service does.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import anthropic
import httpx2
import openai
import pytest
from google import genai
from google.genai import errors as genai_errors
from google.genai import types as genai_types

from tests.fakes.vendor import FakeVendor, RecordedRequest

ROOT = Path(__file__).resolve().parents[2]
MESSAGES: list[Any] = [
    {"role": "system", "content": "be brief"},
    {"role": "user", "content": "hello there"},
]
QWEN_PATH = "/api/v1/services/aigc/text-generation/generation"


def reply(provider: str, model: str, text: str = "hello there") -> str:
    return f"Echo from {provider} {model}: {text}"


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeVendor]:
    with FakeVendor() as server:
        yield server


@pytest.fixture(autouse=True)
def _fresh(fake: FakeVendor) -> None:
    fake.reset()


@pytest.fixture
async def http() -> AsyncIterator[httpx2.AsyncClient]:
    async with httpx2.AsyncClient(timeout=10) as client:
        yield client


def openai_client(
    fake: FakeVendor, http: httpx2.AsyncClient, provider: str = "openai", key: str = "sk-test-1"
) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(
        api_key=key, base_url=fake.base_url(provider), max_retries=0, http_client=http
    )


def claude_client(fake: FakeVendor, http: httpx2.AsyncClient) -> anthropic.AsyncAnthropic:
    return anthropic.AsyncAnthropic(
        api_key="sk-ant-test", base_url=fake.base_url("claude"), max_retries=0, http_client=http
    )


@pytest.fixture
async def gemini(fake: FakeVendor) -> AsyncIterator[genai.client.AsyncClient]:
    client = genai.Client(
        api_key="g-key-1",
        http_options=genai_types.HttpOptions(
            base_url=fake.base_url("gemini"), timeout=5000, httpx_async_client=httpx2.AsyncClient()
        ),
    )
    yield client.aio
    await client.aio.aclose()


async def wait_for(condition: Callable[[], bool], within: float = 3.0) -> None:
    deadline = time.monotonic() + within
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.01)


def last(fake: FakeVendor, provider: str) -> RecordedRequest:
    return fake.requests_for(provider)[-1]


async def sse_lines(response: httpx2.Response) -> list[str]:
    return [line async for line in response.aiter_lines()]


def data_events(lines: list[str], prefix: str = "data: ") -> list[str]:
    return [line[len(prefix) :] for line in lines if line.startswith(prefix)]


# --------------------------------------------------------------------------- OpenAI


async def test_openai_chat_completion(fake: FakeVendor, http: httpx2.AsyncClient) -> None:
    client = openai_client(fake, http)
    result = await client.chat.completions.create(model="gpt-4o", messages=MESSAGES)

    assert result.object == "chat.completion"
    assert result.model == "gpt-4o"
    assert result.choices[0].message.role == "assistant"
    assert result.choices[0].message.content == reply("openai", "gpt-4o")
    assert result.choices[0].finish_reason == "stop"
    assert result.usage is not None
    assert (result.usage.prompt_tokens, result.usage.completion_tokens) == (4, 6)
    assert result.usage.total_tokens == 10

    record = last(fake, "openai")
    assert record.method == "POST"
    assert record.path == "/openai/v1/chat/completions"
    assert record.headers["authorization"] == "Bearer sk-test-1"
    assert record.body["messages"] == MESSAGES
    assert (record.status, record.stream, record.mode) == (200, False, "ok")
    # The fake records the end just after the last byte left: wait for it, do not race it.
    await wait_for(lambda: last(fake, "openai").finished_at is not None)
    record = last(fake, "openai")
    assert record.finished_at is not None and record.finished_at >= record.received_at


async def test_openai_stream_with_usage(fake: FakeVendor, http: httpx2.AsyncClient) -> None:
    client = openai_client(fake, http)
    stream = await client.chat.completions.create(
        model="gpt-4o", messages=MESSAGES, stream=True, stream_options={"include_usage": True}
    )
    chunks = [chunk async for chunk in stream]

    assert all(c.object == "chat.completion.chunk" for c in chunks)
    texts = [c.choices[0].delta.content for c in chunks if c.choices and c.choices[0].delta.content]
    assert len(texts) == 4  # default pieces
    assert "".join(texts) == reply("openai", "gpt-4o")
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
    assert chunks[-1].choices == []
    assert chunks[-1].usage is not None
    assert (chunks[-1].usage.prompt_tokens, chunks[-1].usage.completion_tokens) == (4, 6)
    # The fake records the end of its response just after the client has read it all.
    await wait_for(lambda: last(fake, "openai").finished_at is not None)
    record = last(fake, "openai")
    assert record.stream and record.finished_at is not None and record.disconnected_at is None


async def test_openai_stream_without_usage_and_pieces_option(
    fake: FakeVendor, http: httpx2.AsyncClient
) -> None:
    fake.set_behaviour("ok", provider="openai", pieces=7, delay=0)
    stream = await openai_client(fake, http).chat.completions.create(
        model="gpt-4o-mini", messages=MESSAGES, stream=True
    )
    chunks = [chunk async for chunk in stream]
    texts = [c.choices[0].delta.content for c in chunks if c.choices and c.choices[0].delta.content]
    assert len(texts) == 7
    assert "".join(texts) == reply("openai", "gpt-4o-mini")
    assert all(c.usage is None and c.choices for c in chunks)


# --------------------------------------------------------------------------- Hugging Face


async def test_huggingface_router(fake: FakeVendor, http: httpx2.AsyncClient) -> None:
    model = "meta-llama/Llama-3.3-70B-Instruct"
    url = fake.base_url("huggingface") + "/chat/completions"
    headers = {"Authorization": "Bearer hf_test"}
    answer = await http.post(url, headers=headers, json={"model": model, "messages": MESSAGES})
    assert answer.status_code == 200
    body = answer.json()
    assert body["object"] == "chat.completion"
    assert body["choices"][0]["message"]["content"] == reply("huggingface", model)
    assert body["usage"] == {"prompt_tokens": 4, "completion_tokens": 6, "total_tokens": 10,
                             "prompt_tokens_details": {"cached_tokens": 0},
                             "completion_tokens_details": {"reasoning_tokens": 0}}

    payload = {
        "model": model,
        "messages": MESSAGES,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    async with http.stream("POST", url, headers=headers, json=payload) as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        events = data_events(await sse_lines(response))
    assert events[-1] == "[DONE]"
    chunks = [json.loads(e) for e in events[:-1]]
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])
    assert text == reply("huggingface", model)
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["completion_tokens"] == 6
    assert last(fake, "huggingface").headers["authorization"] == "Bearer hf_test"


# --------------------------------------------------------------------------- Claude


async def test_claude_message(fake: FakeVendor, http: httpx2.AsyncClient) -> None:
    client = claude_client(fake, http)
    message = await client.messages.create(
        model="claude-test-1",
        max_tokens=100,
        system="be brief",
        messages=[{"role": "user", "content": "hello there"}],
    )
    assert message.type == "message" and message.role == "assistant"
    assert message.content[0].type == "text"
    assert message.content[0].text == reply("claude", "claude-test-1")
    assert message.stop_reason == "end_turn" and message.stop_sequence is None
    assert (message.usage.input_tokens, message.usage.output_tokens) == (4, 6)

    record = last(fake, "claude")
    assert record.path == "/claude/v1/messages"
    # anthropic 2.13 sends the key as a Bearer token, plus anthropic-version.
    assert record.headers["authorization"] == "Bearer sk-ant-test"
    assert "x-api-key" not in record.headers
    assert record.headers["anthropic-version"]
    assert record.body["system"] == "be brief" and record.body["max_tokens"] == 100


async def test_claude_accepts_x_api_key(fake: FakeVendor, http: httpx2.AsyncClient) -> None:
    url = fake.base_url("claude") + "/v1/messages"
    body = {"model": "claude-x", "max_tokens": 10, "messages": [{"role": "user", "content": "a"}]}
    answer = await http.post(url, headers={"x-api-key": "sk-ant-legacy"}, json=body)
    assert answer.status_code == 200
    assert answer.json()["content"][0]["text"] == reply("claude", "claude-x", "a")
    missing = await http.post(url, json=body)
    assert missing.status_code == 401
    assert missing.json()["error"]["type"] == "authentication_error"


async def test_claude_stream_events(fake: FakeVendor, http: httpx2.AsyncClient) -> None:
    client = claude_client(fake, http)
    stream = await client.messages.create(
        model="claude-x",
        max_tokens=100,
        system=[{"type": "text", "text": "be brief"}],
        messages=[{"role": "user", "content": "hello there"}],
        stream=True,
    )
    events = [event async for event in stream]
    assert [e.type for e in events] == [
        "message_start",
        "content_block_start",
        *["content_block_delta"] * 4,
        "content_block_stop",
        "message_delta",
        "message_stop",
    ]
    assert events[0].message.usage.input_tokens == 4
    text = "".join(e.delta.text for e in events if e.type == "content_block_delta")
    assert text == reply("claude", "claude-x")
    delta = events[-2]
    assert delta.usage.output_tokens == 6 and delta.delta.stop_reason == "end_turn"


async def test_claude_stream_helper(fake: FakeVendor, http: httpx2.AsyncClient) -> None:
    client = claude_client(fake, http)
    async with client.messages.stream(
        model="claude-x", max_tokens=100, messages=[{"role": "user", "content": "hello there"}]
    ) as stream:
        text = "".join([piece async for piece in stream.text_stream])
        final = await stream.get_final_message()
    assert text == reply("claude", "claude-x")
    assert final.content[0].text == text
    assert (final.usage.input_tokens, final.usage.output_tokens) == (2, 6)


# --------------------------------------------------------------------------- Gemini


async def test_gemini_generate_content(fake: FakeVendor, gemini: genai.client.AsyncClient) -> None:
    result = await gemini.models.generate_content(
        model="gemini-3.1-flash-lite",
        contents="hello there",
        config=genai_types.GenerateContentConfig(
            system_instruction="be brief", temperature=0.2, max_output_tokens=50
        ),
    )
    assert result.text == reply("gemini", "gemini-3.1-flash-lite")
    assert result.candidates and result.candidates[0].finish_reason == "STOP"
    assert result.candidates[0].content and result.candidates[0].content.role == "model"
    usage = result.usage_metadata
    assert usage is not None
    assert (usage.prompt_token_count, usage.candidates_token_count) == (4, 6)
    assert usage.total_token_count == 10
    assert result.model_version == "gemini-3.1-flash-lite"

    record = last(fake, "gemini")
    # google-genai 3.6 defaults to API version v1 and joins it onto the base URL's path.
    assert record.path == "/gemini/v1/models/gemini-3.1-flash-lite:generateContent"
    assert record.headers["x-goog-api-key"] == "g-key-1"
    assert record.body["contents"] == [{"role": "user", "parts": [{"text": "hello there"}]}]
    assert record.body["systemInstruction"]["parts"] == [{"text": "be brief"}]
    assert record.body["generationConfig"] == {"temperature": 0.2, "maxOutputTokens": 50}


async def test_gemini_stream_v1beta(fake: FakeVendor) -> None:
    client = genai.Client(
        api_key="g-key-2",
        http_options=genai_types.HttpOptions(
            base_url=fake.base_url("gemini"), api_version="v1beta", timeout=5000,
            httpx_async_client=httpx2.AsyncClient(),
        ),
    )
    try:
        stream = await client.aio.models.generate_content_stream(
            model="gemini-3.1-flash-lite", contents="hello there"
        )
        chunks = [chunk async for chunk in stream]
    finally:
        await client.aio.aclose()
    assert len(chunks) == 4
    assert "".join(c.text or "" for c in chunks) == reply("gemini", "gemini-3.1-flash-lite")
    assert all(c.usage_metadata is None for c in chunks[:-1])
    final = chunks[-1]
    assert final.usage_metadata is not None
    assert final.usage_metadata.candidates_token_count == 6
    assert final.candidates and final.candidates[0].finish_reason == "STOP"
    record = last(fake, "gemini")
    assert record.path == "/gemini/v1beta/models/gemini-3.1-flash-lite:streamGenerateContent"
    assert record.query == {"alt": "sse"} and record.stream


async def test_gemini_raw_key_param_and_json_array(
    fake: FakeVendor, http: httpx2.AsyncClient
) -> None:
    """Without alt=sse, streamGenerateContent answers one JSON array; ?key= is accepted."""
    url = fake.base_url("gemini") + "/v1beta/models/gemini-x:streamGenerateContent"
    body = {"contents": [{"role": "user", "parts": [{"text": "hello there"}]}]}
    answer = await http.post(url, params={"key": "g-key-q"}, json=body)
    assert answer.status_code == 200
    chunks = answer.json()
    assert isinstance(chunks, list)
    assert chunks[-1]["candidates"][0]["content"]["parts"][0]["text"] == reply("gemini", "gemini-x")
    assert chunks[-1]["usageMetadata"]["promptTokenCount"] == 2


# --------------------------------------------------------------------------- Qwen


def qwen_body(incremental: bool | None = None, **parameters: Any) -> dict[str, Any]:
    params: dict[str, Any] = {"result_format": "message", "temperature": 0.5, "max_tokens": 50}
    if incremental is not None:
        params["incremental_output"] = incremental
    params.update(parameters)
    return {"model": "qwen-max", "input": {"messages": MESSAGES}, "parameters": params}


async def test_qwen_generation(fake: FakeVendor, http: httpx2.AsyncClient) -> None:
    url = fake.base_url("qwen") + QWEN_PATH
    answer = await http.post(url, headers={"Authorization": "Bearer sk-qwen"}, json=qwen_body())
    assert answer.status_code == 200
    body = answer.json()
    choice = body["output"]["choices"][0]
    assert choice == {
        "finish_reason": "stop",
        "message": {"role": "assistant", "content": reply("qwen", "qwen-max")},
    }
    assert body["usage"] == {"input_tokens": 4, "output_tokens": 6, "total_tokens": 10}
    assert body["request_id"]
    assert last(fake, "qwen").headers["authorization"] == "Bearer sk-qwen"


async def test_qwen_text_result_format(fake: FakeVendor, http: httpx2.AsyncClient) -> None:
    url = fake.base_url("qwen") + QWEN_PATH
    body = {"model": "qwen-turbo", "input": {"prompt": "hello there"}}
    answer = await http.post(url, headers={"Authorization": "Bearer sk-qwen"}, json=body)
    assert answer.json()["output"] == {
        "text": reply("qwen", "qwen-turbo"),
        "finish_reason": "stop",
    }


@pytest.mark.parametrize("incremental", [True, False])
async def test_qwen_stream(fake: FakeVendor, http: httpx2.AsyncClient, incremental: bool) -> None:
    url = fake.base_url("qwen") + QWEN_PATH
    headers = {
        "Authorization": "Bearer sk-qwen",
        "X-DashScope-SSE": "enable",
        "Accept": "text/event-stream",
    }
    async with http.stream("POST", url, headers=headers, json=qwen_body(incremental)) as response:
        assert response.status_code == 200
        lines = await sse_lines(response)
    assert lines[:3] == ["id:1", "event:result", ":HTTP_STATUS/200"]
    events = [json.loads(d) for d in data_events(lines, "data:")]
    assert len(events) == 4
    texts = [e["output"]["choices"][0]["message"]["content"] for e in events]
    expected = reply("qwen", "qwen-max")
    if incremental:
        assert "".join(texts) == expected
    else:
        assert all(expected.startswith(t) for t in texts) and texts[-1] == expected
    finishes = [e["output"]["choices"][0]["finish_reason"] for e in events]
    assert finishes == ["null", "null", "null", "stop"]  # DashScope sends the string "null"
    assert events[-1]["usage"] == {"input_tokens": 4, "output_tokens": 6, "total_tokens": 10}
    assert all(e["usage"]["input_tokens"] == 4 for e in events)


# --------------------------------------------------------------------------- errors


@pytest.mark.parametrize(
    ("mode", "error", "status"),
    [
        ("auth", openai.AuthenticationError, 401),
        ("rate_limit", openai.RateLimitError, 429),
        ("server_error", openai.InternalServerError, 500),
        ("bad_request", openai.BadRequestError, 400),
    ],
)
async def test_openai_errors(
    fake: FakeVendor, http: httpx2.AsyncClient, mode: str, error: type[Exception], status: int
) -> None:
    fake.set_behaviour(mode, provider="openai")
    with pytest.raises(error) as caught:
        await openai_client(fake, http).chat.completions.create(model="gpt-4o", messages=MESSAGES)
    exc = caught.value
    assert isinstance(exc, openai.APIStatusError) and exc.status_code == status
    assert isinstance(exc.body, dict) and exc.body["message"]
    if mode == "rate_limit":
        assert exc.response.headers["retry-after"] == "7"
        assert exc.code == "rate_limit_exceeded"
    if mode == "auth":
        assert exc.code == "invalid_api_key"
    assert last(fake, "openai").mode == mode


async def test_rate_limit_retry_after_option(fake: FakeVendor, http: httpx2.AsyncClient) -> None:
    fake.set_behaviour("rate_limit", provider="openai", retry_after=3)
    with pytest.raises(openai.RateLimitError) as caught:
        await openai_client(fake, http).chat.completions.create(model="gpt-4o", messages=MESSAGES)
    assert caught.value.response.headers["retry-after"] == "3"


async def test_openai_hang_times_out_and_disconnect_is_seen(
    fake: FakeVendor, http: httpx2.AsyncClient
) -> None:
    fake.set_behaviour("hang", provider="openai")
    client = openai_client(fake, http).with_options(timeout=0.5)
    with pytest.raises(openai.APITimeoutError):
        await client.chat.completions.create(model="gpt-4o", messages=MESSAGES)
    await wait_for(lambda: last(fake, "openai").disconnected_at is not None)
    record = last(fake, "openai")
    # The hang (bound: 300 s) ended by the client leaving, not by the fake answering.
    assert record.status is None and record.finished_at is None


async def test_openai_malformed(fake: FakeVendor, http: httpx2.AsyncClient) -> None:
    fake.set_behaviour("malformed", provider="openai")
    with pytest.raises(json.JSONDecodeError):  # the openai SDK lets the decode error through
        await openai_client(fake, http).chat.completions.create(model="gpt-4o", messages=MESSAGES)
    answer = await http.post(
        fake.base_url("openai") + "/chat/completions",
        headers={"Authorization": "Bearer sk-x"},
        json={"model": "gpt-4o", "messages": MESSAGES},
    )
    assert answer.status_code == 200
    assert answer.headers["content-type"] == "application/json"
    with pytest.raises(json.JSONDecodeError):
        json.loads(answer.content)


async def test_openai_stream_error_event(fake: FakeVendor, http: httpx2.AsyncClient) -> None:
    fake.set_behaviour("stream_error", provider="openai")
    stream = await openai_client(fake, http).chat.completions.create(
        model="gpt-4o", messages=MESSAGES, stream=True
    )
    texts: list[str] = []
    with pytest.raises(openai.APIError) as caught:
        async for chunk in stream:
            if chunk.choices and chunk.choices[0].delta.content:
                texts.append(chunk.choices[0].delta.content)
    assert not isinstance(caught.value, openai.APIStatusError)  # raised mid-stream, HTTP 200
    assert caught.value.body == {
        "message": "The server had an error while processing your request. Sorry about that!",
        "type": "server_error",
        "param": None,
        "code": None,
    }
    assert len(texts) == 2


async def test_huggingface_stream_error_drops_connection(
    fake: FakeVendor, http: httpx2.AsyncClient
) -> None:
    fake.set_behaviour("stream_error", provider="huggingface")
    payload = {"model": "m", "messages": MESSAGES, "stream": True}
    url = fake.base_url("huggingface") + "/chat/completions"
    events: list[str] = []
    with pytest.raises(httpx2.RemoteProtocolError):
        async with http.stream(
            "POST", url, headers={"Authorization": "Bearer hf_x"}, json=payload
        ) as response:
            async for line in response.aiter_lines():
                if line.startswith("data: "):
                    events.append(line)
    assert len(events) == 3  # the role chunk, then 2 pieces
    # The same failure through the openai SDK is a connection error.
    stream = await openai_client(fake, http, "huggingface").chat.completions.create(
        model="m", messages=MESSAGES, stream=True
    )
    with pytest.raises(openai.APIConnectionError):
        async for _ in stream:
            pass


@pytest.mark.parametrize(
    ("mode", "error", "status", "kind"),
    [
        ("auth", anthropic.AuthenticationError, 401, "authentication_error"),
        ("rate_limit", anthropic.RateLimitError, 429, "rate_limit_error"),
        ("server_error", anthropic.InternalServerError, 500, "api_error"),
        ("bad_request", anthropic.BadRequestError, 400, "invalid_request_error"),
    ],
)
async def test_claude_errors(
    fake: FakeVendor,
    http: httpx2.AsyncClient,
    mode: str,
    error: type[Exception],
    status: int,
    kind: str,
) -> None:
    fake.set_behaviour(mode, provider="claude")
    with pytest.raises(error) as caught:
        await claude_client(fake, http).messages.create(
            model="claude-x", max_tokens=10, messages=[{"role": "user", "content": "hi"}]
        )
    exc = caught.value
    assert isinstance(exc, anthropic.APIStatusError)
    assert exc.status_code == status and exc.type == kind
    assert exc.request_id and exc.request_id.startswith("req_")
    if mode == "rate_limit":
        assert exc.response.headers["retry-after"] == "7"


async def test_claude_stream_error_event(fake: FakeVendor, http: httpx2.AsyncClient) -> None:
    fake.set_behaviour("stream_error", provider="claude")
    stream = await claude_client(fake, http).messages.create(
        model="claude-x", max_tokens=10, messages=[{"role": "user", "content": "hi"}], stream=True
    )
    deltas = 0
    with pytest.raises(anthropic.APIStatusError) as caught:
        async for event in stream:
            deltas += event.type == "content_block_delta"
    assert deltas == 2
    assert caught.value.type == "overloaded_error"
    assert caught.value.status_code == 200  # the HTTP status of the stream that carried it


async def test_claude_hang_times_out(fake: FakeVendor, http: httpx2.AsyncClient) -> None:
    fake.set_behaviour("hang", provider="claude")
    with pytest.raises(anthropic.APITimeoutError):
        await (
            claude_client(fake, http)
            .with_options(timeout=0.3)
            .messages.create(
                model="claude-x", max_tokens=10, messages=[{"role": "user", "content": "hi"}]
            )
        )


@pytest.mark.parametrize(
    ("mode", "error", "code", "status"),
    [
        ("auth", genai_errors.ClientError, 400, "INVALID_ARGUMENT"),
        ("rate_limit", genai_errors.ClientError, 429, "RESOURCE_EXHAUSTED"),
        ("server_error", genai_errors.ServerError, 500, "INTERNAL"),
        ("bad_request", genai_errors.ClientError, 400, "INVALID_ARGUMENT"),
    ],
)
async def test_gemini_errors(
    fake: FakeVendor,
    gemini: genai.client.AsyncClient,
    mode: str,
    error: type[Exception],
    code: int,
    status: str,
) -> None:
    fake.set_behaviour(mode, provider="gemini")
    with pytest.raises(error) as caught:
        await gemini.models.generate_content(model="gemini-3.1-flash-lite", contents="hi")
    exc = caught.value
    assert isinstance(exc, genai_errors.APIError)
    assert (exc.code, exc.status) == (code, status)
    if mode == "auth":
        assert exc.message == "API key not valid. Please pass a valid API key."
        assert exc.details["error"]["details"][0]["reason"] == "API_KEY_INVALID"
    if mode == "rate_limit":
        assert exc.response is not None and exc.response.headers["retry-after"] == "7"
        assert exc.details["error"]["details"][0]["retryDelay"] == "7s"


async def test_gemini_hang_is_a_raw_httpx2_timeout(fake: FakeVendor) -> None:
    fake.set_behaviour("hang", provider="gemini")
    # An explicit httpx2 client, as the service passes one (with aiohttp installed, google-genai
    # otherwise uses aiohttp, whose timeouts surface differently).
    client = genai.Client(
        api_key="g-key",
        http_options=genai_types.HttpOptions(
            base_url=fake.base_url("gemini"), timeout=300, httpx_async_client=httpx2.AsyncClient()
        ),
    )
    try:
        with pytest.raises(httpx2.TimeoutException):  # google-genai does not wrap timeouts
            await client.aio.models.generate_content(model="gemini-3.1-flash-lite", contents="hi")
    finally:
        await client.aio.aclose()
    await wait_for(lambda: last(fake, "gemini").disconnected_at is not None)


async def test_gemini_stream_error(fake: FakeVendor, gemini: genai.client.AsyncClient) -> None:
    fake.set_behaviour("stream_error", provider="gemini")
    texts: list[str] = []
    with pytest.raises(genai_errors.ServerError) as caught:
        async for chunk in await gemini.models.generate_content_stream(
            model="gemini-3.1-flash-lite", contents="hi"
        ):
            texts.append(chunk.text or "")
    assert len(texts) == 2
    assert (caught.value.code, caught.value.status) == (500, "INTERNAL")


async def test_gemini_malformed_stream(fake: FakeVendor, gemini: genai.client.AsyncClient) -> None:
    fake.set_behaviour("malformed", provider="gemini")
    with pytest.raises(genai_errors.UnknownApiResponseError):
        async for _ in await gemini.models.generate_content_stream(
            model="gemini-3.1-flash-lite", contents="hi"
        ):
            pass


@pytest.mark.parametrize(
    ("mode", "status", "code"),
    [
        ("auth", 401, "InvalidApiKey"),
        ("rate_limit", 429, "Throttling"),
        ("server_error", 500, "InternalError"),
        ("bad_request", 400, "InvalidParameter"),
    ],
)
async def test_qwen_errors(
    fake: FakeVendor, http: httpx2.AsyncClient, mode: str, status: int, code: str
) -> None:
    fake.set_behaviour(mode, provider="qwen")
    answer = await http.post(
        fake.base_url("qwen") + QWEN_PATH,
        headers={"Authorization": "Bearer sk-qwen"},
        json=qwen_body(),
    )
    assert answer.status_code == status
    body = answer.json()
    assert body["code"] == code and body["message"] and body["request_id"]
    if mode == "rate_limit":
        assert answer.headers["retry-after"] == "7"


async def test_qwen_stream_error_event(fake: FakeVendor, http: httpx2.AsyncClient) -> None:
    fake.set_behaviour("stream_error", provider="qwen")
    headers = {"Authorization": "Bearer sk-qwen", "X-DashScope-SSE": "enable"}
    async with http.stream(
        "POST", fake.base_url("qwen") + QWEN_PATH, headers=headers, json=qwen_body(True)
    ) as response:
        lines = await sse_lines(response)
    assert lines.count("event:result") == 2
    at = lines.index("event:error")
    assert lines[at - 1] == "id:3" and lines[at + 1] == ":HTTP_STATUS/500"
    assert json.loads(lines[at + 2].removeprefix("data:"))["code"] == "InternalError"


async def test_qwen_malformed(fake: FakeVendor, http: httpx2.AsyncClient) -> None:
    fake.set_behaviour("malformed", provider="qwen")
    answer = await http.post(
        fake.base_url("qwen") + QWEN_PATH, headers={"Authorization": "Bearer k"}, json=qwen_body()
    )
    assert answer.status_code == 200 and answer.headers["content-type"] == "application/json"
    with pytest.raises(json.JSONDecodeError):
        answer.json()


@pytest.mark.parametrize(
    ("provider", "path", "key_header", "missing", "bad"),
    [
        ("openai", "/chat/completions", "authorization", 401, 401),
        ("huggingface", "/chat/completions", "authorization", 401, 401),
        ("claude", "/v1/messages", "x-api-key", 401, 401),
        ("gemini", "/v1/models/gemini-3.1-flash-lite:generateContent", "x-goog-api-key", 403, 400),
        ("qwen", QWEN_PATH, "authorization", 401, 401),
    ],
)
async def test_missing_and_bad_keys(
    fake: FakeVendor,
    http: httpx2.AsyncClient,
    provider: str,
    path: str,
    key_header: str,
    missing: int,
    bad: int,
) -> None:
    """Without a key: the vendor's missing-key answer; a key starting with "bad": invalid key."""
    url = fake.base_url(provider) + path
    body = {"model": "m", "messages": MESSAGES, "max_tokens": 5}
    value = "Bearer bad-key-123" if key_header == "authorization" else "bad-key-123"
    assert (await http.post(url, json=body)).status_code == missing
    assert (await http.post(url, json=body, headers={key_header: value})).status_code == bad
    assert [r.headers.get(key_header) for r in fake.requests_for(provider)] == [None, value]


async def test_invalid_body_is_a_vendor_400(fake: FakeVendor, http: httpx2.AsyncClient) -> None:
    client = openai_client(fake, http)
    with pytest.raises(openai.BadRequestError):
        await client.chat.completions.create(model="gpt-4o", messages=[])
    with pytest.raises(anthropic.BadRequestError):
        await claude_client(fake, http).messages.create(model="c", max_tokens=5, messages=[])


# --------------------------------------------------------------------------- behaviours


async def test_times_then_back_to_normal(fake: FakeVendor, http: httpx2.AsyncClient) -> None:
    fake.set_behaviour("rate_limit", provider="openai", times=2)
    client = openai_client(fake, http)
    for _ in range(2):
        with pytest.raises(openai.RateLimitError):
            await client.chat.completions.create(model="gpt-4o", messages=MESSAGES)
    ok = await client.chat.completions.create(model="gpt-4o", messages=MESSAGES)
    assert ok.choices[0].message.content == reply("openai", "gpt-4o")
    assert [r.mode for r in fake.requests_for("openai")] == ["rate_limit", "rate_limit", "ok"]


async def test_provider_behaviour_beats_global(fake: FakeVendor, http: httpx2.AsyncClient) -> None:
    fake.set_behaviour("server_error")
    fake.set_behaviour("ok", provider="qwen")
    fake.set_behaviour("auth", provider="claude", times=1)
    with pytest.raises(openai.InternalServerError):
        await openai_client(fake, http).chat.completions.create(model="m", messages=MESSAGES)
    qwen = await http.post(
        fake.base_url("qwen") + QWEN_PATH, headers={"Authorization": "Bearer k"}, json=qwen_body()
    )
    assert qwen.status_code == 200
    claude = claude_client(fake, http)
    with pytest.raises(anthropic.AuthenticationError):
        await claude.messages.create(model="c", max_tokens=5, messages=MESSAGES[1:])
    with pytest.raises(anthropic.InternalServerError):  # claude's one-off is used up: global
        await claude.messages.create(model="c", max_tokens=5, messages=MESSAGES[1:])
    fake.reset()
    ok = await openai_client(fake, http).chat.completions.create(model="m", messages=MESSAGES)
    assert ok.choices[0].finish_reason == "stop"
    assert len(fake.requests) == 1


def test_set_behaviour_validates(fake: FakeVendor) -> None:
    with pytest.raises(ValueError, match="unknown mode"):
        fake.set_behaviour("explode")
    with pytest.raises(ValueError, match="unknown provider"):
        fake.set_behaviour("ok", provider="mistral")
    with pytest.raises(ValueError, match="times"):
        fake.set_behaviour("ok", times=0)
    with pytest.raises(ValueError, match="unknown option"):
        fake.set_behaviour("rate_limit", retry=3)


async def test_http_control(fake: FakeVendor, http: httpx2.AsyncClient) -> None:
    control = fake.url + "/_fake"
    answer = await http.post(
        control + "/behaviour", json={"mode": "auth", "provider": "qwen", "times": 1}
    )
    assert answer.status_code == 200
    assert answer.json()["behaviours"] == {"qwen": {"mode": "auth", "times": 1}}
    url = fake.base_url("qwen") + QWEN_PATH
    headers = {"Authorization": "Bearer sk-raw-key"}
    assert (await http.post(url, headers=headers, json=qwen_body())).status_code == 401
    assert (await http.post(url, headers=headers, json=qwen_body())).status_code == 200

    records = (await http.get(control + "/requests")).json()
    assert [r["status"] for r in records] == [401, 200]
    assert records[0]["headers"]["authorization"] == "Bearer sk-raw-key"  # raw, not masked
    assert records[0]["body"]["model"] == "qwen-max"
    assert (await http.get(control + "/requests", params={"provider": "gemini"})).json() == []

    bad = await http.post(control + "/behaviour", json={"mode": "nope"})
    assert bad.status_code == 400 and "unknown mode" in bad.json()["error"]
    bad = await http.post(control + "/behaviour", json={"mode": "ok", "colour": "red"})
    assert bad.status_code == 400
    assert (await http.post(control + "/reset")).status_code == 200
    assert (await http.get(control + "/requests")).json() == []
    assert (await http.get(control + "/behaviour")).json() == {"behaviours": {}}


# --------------------------------------------------------------------------- disconnects


async def test_openai_stream_client_disconnect_reaches_vendor(
    fake: FakeVendor, http: httpx2.AsyncClient
) -> None:
    fake.set_behaviour("ok", provider="openai", pieces=40, delay=0.05)
    stream = await openai_client(fake, http).chat.completions.create(
        model="gpt-4o", messages=MESSAGES, stream=True
    )
    seen = 0
    async for _ in stream:
        seen += 1
        if seen == 3:
            break
    await stream.close()
    await wait_for(lambda: last(fake, "openai").disconnected_at is not None)
    # The vendor saw the client leave before it had sent its 40 pieces (ordering, not timing).
    assert last(fake, "openai").finished_at is None


async def test_claude_stream_client_disconnect_reaches_vendor(
    fake: FakeVendor, http: httpx2.AsyncClient
) -> None:
    fake.set_behaviour("ok", provider="claude", pieces=40, delay=0.05)
    async with claude_client(fake, http).messages.stream(
        model="claude-x", max_tokens=10, messages=[{"role": "user", "content": "hello there"}]
    ) as stream:
        async for _ in stream.text_stream:
            break
    await wait_for(lambda: last(fake, "claude").disconnected_at is not None)
    # The vendor saw the client leave before it had sent its 40 pieces (ordering, not timing).
    assert last(fake, "claude").finished_at is None


# --------------------------------------------------------------------------- lifecycle


async def test_stop_does_not_wait_for_hanging_requests() -> None:
    with FakeVendor() as own:
        own.set_behaviour("hang")
        assert own.url.startswith("http://127.0.0.1:") and own.port > 0
        assert own.env()["LLM_CLAUDE_BASE_URL"] == own.url + "/claude"
        async with httpx2.AsyncClient(timeout=30) as client:
            pending = asyncio.ensure_future(
                client.post(
                    own.base_url("openai") + "/chat/completions",
                    headers={"Authorization": "Bearer k"},
                    json={"model": "m", "messages": MESSAGES},
                )
            )
            await wait_for(lambda: len(own.requests) == 1)
            server = own._server
            assert server is not None
            await asyncio.to_thread(own.stop)
            # The hang (bound: 300 s) was released: the server exited without being forced.
            assert not server.force_exit
            try:
                answer = await asyncio.wait_for(pending, 5)
            except httpx2.TransportError:
                pass  # the connection went away with the server: also fine
            else:
                assert answer.status_code == 503


def test_standalone_command_prints_base_urls() -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    process = subprocess.Popen(
        [sys.executable, "-m", "tests.fakes.vendor", "--port", "0", "--log-level", "warning"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert process.stdout is not None
        lines = dict(process.stdout.readline().strip().split("=", 1) for _ in range(5))
        assert sorted(lines) == sorted(
            [
                "LLM_OPENAI_BASE_URL",
                "LLM_GEMINI_BASE_URL",
                "LLM_CLAUDE_BASE_URL",
                "LLM_QWEN_BASE_URL",
                "LLM_HUGGINGFACE_BASE_URL",
            ]
        )
        base = lines["LLM_QWEN_BASE_URL"]
        assert base.startswith("http://127.0.0.1:") and base.endswith("/qwen")
        assert lines["LLM_OPENAI_BASE_URL"].endswith("/openai/v1")
        answer = httpx2.post(
            base + QWEN_PATH, headers={"Authorization": "Bearer k"}, json=qwen_body(), timeout=5
        )
        assert answer.json()["output"]["choices"][0]["message"]["content"] == reply(
            "qwen", "qwen-max"
        )
    finally:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    assert process.returncode == 0
