"""The OpenAI chat-completions wire format, for every vendor that speaks it (OpenAI, the Hugging
Face router, and any later OpenAI-compatible vendor): one module builds the request and reads
answers, chunks and errors, parameterised by the vendor's spec. Answers are validated with small
pydantic models: only the fields we use, so a vendor adding fields changes nothing, and a missing
one is a malformed answer.

Spec options: `max_tokens_field` (`max_completion_tokens` for OpenAI, `max_tokens` elsewhere);
`developer_role` (OpenAI): the system prompt of a reasoning model goes in a `developer` message
(`system_role`), every other one in a `system` message, first in `messages`.
The transport is the shared httpx2 pool; `openai.py` sends the same request through the official
SDK instead. Both paths (complete and stream) make one request the same way and map failures in
one place, `_failures`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any

import httpx2
from pydantic import BaseModel, ValidationError

from llm_service.jsonutil import dumps, loads
from llm_service.providers.base import (
    ChatRequest,
    ChatTurn,
    Completion,
    Credentials,
    FailureKind,
    FinishReason,
    Provider,
    ProviderError,
    StreamDelta,
    StreamEvent,
    StreamUsage,
    checked_answer,
    empty_answer,
    refused,
    sse_events,
    status_failure,
    stream_cut,
    stream_error_event,
    unreadable_chunk,
)


class _Message(BaseModel):
    content: str | None = None
    refusal: str | None = None


class _Choice(BaseModel):
    message: _Message
    finish_reason: str | None = None


class _PromptDetails(BaseModel):
    cached_tokens: int | None = None


class _Usage(BaseModel):
    prompt_tokens: int = 0
    # Includes completion_tokens_details.reasoning_tokens (openai/types/completion_usage.py).
    completion_tokens: int = 0
    prompt_tokens_details: _PromptDetails | None = None

    @property
    def cached(self) -> int:
        details = self.prompt_tokens_details
        return (details.cached_tokens or 0) if details else 0


class _ChatCompletion(BaseModel):
    model: str | None = None
    choices: list[_Choice]
    usage: _Usage | None = None


class _Delta(BaseModel):
    content: str | None = None
    refusal: str | None = None


class _ChunkChoice(BaseModel):
    delta: _Delta
    finish_reason: str | None = None


class _Chunk(BaseModel):
    model: str | None = None
    choices: list[_ChunkChoice] = []
    usage: _Usage | None = None
    # The Hugging Face router reports a failure mid-stream as a chunk with `error`.
    error: Any = None


def messages(
    turns: Sequence[ChatTurn], system: str | None = None, system_role: str = "system"
) -> list[dict[str, str]]:
    """The turns in the wire format, the system prompt (when there is one) first, once."""
    first = [{"role": system_role, "content": system}] if system else []
    return [*first, *({"role": turn.role, "content": turn.content} for turn in turns)]


def request_body(
    request: ChatRequest, max_tokens_field: str, *, stream: bool = False,
    temperature: bool = True, system_role: str = "system",
) -> dict[str, Any]:
    """The chat-completions body. `temperature=False` leaves it out: OpenAI's reasoning models
    (o1/o3/o4, gpt-5*, gpt-6*) answer 400 `unsupported_value` to any temperature but 1.
    `request.system` is the first message, in the role `system_role`."""
    body: dict[str, Any] = {
        "model": request.model,
        "messages": messages(request.messages, request.system, system_role),
        max_tokens_field: request.max_tokens,
    }
    if temperature:
        body["temperature"] = request.temperature
    if stream:
        body["stream"] = True
        body["stream_options"] = {"include_usage": True}
    return body


def _error_text(error: Any) -> str | None:
    if isinstance(error, dict):
        error = error.get("message")
    return error if isinstance(error, str) else None


def finish_reason(reason: str | None, refusal: str | None, api_key: str) -> FinishReason | None:
    """The service's finish reason of an OpenAI-style choice, or `refused(...)` raised for a
    refusal or a content-filter stop (openai/types/chat/chat_completion.py)."""
    if refusal:
        raise refused(refusal, api_key)
    if reason == "content_filter":
        raise refused("its content filter stopped the answer")
    if reason == "length":
        return "length"
    return None if reason is None else "stop"


def parse_chunk(data: str, api_key: str) -> list[StreamEvent]:
    """The events of one `chat.completion.chunk` (usage comes in a last chunk without choices).
    The Hugging Face router reports a failure mid-stream as a chunk `{"error", "error_type"}`."""
    try:
        chunk = _Chunk.model_validate_json(data)
    except ValidationError:
        raise unreadable_chunk() from None
    if chunk.error is not None:
        raise stream_error_event(_error_text(chunk.error), api_key)
    events: list[StreamEvent] = []
    for choice in chunk.choices:
        if choice.delta.content:
            events.append(StreamDelta(choice.delta.content))
        finish = finish_reason(choice.finish_reason, choice.delta.refusal, api_key)
        if finish is not None:
            events.append(StreamUsage(finish_reason=finish))
    if chunk.usage is not None:
        events.append(StreamUsage(chunk.model, chunk.usage.prompt_tokens,
                                  chunk.usage.completion_tokens,
                                  cached_input_tokens=chunk.usage.cached))
    return events


def parse_completion(raw: bytes, api_key: str = "") -> Completion:
    try:
        answer = _ChatCompletion.model_validate_json(raw)
        choice = answer.choices[0]
    except (ValidationError, IndexError):
        raise ProviderError(FailureKind.MALFORMED) from None
    text = choice.message.content or ""
    finish = finish_reason(choice.finish_reason, choice.message.refusal, api_key) or "stop"
    checked_answer(text, finish)
    usage = answer.usage
    return Completion(
        text=text,
        model=answer.model,
        input_tokens=usage.prompt_tokens if usage else 0,
        output_tokens=usage.completion_tokens if usage else 0,
        finish_reason=finish,
        cached_input_tokens=usage.cached if usage else 0,
    )


def error_message(body: bytes) -> str | None:
    """The message of an OpenAI-style error: `{"error": {"message"}}` or `{"error": "..."}`."""
    try:
        data: Any = loads(body)
    except ValueError:
        return None
    return _error_text(data.get("error")) if isinstance(data, dict) else None


def _error_code(body: bytes) -> str | None:
    try:
        data: Any = loads(body)
    except ValueError:
        return None
    error = data.get("error") if isinstance(data, dict) else None
    if not isinstance(error, dict):
        return None
    code = error.get("code") or error.get("type")
    return code if isinstance(code, str) else None


def http_failure(response: httpx2.Response, api_key: str) -> ProviderError:
    """An OpenAI-style HTTP error answer (its body already read). `insufficient_quota` (a 429
    that retrying does not fix, https://platform.openai.com/docs/guides/error-codes) and HTTP
    402 (the Hugging Face router's exhausted credits) are billing failures."""
    try:
        detail = error_message(response.content)
        code = _error_code(response.content)
    except httpx2.ResponseNotRead:
        detail, code = None, None
    return status_failure(response.status_code, detail, api_key, response.headers,
                          billing=code == "insufficient_quota")


class OpenAICompatibleProvider(Provider):
    """`POST {base}/chat/completions` over the shared httpx2 pool."""

    path = "/chat/completions"

    def _max_tokens_field(self, model: str) -> str:
        """The catalogue's token-limit field for the model, else the spec's option."""
        caps = self.capabilities(model)
        if caps is not None and caps.token_limit_field in ("max_completion_tokens", "max_tokens"):
            return caps.token_limit_field
        return str(self.spec.options.get("max_tokens_field", "max_tokens"))

    def system_role(self, model: str) -> str:
        """The role of the system prompt's message: `developer` for OpenAI's reasoning models,
        `system` for every other model and vendor.

        The rule: a vendor whose spec sets `developer_role` (OpenAI) and a model the catalogue
        gives OpenAI-style reasoning (`reasoning_effort`: o1 and later o-series, gpt-5*, gpt-6*)
        get `developer`. Sources: openai/types/chat/chat_completion_developer_message_param.py
        ("With o1 models and newer, `developer` messages replace the previous `system`
        messages") and https://developers.openai.com/api/docs/guides/reasoning ("developer
        messages are the new system messages"). OpenAI turns a `system` message into a
        `developer` one for a reasoning model and back for the others, so `system` stays right
        for gpt-4o, gpt-4.1 and ids the catalogue does not know; the Hugging Face router's
        providers take `system`.
        """
        if not self.spec.options.get("developer_role"):
            return "system"
        caps = self.capabilities(model)
        reasoning = caps.reasoning if caps is not None else None
        if reasoning is not None and reasoning.control == "reasoning_effort":
            return "developer"
        return "system"

    def body(self, request: ChatRequest, *, stream: bool) -> dict[str, Any]:
        """The request as this model accepts it (the catalogue's rules)."""
        return request_body(request, self._max_tokens_field(request.model), stream=stream,
                            temperature=self.takes_temperature(request.model),
                            system_role=self.system_role(request.model))

    @asynccontextmanager
    async def _send(
        self, body: dict[str, Any], creds: Credentials, *, stream: bool
    ) -> AsyncIterator[httpx2.Response]:
        """The vendor's answer to one request (its body unread when streaming); an HTTP error
        answer is raised as `ProviderError`."""
        headers = {"Authorization": f"Bearer {creds.api_key}", "Content-Type": "application/json"}
        if stream:
            headers["Accept"] = "text/event-stream"
        async with self._post_on_pool(
            creds.base_url + self.path, dumps(body), headers, stream=stream,
            failure=lambda response: http_failure(response, creds.api_key),
        ) as response:
            yield response

    async def complete(self, request: ChatRequest, creds: Credentials) -> Completion:
        body = self.body(request, stream=False)
        with self._failures(creds):
            async with self._send(body, creds, stream=False) as response:
                return parse_completion(response.content, creds.api_key)

    async def stream(self, request: ChatRequest, creds: Credentials) -> AsyncIterator[StreamEvent]:
        body = self.body(request, stream=True)
        wrote, finish = False, None
        with self._failures(creds):
            async with self._send(body, creds, stream=True) as response:
                async for _, data in sse_events(response):
                    if data.strip() == "[DONE]":
                        if finish == "length" and not wrote:
                            raise empty_answer()
                        return
                    for event in parse_chunk(data, creds.api_key):
                        wrote = wrote or isinstance(event, StreamDelta)
                        if isinstance(event, StreamUsage) and event.finish_reason:
                            finish = event.finish_reason
                        yield event
        raise stream_cut()
