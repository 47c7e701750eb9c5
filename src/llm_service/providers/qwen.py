"""Qwen through Alibaba DashScope's native text-generation API over httpx2.

`POST {base}/api/v1/services/aigc/text-generation/generation` with `Authorization: Bearer`, body
`{"model", "input": {"messages"}, "parameters": {"result_format": "message", "temperature",
"max_tokens"}}`; errors are `{"code", "message", "request_id"}`. Base URLs differ by region
(`dashscope.aliyuncs.com` in mainland China, `dashscope-intl.aliyuncs.com` elsewhere).
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx2
from pydantic import BaseModel, ValidationError

from llm_service.jsonutil import dumps, loads
from llm_service.providers.base import (
    ChatRequest,
    Completion,
    FailureKind,
    Provider,
    ProviderError,
    StreamDelta,
    StreamEvent,
    StreamUsage,
    sse_events,
    status_failure,
    transport_failure,
)

PATH = "/api/v1/services/aigc/text-generation/generation"
_AUTH_CODES = {"InvalidApiKey", "AccessDenied", "Unauthorized"}


class _Message(BaseModel):
    content: str = ""


class _Choice(BaseModel):
    message: _Message


class _Output(BaseModel):
    choices: list[_Choice]


class _Usage(BaseModel):
    input_tokens: int = 0
    output_tokens: int = 0


class _Generation(BaseModel):
    output: _Output
    usage: _Usage | None = None


def _error(status: int, body: bytes, api_key: str, headers: httpx2.Headers) -> ProviderError:
    code = message = None
    try:
        data = loads(body)
        if isinstance(data, dict):
            code, message = data.get("code"), data.get("message")
    except ValueError:
        pass
    return status_failure(
        status,
        message if isinstance(message, str) else None,
        api_key,
        headers,
        kind=FailureKind.AUTH if code in _AUTH_CODES else None,
    )


class QwenProvider(Provider):
    id = "qwen"
    display_name = "Qwen (DashScope)"

    def __init__(self, base_url: str, http_client: httpx2.AsyncClient) -> None:
        self._url = f"{base_url}{PATH}"
        self._http = http_client

    async def complete(self, request: ChatRequest, api_key: str) -> Completion:
        headers = {"Authorization": f"Bearer {api_key}", "Content-Type": "application/json"}
        try:
            response = await self._http.post(
                self._url, content=dumps(_body(request, stream=False)), headers=headers
            )
        except httpx2.HTTPError as exc:
            raise transport_failure(exc) from None
        if response.status_code >= 400:
            raise _error(response.status_code, response.content, api_key, response.headers)
        try:
            answer = _Generation.model_validate_json(response.content)
            return Completion(
                text=answer.output.choices[0].message.content,
                model=None,  # DashScope does not echo the model
                input_tokens=answer.usage.input_tokens if answer.usage else 0,
                output_tokens=answer.usage.output_tokens if answer.usage else 0,
            )
        except (ValidationError, IndexError):
            raise ProviderError(FailureKind.MALFORMED, status=response.status_code) from None

    async def stream(self, request: ChatRequest, api_key: str) -> AsyncIterator[StreamEvent]:
        headers = {"Authorization": f"Bearer {api_key}", "Content-Type": "application/json",
                   "Accept": "text/event-stream", "X-DashScope-SSE": "enable"}
        try:
            async with self._http.stream(
                "POST", self._url, content=dumps(_body(request, stream=True)), headers=headers
            ) as response:
                if response.status_code >= 400:
                    await response.aread()
                    raise _error(response.status_code, response.content, api_key,
                                 response.headers)
                async for event, data in sse_events(response):
                    if event == "error":
                        raise _error(500, data.encode(), api_key, response.headers)
                    try:
                        piece = _Generation.model_validate_json(data)
                    except ValidationError:
                        raise ProviderError(FailureKind.MALFORMED) from None
                    for choice in piece.output.choices:
                        if choice.message.content:
                            yield StreamDelta(choice.message.content)
                    if piece.usage is not None:
                        yield StreamUsage(None, piece.usage.input_tokens,
                                          piece.usage.output_tokens)
        except httpx2.HTTPError as exc:
            raise transport_failure(exc) from None


def _body(request: ChatRequest, *, stream: bool) -> dict[str, object]:
    parameters: dict[str, object] = {
        "result_format": "message",
        "temperature": request.temperature,
        "max_tokens": request.max_tokens,
    }
    if stream:
        # Without it every event repeats the whole answer so far.
        parameters["incremental_output"] = True
    return {
        "model": request.model,
        "input": {"messages": [{"role": t.role, "content": t.content} for t in request.messages]},
        "parameters": parameters,
    }
