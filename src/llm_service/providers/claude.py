"""Anthropic Claude through the official `anthropic` SDK, on the shared httpx2 pool.

One `AsyncAnthropic` is made on the first Claude call (the SDK is imported then, off the event loop:
a process that never calls Claude never loads it) and serves every user: each call sends its user's
key in that request's `Authorization` header (the 2.x SDK's scheme) to the call's endpoint, so no
client is copied per call. Both call paths go through the SDK's generic `post` with our JSON bytes
and `cast_to=httpx2.Response` (the stream left unread with `stream=True`): the SDK still raises its
typed errors, and the answer and the stream's events are validated by the small models below. The
2.x SDK (Messages API version 2026-10-21) takes no `temperature`: the configured temperature is not
sent to Claude. Claude wants the conversation to start with a user turn and alternate, so leading
assistant turns are dropped and consecutive turns of one role are joined. The system prompt is the
top-level `system` field.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from types import ModuleType
from typing import TYPE_CHECKING, Annotated, Any, Literal

import httpx2
from pydantic import BaseModel, Discriminator, Tag, TypeAdapter, ValidationError

from llm_service.jsonutil import dumps
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
    VendorSpec,
    checked_answer,
    empty_answer,
    kind_for_status,
    merge_turns,
    refused,
    sse_events,
    status_failure,
    stream_cut,
    stream_error_event,
    transport_failure,
    unreadable_chunk,
)

if TYPE_CHECKING:
    import anthropic

# https://docs.anthropic.com/en/api/errors: the error types, by what they mean here.
_ERROR_KINDS = {
    "authentication_error": FailureKind.AUTH,
    "permission_error": FailureKind.AUTH,
    "rate_limit_error": FailureKind.RATE_LIMITED,
    "invalid_request_error": FailureKind.BAD_REQUEST,
    "not_found_error": FailureKind.BAD_REQUEST,
    "request_too_large": FailureKind.BAD_REQUEST,
    "api_error": FailureKind.UPSTREAM,
    "overloaded_error": FailureKind.UPSTREAM,
}


class _Block(BaseModel):
    type: str
    text: str | None = None


class _Usage(BaseModel):
    # input_tokens excludes cache reads and writes (anthropic/types/usage.py); output_tokens
    # includes thinking.
    input_tokens: int = 0
    output_tokens: int = 0
    cache_read_input_tokens: int | None = None
    cache_creation_input_tokens: int | None = None

    @property
    def prompt_tokens(self) -> int:
        """Every prompt token, OpenAI's convention: new, cache reads and cache writes."""
        return (self.input_tokens + (self.cache_read_input_tokens or 0)
                + (self.cache_creation_input_tokens or 0))

    @property
    def cached(self) -> int:
        return self.cache_read_input_tokens or 0


class _Message(BaseModel):
    model: str | None = None
    content: list[_Block]
    usage: _Usage
    stop_reason: str | None = None


class _Error(BaseModel):
    type: str = "api_error"
    message: str | None = None


class _TextDelta(BaseModel):
    type: str
    text: str | None = None


class _OutputUsage(BaseModel):
    output_tokens: int | None = None


class _StopDelta(BaseModel):
    stop_reason: str | None = None


def _finish(stop_reason: str | None) -> FinishReason | None:
    """anthropic/types/stop_reason.py: `refusal` is the model declining, `max_tokens` a cut."""
    if stop_reason == "refusal":
        raise refused("the model declined to answer (stop reason: refusal)")
    if stop_reason == "max_tokens":
        return "length"
    return None if stop_reason is None else "stop"


class _MessageStart(BaseModel):
    type: Literal["message_start"]
    message: _Message


class _BlockDelta(BaseModel):
    type: Literal["content_block_delta"]
    delta: _TextDelta


class _MessageDelta(BaseModel):
    type: Literal["message_delta"]
    usage: _OutputUsage = _OutputUsage()
    delta: _StopDelta = _StopDelta()


class _ErrorEvent(BaseModel):
    type: Literal["error"]
    error: _Error = _Error()


class _OtherEvent(BaseModel):
    type: str  # ping, content_block_start/stop, message_stop, and any later event type


_EVENT_TYPES = {"message_start", "content_block_delta", "message_delta", "error"}


def _event_tag(value: Any) -> str:
    kind = value.get("type") if isinstance(value, dict) else getattr(value, "type", None)
    return kind if kind in _EVENT_TYPES else "other"


# An event of a known type must have that type's shape; others only need a type.
_EVENT: TypeAdapter[Any] = TypeAdapter(
    Annotated[
        Annotated[_MessageStart, Tag("message_start")]
        | Annotated[_BlockDelta, Tag("content_block_delta")]
        | Annotated[_MessageDelta, Tag("message_delta")]
        | Annotated[_ErrorEvent, Tag("error")]
        | Annotated[_OtherEvent, Tag("other")],
        Discriminator(_event_tag),
    ]
)


def _vendor_error(body: object) -> _Error:
    error = body.get("error") if isinstance(body, dict) else None
    try:
        return _Error.model_validate(error)
    except ValidationError:
        return _Error()


def _claude_turns(request: ChatRequest) -> list[ChatTurn]:
    """Claude's conversation starts with a user turn and alternates."""
    turns = merge_turns(request.messages)
    while turns and turns[0].role == "assistant":
        turns.pop(0)
    return turns


class ClaudeProvider(Provider):
    sdk_module = "anthropic"

    def make_sdk_client(self, sdk: ModuleType) -> anthropic.AsyncAnthropic:
        return sdk.AsyncAnthropic(
            api_key="unset",
            base_url=self.spec.default_base_url,
            http_client=self._http,
            max_retries=0,
            timeout=self._timeout_s,
        )

    models_path = "/v1/models"  # {"data": [{"id", "type": "model"}]}

    def models_headers(self, creds: Credentials) -> dict[str, str]:
        return {"x-api-key": creds.api_key, "anthropic-version": "2023-06-01"}

    @contextmanager
    def _failures(self, creds: Credentials) -> Iterator[None]:
        """Every failure of either call path as a `ProviderError`."""
        import anthropic  # imported by `sdk_client`, which every call awaits before this

        try:
            yield
        except anthropic.APIStatusError as exc:
            error = _vendor_error(exc.body)
            kind = kind_for_status(exc.status_code)
            if kind is FailureKind.BAD_REQUEST:  # Claude's own type says more than a 4xx
                kind = _ERROR_KINDS.get(error.type, kind)
            raise status_failure(exc.status_code, error.message or exc.message, creds.api_key,
                                 exc.response.headers, kind=kind,
                                 billing=error.type == "billing_error") from None
        except anthropic.APIConnectionError as exc:  # timeouts included
            raise transport_failure(exc) from None
        except httpx2.HTTPError as exc:  # a dropped stream comes through raw
            raise transport_failure(exc) from None

    async def _post(self, client: anthropic.AsyncAnthropic, request: ChatRequest,
                    creds: Credentials, *, stream: bool) -> httpx2.Response:
        body: dict[str, Any] = {
            "model": request.model,
            "max_tokens": request.max_tokens,
            "messages": [{"role": t.role, "content": t.content} for t in _claude_turns(request)],
        }
        if request.system:
            # The top-level `system` (anthropic/types/message_create_params.py): a system
            # prompt is never a turn of `messages`, whose first entry may not be one.
            body["system"] = request.system
        if stream:
            body["stream"] = True
        headers = {"Authorization": f"Bearer {creds.api_key}", "Content-Type": "application/json"}
        return await client.post(
            creds.base_url + "/v1/messages",
            cast_to=httpx2.Response,
            content=dumps(body),
            options={"headers": headers},
            stream=stream,
        )

    async def complete(self, request: ChatRequest, creds: Credentials) -> Completion:
        client = await self.sdk_client()
        with self._failures(creds):
            response = await self._post(client, request, creds, stream=False)
        try:
            answer = _Message.model_validate_json(response.content)
        except ValidationError:
            raise ProviderError(FailureKind.MALFORMED) from None
        text = "".join(b.text or "" for b in answer.content if b.type == "text")
        finish = _finish(answer.stop_reason) or "stop"
        checked_answer(text, finish)
        return Completion(
            text=text,
            model=answer.model,
            input_tokens=answer.usage.prompt_tokens,
            output_tokens=answer.usage.output_tokens,
            finish_reason=finish,
            cached_input_tokens=answer.usage.cached,
        )

    async def stream(self, request: ChatRequest, creds: Credentials) -> AsyncIterator[StreamEvent]:
        wrote, finish = False, None
        client = await self.sdk_client()
        with self._failures(creds):
            response = await self._post(client, request, creds, stream=True)
            try:
                async for _, data in sse_events(response):
                    try:
                        event = _EVENT.validate_json(data)
                    except ValidationError:
                        raise unreadable_chunk() from None
                    if isinstance(event, _BlockDelta):
                        if event.delta.type == "text_delta" and event.delta.text:
                            wrote = True
                            yield StreamDelta(event.delta.text)
                    elif isinstance(event, _MessageStart):
                        usage = event.message.usage
                        yield StreamUsage(event.message.model, usage.prompt_tokens, None,
                                          cached_input_tokens=usage.cached)
                    elif isinstance(event, _MessageDelta):
                        finish = _finish(event.delta.stop_reason) or finish
                        yield StreamUsage(None, None, event.usage.output_tokens,
                                          finish_reason=finish)
                    elif isinstance(event, _ErrorEvent):
                        kind = _ERROR_KINDS.get(event.error.type, FailureKind.UPSTREAM)
                        raise stream_error_event(event.error.message, creds.api_key, kind)
                    elif event.type == "message_stop":
                        if finish == "length" and not wrote:
                            raise empty_answer()
                        return
            finally:
                await response.aclose()
        raise stream_cut()


SPEC = VendorSpec(
    id="claude",
    display_name="Anthropic Claude",
    default_base_url="https://api.anthropic.com",
    default_model="claude-sonnet-5-5",
    adapter=ClaudeProvider,
    wire="claude",
    order=30,
)
