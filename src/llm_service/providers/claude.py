"""Anthropic Claude through the official `anthropic` SDK, on the shared httpx2 pool.

One `AsyncAnthropic` is made at start-up and serves every user: each call sends its user's key in
that request's `Authorization` header (the 2.x SDK's scheme), so no client is copied per call. As
for OpenAI, the call goes through the SDK's generic `post` with our JSON bytes, and the answer is
validated by the small models below (the SDK still raises its typed errors).
The 2.x SDK (Messages API version 2026-10-21) takes no `temperature`: the configured temperature
is not sent to Claude. Claude wants the conversation to start with a user turn and alternate, so
leading assistant turns are dropped and consecutive turns of one role are joined.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import anthropic
import httpx2
from pydantic import BaseModel, ValidationError

from llm_service.jsonutil import dumps
from llm_service.providers.base import (
    ChatRequest,
    ChatTurn,
    Completion,
    FailureKind,
    Provider,
    ProviderError,
    StreamDelta,
    StreamEvent,
    StreamUsage,
    merge_turns,
    scrub,
    status_failure,
    transport_failure,
)


class _Block(BaseModel):
    type: str
    text: str | None = None


class _Usage(BaseModel):
    input_tokens: int = 0
    output_tokens: int = 0


class _Message(BaseModel):
    model: str | None = None
    content: list[_Block]
    usage: _Usage


def _vendor_message(exc: anthropic.APIStatusError) -> str | None:
    body = exc.body
    if isinstance(body, dict):
        error = body.get("error")
        if isinstance(error, dict) and isinstance(error.get("message"), str):
            return error["message"]
    return exc.message


def _status_failure(exc: anthropic.APIStatusError, api_key: str) -> ProviderError:
    return status_failure(exc.status_code, _vendor_message(exc), api_key, exc.response.headers)


def _claude_turns(request: ChatRequest) -> list[ChatTurn]:
    """Claude's conversation starts with a user turn and alternates."""
    turns = merge_turns(request.messages)
    while turns and turns[0].role == "assistant":
        turns.pop(0)
    return turns


class ClaudeProvider(Provider):
    id = "claude"
    display_name = "Anthropic Claude"

    def __init__(self, base_url: str, http_client: httpx2.AsyncClient, timeout_s: float) -> None:
        self._client = anthropic.AsyncAnthropic(
            api_key="unset",
            base_url=base_url,
            http_client=http_client,
            max_retries=0,
            timeout=timeout_s,
        )

    async def complete(self, request: ChatRequest, api_key: str) -> Completion:
        turns = _claude_turns(request)
        body = {
            "model": request.model,
            "max_tokens": request.max_tokens,
            "messages": [{"role": t.role, "content": t.content} for t in turns],
        }
        headers = {"Authorization": f"Bearer {api_key}", "Content-Type": "application/json"}
        try:
            response = await self._client.post(
                "/v1/messages",
                cast_to=httpx2.Response,
                content=dumps(body),
                options={"headers": headers},
            )
        except anthropic.APIConnectionError as exc:  # timeouts included
            raise transport_failure(exc) from None
        except anthropic.APIStatusError as exc:
            raise _status_failure(exc, api_key) from None
        try:
            answer = _Message.model_validate_json(response.content)
        except ValidationError:
            raise ProviderError(FailureKind.MALFORMED) from None
        return Completion(
            text="".join(b.text or "" for b in answer.content if b.type == "text"),
            model=answer.model,
            input_tokens=answer.usage.input_tokens,
            output_tokens=answer.usage.output_tokens,
        )

    async def stream(self, request: ChatRequest, api_key: str) -> AsyncIterator[StreamEvent]:
        turns = _claude_turns(request)
        try:
            stream = await self._client.messages.create(
                model=request.model,
                max_tokens=request.max_tokens,
                messages=[{"role": t.role, "content": t.content} for t in turns],
                stream=True,
                extra_headers={"Authorization": f"Bearer {api_key}"},
            )
            async with stream:
                async for event in stream:
                    if event.type == "content_block_delta" and event.delta.type == "text_delta":
                        yield StreamDelta(event.delta.text)
                    elif event.type == "message_start":
                        usage = event.message.usage
                        yield StreamUsage(event.message.model, usage.input_tokens, None)
                    elif event.type == "message_delta":
                        yield StreamUsage(None, None, event.usage.output_tokens)
        except anthropic.APIStatusError as exc:
            if exc.status_code < 400:  # an `error` event in the middle of the stream
                raise ProviderError(FailureKind.UPSTREAM, detail=scrub(_vendor_message(exc),
                                                                        api_key)) from None
            raise _status_failure(exc, api_key) from None
        except anthropic.APIConnectionError as exc:
            raise transport_failure(exc) from None
        except httpx2.HTTPError as exc:  # a dropped stream comes through raw
            raise transport_failure(exc) from None
        except (anthropic.APIError, ValueError):
            raise ProviderError(FailureKind.MALFORMED) from None
