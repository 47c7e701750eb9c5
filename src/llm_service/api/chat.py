"""The chat route: one message in, the vendor's answer out, both stored in the history."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request
from fastapi.responses import StreamingResponse

from llm_service.api.deps import ChatUser, Provider, RuntimeDep, body_openapi, json_body
from llm_service.api.responses import error_responses
from llm_service.errors import ServiceError, request_id_of
from llm_service.jsonutil import JSONResponse
from llm_service.runtime import Runtime
from llm_service.schemas import ChatIn, ChatOut
from llm_service.services import chat as chat_service
from llm_service.services.chat_stream import open_chat_stream

router = APIRouter(prefix="/llm", tags=["chat"])


def take_chat_slot(runtime: Runtime, user_id: int) -> None:
    """A slot of the user's concurrency cap, or 429; the caller releases it."""
    try:
        runtime.chat_slots.acquire(user_id)
    except ServiceError:
        runtime.metrics.rejected("concurrency")
        raise


@router.post(
    "/chat/{provider}",
    summary="Send a message to a vendor with the user's own key",
    description=(
        "The vendor gets the context (the request's `history` when present, even empty; "
        "otherwise the newest stored messages, at most `LLM_CONTEXT_MESSAGES`), then the new "
        "message, with the user's model, temperature and maxTokens. After the vendor answers, "
        "the message and the reply are stored together; when it fails, nothing is stored."
    ),
    response_model=None,
    responses={
        200: {"model": ChatOut},
        **error_responses(400, 401, 403, 404, 413, 422, 429, 502, 503, 504),
    },
    openapi_extra=body_openapi(ChatIn),
)
async def chat(
    user: ChatUser,
    provider: Provider,
    body: Annotated[ChatIn, Depends(json_body(ChatIn))],
    runtime: RuntimeDep,
) -> JSONResponse:
    take_chat_slot(runtime, user.user_id)
    try:
        answer = await chat_service.chat(runtime, user=user, provider=provider, body=body)
    finally:
        runtime.chat_slots.release(user.user_id)
    return JSONResponse(answer)


STREAM_DESCRIPTION = """\
The same body as `POST /llm/chat/{provider}`; the answer is `text/event-stream`:

```
event: delta
data: {"text": "Hel"}

event: delta
data: {"text": "lo!"}

event: done
data: {"response": "Hello!", "tokensUsed": 12, "inputTokens": 8, "outputTokens": 4,
       "model": "gpt-4o", "id": 124}
```

`delta` events carry the (sanitized) answer as the vendor writes it; `done` ends a complete
stream (`"tokensEstimated": true` is added when the vendor's stream gave no token counts). An
error before the stream starts is the normal JSON error with its status; an error after it
started is an `event: error` whose data is the error body (`success`, `error`, `code`,
`requestId`), and the stream ends. A comment line `: keep-alive` is sent every 15 seconds while
the vendor is silent. When the client disconnects, the vendor call is cancelled and the message
is stored with the partial reply, marked `"interrupted": true` in the history.
"""


# One event of the stream, as OpenAPI describes `text/event-stream` bodies: each event's fields.
SSE_EVENT_SCHEMA = {
    "type": "object",
    "properties": {
        "event": {"type": "string", "enum": ["delta", "done", "error"]},
        "data": {"type": "string", "description": "JSON: {text} for delta, the answer for done, "
                 "the error body for error."},
    },
}


@router.post(
    "/chat/{provider}/stream",
    summary="Send a message and receive the answer as Server-Sent Events",
    description=STREAM_DESCRIPTION,
    response_class=StreamingResponse,
    responses={
        200: {"description": "The answer as Server-Sent Events (`delta`, then `done` or "
              "`error`).", "content": {"text/event-stream": {"schema": SSE_EVENT_SCHEMA}}},
        **error_responses(400, 401, 403, 404, 413, 422, 429, 502, 503, 504),
    },
    openapi_extra=body_openapi(ChatIn),
)
async def chat_stream(
    request: Request,
    user: ChatUser,
    provider: Provider,
    body: Annotated[ChatIn, Depends(json_body(ChatIn))],
    runtime: RuntimeDep,
) -> StreamingResponse:
    # The concurrency slot is held from here until the stream ends, however it ends.
    take_chat_slot(runtime, user.user_id)
    try:
        stream = await open_chat_stream(runtime, user=user, provider=provider, body=body)
    except BaseException:
        runtime.chat_slots.release(user.user_id)
        raise
    return StreamingResponse(
        stream.sse(request_id_of(request), lambda: runtime.chat_slots.release(user.user_id)),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )
