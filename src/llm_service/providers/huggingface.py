"""Hugging Face through the Inference Providers router: OpenAI-compatible chat completions over
httpx2 (`POST {base}/chat/completions`, `Authorization: Bearer hf_...`). The old api-inference URL
answers 410 Gone."""

from __future__ import annotations

from typing import Any

import httpx2
from pydantic import BaseModel, ValidationError

from llm_service.jsonutil import dumps, loads
from llm_service.providers.base import (
    ChatRequest,
    Completion,
    FailureKind,
    Provider,
    ProviderError,
    kind_for_status,
    retry_after_seconds,
    scrub,
    transport_failure,
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


def error_detail(body: bytes) -> str | None:
    """The message of an OpenAI-style error: `{"error": {"message"}}` or `{"error": "..."}`."""
    try:
        data: Any = loads(body)
    except ValueError:
        return None
    error = data.get("error") if isinstance(data, dict) else None
    if isinstance(error, dict):
        error = error.get("message")
    return error if isinstance(error, str) else None


class HuggingFaceProvider(Provider):
    id = "huggingface"
    display_name = "Hugging Face"

    def __init__(self, base_url: str, http_client: httpx2.AsyncClient) -> None:
        self._url = f"{base_url}/chat/completions"
        self._http = http_client

    async def complete(self, request: ChatRequest, api_key: str) -> Completion:
        body = {
            "model": request.model,
            "messages": [{"role": t.role, "content": t.content} for t in request.messages],
            "temperature": request.temperature,
            "max_tokens": request.max_tokens,
            "stream": False,
        }
        headers = {"Authorization": f"Bearer {api_key}", "Content-Type": "application/json"}
        try:
            response = await self._http.post(self._url, content=dumps(body), headers=headers)
        except httpx2.HTTPError as exc:
            raise transport_failure(exc) from None
        if response.status_code >= 400:
            raise ProviderError(
                kind_for_status(response.status_code),
                status=response.status_code,
                detail=scrub(error_detail(response.content), api_key),
                retry_after_s=retry_after_seconds(response.headers),
            )
        try:
            answer = _ChatCompletion.model_validate_json(response.content)
            return Completion(
                text=answer.choices[0].message.content or "",
                model=answer.model,
                input_tokens=answer.usage.prompt_tokens if answer.usage else 0,
                output_tokens=answer.usage.completion_tokens if answer.usage else 0,
            )
        except (ValidationError, IndexError):
            raise ProviderError(FailureKind.MALFORMED, status=response.status_code) from None
