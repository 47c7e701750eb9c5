"""Qwen through Alibaba DashScope's native text-generation API over httpx2.

`POST {base}/api/v1/services/aigc/text-generation/generation` with `Authorization: Bearer`, body
`{"model", "input": {"messages"}, "parameters": {"result_format": "message", "temperature",
"max_tokens"}}`; errors are `{"code", "message", "request_id"}`. Base URLs differ by region
(`dashscope.aliyuncs.com` in mainland China, `dashscope-intl.aliyuncs.com` elsewhere). A stream
is whole when an event's `finish_reason` is set (DashScope sends the string "null" until then);
an `event:error` frame is the vendor's error inside the stream.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx2
from pydantic import BaseModel, ValidationError

from llm_service.jsonutil import dumps, loads
from llm_service.providers.base import (
    ChatRequest,
    Completion,
    Credentials,
    FailureKind,
    FinishReason,
    Provider,
    ProviderError,
    StreamDelta,
    StreamEvent,
    StreamUsage,
    VendorSpec,
    checked_answer,
    empty_answer,
    sse_events,
    status_failure,
    stream_cut,
    stream_error_event,
    unreadable_chunk,
)

PATH = "/api/v1/services/aigc/text-generation/generation"
_AUTH_CODES = {"InvalidApiKey", "AccessDenied", "Unauthorized"}


class _Message(BaseModel):
    content: str = ""


class _Choice(BaseModel):
    message: _Message
    finish_reason: str | None = None

    @property
    def finished(self) -> bool:
        return self.finish_reason not in (None, "", "null")

    @property
    def reason(self) -> FinishReason:
        return "length" if self.finish_reason == "length" else "stop"


class _Output(BaseModel):
    choices: list[_Choice]


class _PromptDetails(BaseModel):
    cached_tokens: int | None = None


class _Usage(BaseModel):
    input_tokens: int = 0  # cached ones included
    output_tokens: int = 0  # thinking included
    prompt_tokens_details: _PromptDetails | None = None

    @property
    def cached(self) -> int:
        details = self.prompt_tokens_details
        return (details.cached_tokens or 0) if details else 0


class _Generation(BaseModel):
    output: _Output
    usage: _Usage | None = None


def _error_data(body: bytes | str) -> dict[str, object] | None:
    """A DashScope error body, `{"code", "message", "request_id"}`: plain JSON, or on a
    streaming call an SSE body whose `data:` line carries it (`event:error`)."""
    try:
        data = loads(body)
    except ValueError:
        text = body.decode(errors="replace") if isinstance(body, bytes) else body
        lines = [line[5:] for line in text.splitlines() if line.startswith("data:")]
        try:
            data = loads("\n".join(lines)) if lines else None
        except ValueError:
            return None
    return data if isinstance(data, dict) else None


def _error_fields(body: bytes | str) -> tuple[FailureKind | None, str | None, bool]:
    """The kind its code names (None: go by the status), the message, and whether it is a
    billing failure (`Arrearage`: the account is overdue,
    https://www.alibabacloud.com/help/en/model-studio/error-code)."""
    data = _error_data(body)
    if data is None:
        return None, None, False
    message = data.get("message")
    code = data.get("code")
    kind = FailureKind.AUTH if code in _AUTH_CODES else None
    if code == "DataInspectionFailed":  # content moderation declined the request or answer
        kind = FailureKind.REFUSED
    return kind, message if isinstance(message, str) else None, code == "Arrearage"


class QwenProvider(Provider):
    # DashScope's OpenAI-compatible model list (its native API has none).
    models_path = "/compatible-mode/v1/models"

    @asynccontextmanager
    async def _send(self, request: ChatRequest, creds: Credentials, *,
                    stream: bool) -> AsyncIterator[httpx2.Response]:
        headers = {"Authorization": f"Bearer {creds.api_key}", "Content-Type": "application/json"}
        if stream:
            headers |= {"Accept": "text/event-stream", "X-DashScope-SSE": "enable"}

        def failure(response: httpx2.Response) -> ProviderError:
            kind, message, billing = _error_fields(response.content)
            return status_failure(response.status_code, message, creds.api_key,
                                  response.headers, kind=kind, billing=billing)

        async with self._post_on_pool(
            creds.base_url + PATH, dumps(self.body(request, stream=stream)), headers,
            stream=stream, failure=failure,
        ) as response:
            yield response

    async def complete(self, request: ChatRequest, creds: Credentials) -> Completion:
        with self._failures(creds):
            async with self._send(request, creds, stream=False) as response:
                raw = response.content
        try:
            answer = _Generation.model_validate_json(raw)
            choice = answer.output.choices[0]
        except (ValidationError, IndexError):
            raise ProviderError(FailureKind.MALFORMED) from None
        checked_answer(choice.message.content, choice.reason)
        return Completion(
            text=choice.message.content,
            model=None,  # DashScope does not echo the model
            input_tokens=answer.usage.input_tokens if answer.usage else 0,
            output_tokens=answer.usage.output_tokens if answer.usage else 0,
            finish_reason=choice.reason,
            cached_input_tokens=answer.usage.cached if answer.usage else 0,
        )

    async def stream(self, request: ChatRequest, creds: Credentials) -> AsyncIterator[StreamEvent]:
        wrote = False
        with self._failures(creds):
            async with self._send(request, creds, stream=True) as response:
                async for event, data in sse_events(response):
                    if event == "error":  # the frame's body is DashScope's error body
                        kind, message, _ = _error_fields(data)
                        raise stream_error_event(message, creds.api_key,
                                                 kind or FailureKind.UPSTREAM)
                    try:
                        piece = _Generation.model_validate_json(data)
                    except ValidationError:
                        raise unreadable_chunk() from None
                    for choice in piece.output.choices:
                        if choice.message.content:
                            wrote = True
                            yield StreamDelta(choice.message.content)
                    done = [c.reason for c in piece.output.choices if c.finished]
                    if piece.usage is not None or done:
                        usage = piece.usage
                        yield StreamUsage(
                            None, usage.input_tokens if usage else None,
                            usage.output_tokens if usage else None,
                            finish_reason=done[0] if done else None,
                            cached_input_tokens=usage.cached if usage else None)
                    if done:
                        if done[0] == "length" and not wrote:
                            raise empty_answer()
                        return
        raise stream_cut()


    def body(self, request: ChatRequest, *, stream: bool) -> dict[str, object]:
        """The request as this model accepts it (the catalogue's rules): Qwen3 open models think
        by default and refuse a non-streaming call unless `enable_thinking` is false."""
        parameters: dict[str, object] = {
            "result_format": "message",
            "max_tokens": request.max_tokens,
        }
        if self.takes_temperature(request.model):
            parameters["temperature"] = request.temperature
        if self.must_disable_thinking(request.model, stream=stream):
            parameters["enable_thinking"] = False
        if stream:
            # Without it every event repeats the whole answer so far.
            parameters["incremental_output"] = True
        messages = [{"role": t.role, "content": t.content} for t in request.messages]
        if request.system:
            # A `system` message, the first one: DashScope's place for the system prompt
            # (https://www.alibabacloud.com/help/en/model-studio/use-qwen-by-calling-api).
            messages.insert(0, {"role": "system", "content": request.system})
        return {
            "model": request.model,
            "input": {"messages": messages},
            "parameters": parameters,
        }


SPEC = VendorSpec(
    id="qwen",
    display_name="Qwen (DashScope)",
    default_base_url="https://dashscope-intl.aliyuncs.com",
    default_model="qwen4-max",
    adapter=QwenProvider,
    wire="qwen",
    order=40,
)
