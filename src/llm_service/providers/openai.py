"""OpenAI through the official `openai` SDK, on the shared httpx2 pool.

One `AsyncOpenAI` is made at start-up (with a placeholder key) and serves every user: each call
sends its user's key in that request's `Authorization` header. (Per-key copies made with
`with_options` would share the pool too, but each copy detects the platform again in a worker
thread on its first request: several milliseconds per chat.)

The call goes through the SDK's generic `post` (its documented way to make any request): the SDK
still builds the URL and headers and raises its typed errors, but the body is our orjson bytes and
the answer is parsed by `openai_compat`. `chat.completions.create` walks every message through
the SDK's type-hint transforms, which cost about a millisecond of CPU per chat on a long history.
The SDK's own retries are off: the caller retries only what may be retried.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx2
import openai

from llm_service.jsonutil import dumps
from llm_service.providers import openai_compat
from llm_service.providers.base import (
    ChatRequest,
    Completion,
    FailureKind,
    Provider,
    ProviderError,
    StreamDelta,
    StreamEvent,
    StreamUsage,
    status_failure,
    transport_failure,
)


def _status_failure(exc: openai.APIStatusError, api_key: str) -> ProviderError:
    try:
        detail = openai_compat.error_message(exc.response.content) or exc.message
    except httpx2.ResponseNotRead:
        detail = exc.message
    return status_failure(exc.status_code, detail, api_key, exc.response.headers)


class OpenAIProvider(Provider):
    id = "openai"
    display_name = "OpenAI"

    def __init__(self, base_url: str, http_client: httpx2.AsyncClient, timeout_s: float) -> None:
        self._client = openai.AsyncOpenAI(
            api_key="unset",
            base_url=base_url,
            http_client=http_client,
            max_retries=0,
            timeout=timeout_s,
        )

    async def complete(self, request: ChatRequest, api_key: str) -> Completion:
        body = openai_compat.request_body(request, "max_completion_tokens")
        headers = {"Authorization": f"Bearer {api_key}", "Content-Type": "application/json"}
        try:
            response = await self._client.post(
                "/chat/completions",
                cast_to=httpx2.Response,
                content=dumps(body),
                options={"headers": headers},
            )
        except openai.APIConnectionError as exc:  # timeouts included
            raise transport_failure(exc) from None
        except openai.APIStatusError as exc:
            raise _status_failure(exc, api_key) from None
        return openai_compat.parse_completion(response.content)

    async def stream(self, request: ChatRequest, api_key: str) -> AsyncIterator[StreamEvent]:
        try:
            stream = await self._client.chat.completions.create(
                model=request.model,
                messages=openai_compat.messages(request.messages),  # type: ignore[arg-type]
                temperature=request.temperature,
                max_completion_tokens=request.max_tokens,
                stream=True,
                stream_options={"include_usage": True},
                extra_headers={"Authorization": f"Bearer {api_key}"},
            )
            async with stream:
                async for chunk in stream:
                    for choice in chunk.choices:
                        if choice.delta.content:
                            yield StreamDelta(choice.delta.content)
                    if chunk.usage is not None:
                        yield StreamUsage(chunk.model, chunk.usage.prompt_tokens,
                                          chunk.usage.completion_tokens)
        except openai.APIStatusError as exc:
            raise _status_failure(exc, api_key) from None
        except openai.APIConnectionError as exc:
            raise transport_failure(exc) from None
        except httpx2.HTTPError as exc:
            raise transport_failure(exc) from None
        except (openai.APIError, ValueError):  # an error event or a broken chunk mid-stream
            raise ProviderError(FailureKind.UPSTREAM) from None
