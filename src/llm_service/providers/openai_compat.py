"""The OpenAI chat-completions answer, shared by the OpenAI and Hugging Face adapters (the
Hugging Face router speaks the same format). Validated with small pydantic models: only the fields
we use, so a vendor adding fields changes nothing, and a missing one is a malformed answer."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pydantic import BaseModel, ValidationError

from llm_service.jsonutil import loads
from llm_service.providers.base import (
    ChatRequest,
    ChatTurn,
    Completion,
    FailureKind,
    ProviderError,
    StreamDelta,
    StreamEvent,
    StreamUsage,
)


class _Message(BaseModel):
    content: str | None = None


class _Choice(BaseModel):
    message: _Message


class _Usage(BaseModel):
    prompt_tokens: int = 0
    completion_tokens: int = 0


class _ChatCompletion(BaseModel):
    model: str | None = None
    choices: list[_Choice]
    usage: _Usage | None = None


def messages(turns: Sequence[ChatTurn]) -> list[dict[str, str]]:
    return [{"role": turn.role, "content": turn.content} for turn in turns]


def request_body(
    request: ChatRequest, max_tokens_field: str, *, stream: bool = False
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "model": request.model,
        "messages": messages(request.messages),
        "temperature": request.temperature,
        max_tokens_field: request.max_tokens,
    }
    if stream:
        body["stream"] = True
        body["stream_options"] = {"include_usage": True}
    return body


class _Delta(BaseModel):
    content: str | None = None


class _ChunkChoice(BaseModel):
    delta: _Delta


class _Chunk(BaseModel):
    model: str | None = None
    choices: list[_ChunkChoice] = []
    usage: _Usage | None = None


def parse_chunk(data: str) -> list[StreamEvent]:
    """The events of one `chat.completion.chunk` (usage comes in a last chunk without choices)."""
    try:
        chunk = _Chunk.model_validate_json(data)
    except ValidationError:
        raise ProviderError(FailureKind.MALFORMED) from None
    events: list[StreamEvent] = [
        StreamDelta(choice.delta.content) for choice in chunk.choices if choice.delta.content
    ]
    if chunk.usage is not None:
        events.append(StreamUsage(chunk.model, chunk.usage.prompt_tokens,
                                  chunk.usage.completion_tokens))
    return events


def parse_completion(raw: bytes) -> Completion:
    try:
        answer = _ChatCompletion.model_validate_json(raw)
        text = answer.choices[0].message.content or ""
    except (ValidationError, IndexError):
        raise ProviderError(FailureKind.MALFORMED) from None
    usage = answer.usage
    return Completion(
        text=text,
        model=answer.model,
        input_tokens=usage.prompt_tokens if usage else 0,
        output_tokens=usage.completion_tokens if usage else 0,
    )


def error_message(body: bytes) -> str | None:
    """The message of an OpenAI-style error: `{"error": {"message"}}` or `{"error": "..."}`."""
    try:
        data: Any = loads(body)
    except ValueError:
        return None
    error = data.get("error") if isinstance(data, dict) else None
    if isinstance(error, dict):
        error = error.get("message")
    return error if isinstance(error, str) else None
