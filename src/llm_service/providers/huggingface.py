"""Hugging Face through the Inference Providers router: OpenAI-compatible chat completions over
httpx2 (`POST {base}/chat/completions`, `Authorization: Bearer hf_...`). The old api-inference URL
answers 410 Gone."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx2

from llm_service.jsonutil import dumps
from llm_service.providers import openai_compat
from llm_service.providers.base import (
    ChatRequest,
    Completion,
    FailureKind,
    Provider,
    ProviderError,
    StreamEvent,
    sse_events,
    status_failure,
    transport_failure,
)


class HuggingFaceProvider(Provider):
    id = "huggingface"
    display_name = "Hugging Face"

    def __init__(self, base_url: str, http_client: httpx2.AsyncClient) -> None:
        self._url = f"{base_url}/chat/completions"
        self._http = http_client

    async def complete(self, request: ChatRequest, api_key: str) -> Completion:
        body = openai_compat.request_body(request, "max_tokens")
        headers = {"Authorization": f"Bearer {api_key}", "Content-Type": "application/json"}
        try:
            response = await self._http.post(self._url, content=dumps(body), headers=headers)
        except httpx2.HTTPError as exc:
            raise transport_failure(exc) from None
        if response.status_code >= 400:
            raise self._failure(response, api_key)
        return openai_compat.parse_completion(response.content)

    async def stream(self, request: ChatRequest, api_key: str) -> AsyncIterator[StreamEvent]:
        body = openai_compat.request_body(request, "max_tokens", stream=True)
        headers = {"Authorization": f"Bearer {api_key}", "Content-Type": "application/json",
                   "Accept": "text/event-stream"}
        try:
            async with self._http.stream(
                "POST", self._url, content=dumps(body), headers=headers
            ) as response:
                if response.status_code >= 400:
                    await response.aread()
                    raise self._failure(response, api_key)
                async for _, data in sse_events(response):
                    if data.strip() == "[DONE]":
                        return
                    for event in openai_compat.parse_chunk(data):
                        yield event
        except httpx2.HTTPError as exc:
            raise transport_failure(exc) from None
        # The router closed the stream without [DONE]: the answer may be cut short.
        raise ProviderError(FailureKind.UPSTREAM)

    @staticmethod
    def _failure(response: httpx2.Response, api_key: str) -> ProviderError:
        return status_failure(response.status_code,
                              openai_compat.error_message(response.content), api_key,
                              response.headers)
