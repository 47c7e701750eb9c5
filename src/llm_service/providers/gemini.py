"""Google Gemini through `google-genai`, Google's maintained SDK (google-generativeai reached its
end of life in 2025), on the shared httpx2 pool.

One `genai.Client` is made at start-up with a placeholder key; each call sends the user's key as
the `x-goog-api-key` header of that request (per-request HTTP options win over the client's), so
no client is built per request. Our `assistant` role is Gemini's `model`. A bad key is HTTP 400
with reason `API_KEY_INVALID`, which is an authentication failure here. Thinking tokens
(`thoughtsTokenCount`) are billed as output, so they count as output tokens here.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx2
from google import genai
from google.genai import errors, types

from llm_service.providers.base import (
    ChatRequest,
    Completion,
    FailureKind,
    Provider,
    ProviderError,
    StreamDelta,
    StreamEvent,
    StreamUsage,
    kind_for_status,
    status_failure,
    transport_failure,
)

_ROLES = {"user": "user", "assistant": "model"}
_AUTH_MARKERS = ("API_KEY_INVALID", "API key not valid", "API_KEY_SERVICE_BLOCKED")


def _kind(exc: errors.APIError) -> FailureKind:
    text = f"{exc.message} {exc.details}"
    if exc.code == 400 and any(marker in text for marker in _AUTH_MARKERS):
        return FailureKind.AUTH
    return kind_for_status(exc.code)


class GeminiProvider(Provider):
    id = "gemini"
    display_name = "Google Gemini"

    def __init__(self, base_url: str, http_client: httpx2.AsyncClient, timeout_s: float) -> None:
        self._client = genai.Client(
            api_key="unset",
            http_options=types.HttpOptions(
                base_url=base_url,
                timeout=int(timeout_s * 1000),
                httpx_async_client=http_client,
            ),
        )

    async def complete(self, request: ChatRequest, api_key: str) -> Completion:
        contents, config = _request(request, api_key)
        try:
            answer = await self._client.aio.models.generate_content(
                model=request.model, contents=contents, config=config
            )
        except errors.APIError as exc:
            raise _api_failure(exc, api_key) from None
        except httpx2.HTTPError as exc:
            raise transport_failure(exc) from None
        except (ValueError, TypeError):
            raise ProviderError(FailureKind.MALFORMED) from None
        try:
            usage = answer.usage_metadata
            return Completion(
                text=answer.text or "",
                model=answer.model_version or None,
                input_tokens=(usage.prompt_token_count or 0) if usage else 0,
                output_tokens=(_output_tokens(usage) or 0) if usage else 0,
            )
        except (AttributeError, ValueError, TypeError):
            raise ProviderError(FailureKind.MALFORMED) from None

    async def stream(self, request: ChatRequest, api_key: str) -> AsyncIterator[StreamEvent]:
        contents, config = _request(request, api_key)
        try:
            chunks = await self._client.aio.models.generate_content_stream(
                model=request.model, contents=contents, config=config
            )
            async for chunk in chunks:
                if chunk.text:
                    yield StreamDelta(chunk.text)
                usage = chunk.usage_metadata
                if usage is not None:
                    yield StreamUsage(chunk.model_version or None, usage.prompt_token_count,
                                      _output_tokens(usage))
        except errors.APIError as exc:
            raise _api_failure(exc, api_key) from None
        except httpx2.HTTPError as exc:
            raise transport_failure(exc) from None
        except (ValueError, TypeError):
            raise ProviderError(FailureKind.MALFORMED) from None


def _output_tokens(usage: types.GenerateContentResponseUsageMetadata) -> int | None:
    """The answer's tokens and the thinking ones, both billed as output; None if neither came."""
    parts = [usage.candidates_token_count, usage.thoughts_token_count]
    if all(part is None for part in parts):
        return None
    return sum(part or 0 for part in parts)


def _request(
    request: ChatRequest, api_key: str
) -> tuple[list[types.Content], types.GenerateContentConfig]:
    contents = [
        types.Content(role=_ROLES[t.role], parts=[types.Part(text=t.content)])
        for t in request.messages
    ]
    config = types.GenerateContentConfig(
        temperature=request.temperature,
        max_output_tokens=request.max_tokens,
        http_options=types.HttpOptions(headers={"x-goog-api-key": api_key}),
    )
    return contents, config


def _api_failure(exc: errors.APIError, api_key: str) -> ProviderError:
    response = getattr(exc, "response", None)
    return status_failure(exc.code, exc.message, api_key, getattr(response, "headers", None),
                          kind=_kind(exc))
