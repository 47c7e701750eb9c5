"""Routes of saved conversations: list, create, read, change, delete, fork, their messages (the
active branch or the whole tree), the preview of the next call, and sending (JSON or SSE, as the
chat routes answer), editing and regenerating."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Path, Query, Request
from fastapi.responses import StreamingResponse

from llm_service.api.chat import SSE_EVENT_SCHEMA, take_chat_slot
from llm_service.api.deps import (
    ChatUser,
    ConnectionDep,
    CurrentUser,
    RuntimeDep,
    SessionDep,
    body_openapi,
    json_body,
)
from llm_service.api.responses import error_responses
from llm_service.errors import request_id_of
from llm_service.jsonutil import JSONResponse
from llm_service.runtime import Runtime
from llm_service.schemas import (
    ChatOut,
    ConversationIn,
    ConversationListOut,
    ConversationMessageIn,
    ConversationMessagesOut,
    ConversationPatch,
    ConversationPreviewOut,
    ConversationView,
    ForkIn,
    MessageOut,
    ModelName,
    ProviderId,
    RegenerateIn,
)
from llm_service.security.jwt import Principal
from llm_service.services import conversations
from llm_service.services.conversations import Placement, Send

router = APIRouter(prefix="/llm", tags=["conversations"])

_MAX_ID = 2**63 - 1


def _id(value: str) -> int | None:
    """A path id: digits naming a BIGINT from 1; None for anything else."""
    if not (value.isascii() and value.isdigit()) or len(value) > 19:
        return None
    number = int(value)
    return number if 1 <= number <= _MAX_ID else None


async def conversation_id(
    conversation: Annotated[str, Path(alias="conversationId", examples=["12"],
                                      description="The conversation's id.")],
) -> int:
    """Another user's conversation, a missing one and an id that cannot be one are all the
    same 404."""
    number = _id(conversation)
    if number is None:
        raise conversations.not_found()
    return number


async def message_id(
    message: Annotated[str, Path(alias="messageId", examples=["124"],
                                 description="A message of the conversation.")],
) -> int:
    number = _id(message)
    if number is None:
        raise conversations.message_not_found()
    return number


ConversationId = Annotated[int, Depends(conversation_id)]
MessageId = Annotated[int, Depends(message_id)]
ONE = "/conversations/{conversationId}"


@router.get(
    "/conversations",
    summary="The user's conversations, newest activity first",
    description=(
        "Newest activity (the last message, else the creation) first, `limit` per page; pass "
        "`nextCursor` as `cursor` for the next page. Archived conversations are listed only "
        "with `archived=true`. Example: `GET /llm/conversations?provider=openai&pinned=true`."
    ),
    response_model=None,
    responses={200: {"model": ConversationListOut}, **error_responses(401, 403, 422, 503)},
)
async def list_conversations(
    user: CurrentUser,
    session: SessionDep,
    provider: Annotated[ProviderId | None, Query(description="Only those started with this "
                                                 "provider.")] = None,
    pinned: Annotated[bool | None, Query(description="Only pinned (true) or unpinned "
                                         "(false) ones; default both.")] = None,
    archived: Annotated[bool, Query(description="true: the archived ones instead.")] = False,
    limit: Annotated[int, Query(ge=1, le=200, description="1-200")] = 50,
    cursor: Annotated[str | None, Query(pattern=r"^[A-Za-z0-9_-]{1,200}$",
                                        description="`nextCursor` of the previous page.")] = None,
) -> JSONResponse:
    rows, next_cursor = await conversations.listing(
        session, user.user_id, provider=provider, pinned=pinned, archived=archived,
        limit=limit, cursor=cursor)
    return JSONResponse({"conversations": [conversations.conversation_view(r) for r in rows],
                         "nextCursor": next_cursor})


@router.post(
    "/conversations",
    status_code=201,
    summary="Start a conversation",
    description=(
        "With one of the user's configured providers (400 `provider_not_configured` "
        "otherwise), its configured model unless `model` is given. Its `title` is made after "
        "the first exchange unless given. 413 `too_many_conversations` past "
        "`LLM_MAX_CONVERSATIONS`."
    ),
    response_model=None,
    responses={201: {"model": ConversationView}, **error_responses(400, 401, 403, 413, 422,
                                                                   503)},
    openapi_extra=body_openapi(ConversationIn),
)
async def create_conversation(
    user: CurrentUser,
    body: Annotated[ConversationIn, Depends(json_body(ConversationIn))],
    session: SessionDep,
    runtime: RuntimeDep,
) -> JSONResponse:
    row = await conversations.create(session, runtime, user.user_id, body)
    return JSONResponse(conversations.conversation_view(row), status_code=201)


@router.get(
    ONE,
    summary="One conversation",
    response_model=None,
    responses={200: {"model": ConversationView}, **error_responses(401, 403, 404, 503)},
)
async def read_conversation(
    user: CurrentUser, conversation: ConversationId, session: SessionDep,
) -> JSONResponse:
    row = await conversations.get(session, user.user_id, conversation)
    return JSONResponse(conversations.conversation_view(row))


@router.patch(
    ONE,
    summary="Rename, pin, archive, set the system prompt, switch branches",
    description=(
        "Only the fields present change. `systemPrompt: null` removes the conversation's own "
        "prompt (the provider's default applies again). `activeMessageId` makes the branch "
        "through that message the active one."
    ),
    response_model=None,
    responses={200: {"model": ConversationView}, **error_responses(401, 403, 404, 413, 422,
                                                                   503)},
    openapi_extra=body_openapi(ConversationPatch),
)
async def change_conversation(
    user: CurrentUser,
    conversation: ConversationId,
    body: Annotated[ConversationPatch, Depends(json_body(ConversationPatch))],
    session: SessionDep,
    runtime: RuntimeDep,
) -> JSONResponse:
    row = await conversations.change(session, runtime, user.user_id, conversation, body)
    return JSONResponse(conversations.conversation_view(row))


@router.delete(
    ONE,
    summary="Delete a conversation and all its messages",
    response_model=None,
    responses={200: {"model": MessageOut}, **error_responses(401, 403, 404, 503)},
)
async def delete_conversation(
    user: CurrentUser, conversation: ConversationId, session: SessionDep,
) -> JSONResponse:
    await conversations.remove(session, user.user_id, conversation)
    return JSONResponse({"success": True, "message": "Conversation deleted"})


@router.get(
    ONE + "/messages",
    summary="The messages of the active branch, or the whole tree",
    description=(
        "`view=branch` (default): the active branch from its first message to "
        "`activeLeafId`. `view=tree`: every message, oldest first, each with its `parentId` "
        "(null for a first message). Each message lists its `siblingIds` (edits and "
        "regenerations of the same place); switch to one with `PATCH {\"activeMessageId\"}`."
    ),
    response_model=None,
    responses={200: {"model": ConversationMessagesOut}, **error_responses(401, 403, 404, 422,
                                                                          503)},
)
async def conversation_messages(
    user: CurrentUser,
    conversation: ConversationId,
    session: SessionDep,
    view: Annotated[Literal["branch", "tree"], Query()] = "branch",
) -> JSONResponse:
    return JSONResponse(await conversations.messages(session, user.user_id, conversation, view))


@router.get(
    ONE + "/preview",
    summary="What the next call would send: model, system prompt, context",
    description=(
        "The one system prompt (`systemSource`: conversation, else template, else provider) "
        "and the context (the active branch trimmed to the model's context window), as the "
        "next message would be sent after them, for the conversation's provider or the one "
        "given."
    ),
    response_model=None,
    responses={200: {"model": ConversationPreviewOut}, **error_responses(400, 401, 403, 404,
                                                                         422, 503)},
)
async def preview(
    user: CurrentUser,
    conversation: ConversationId,
    conn: ConnectionDep,
    runtime: RuntimeDep,
    provider: Annotated[ProviderId | None, Query()] = None,
    model: Annotated[ModelName | None, Query()] = None,
) -> JSONResponse:
    plan = await conversations.plan(conn, runtime, user.user_id, conversation,
                                    provider=provider, model=model, message=None, exact=True)
    return JSONResponse(conversations.preview(plan))


@router.post(
    ONE + "/fork",
    status_code=201,
    summary="A new conversation from a message: its branch up to that message, copied",
    response_model=None,
    responses={201: {"model": ConversationView}, **error_responses(401, 403, 404, 413, 422,
                                                                   503)},
    openapi_extra=body_openapi(ForkIn),
)
async def fork_conversation(
    user: CurrentUser,
    conversation: ConversationId,
    body: Annotated[ForkIn, Depends(json_body(ForkIn))],
    session: SessionDep,
    runtime: RuntimeDep,
) -> JSONResponse:
    row = await conversations.fork(session, runtime, user.user_id, conversation, body)
    return JSONResponse(conversations.conversation_view(row), status_code=201)


_SEND = (
    "The answer is the chat route's (`response`, `tokensUsed`, `model`, ..., `id` of the "
    "stored reply) plus `conversationId` and `parentId` (the user message it answers); the "
    "errors are the chat route's, and 413 `conversation_full` past "
    "`LLM_MAX_CONVERSATION_MESSAGES`. The vendor gets the conversation's one system prompt, "
    "then the branch (trimmed to the model's context window), then the message. "
)
_STREAM = ("The same, as `text/event-stream` (`delta` events, then `done` with the answer "
           "above, or `error`), as `POST /llm/chat/{provider}/stream` streams.")
_SSE_200 = {"description": "The answer as Server-Sent Events (`delta`, then `done` or `error`).",
            "content": {"text/event-stream": {"schema": SSE_EVENT_SCHEMA}}}
_CHAT_ERRORS = error_responses(400, 401, 403, 404, 413, 422, 429, 502, 503, 504)


async def _streamed(request: Request, runtime: Runtime, user: Principal, conversation: int,
                    what: Send) -> StreamingResponse:
    take_chat_slot(runtime, user.user_id)  # held until the stream ends, however it ends
    try:
        stream = await conversations.open_send_stream(runtime, user, conversation, what)
    except BaseException:
        runtime.chat_slots.release(user.user_id)
        raise
    return StreamingResponse(
        stream.sse(request_id_of(request), lambda: runtime.chat_slots.release(user.user_id)),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


async def _answered(runtime: Runtime, user: Principal, conversation: int,
                    what: Send) -> JSONResponse:
    take_chat_slot(runtime, user.user_id)
    try:
        answer = await conversations.send(runtime, user, conversation, what)
    finally:
        runtime.chat_slots.release(user.user_id)
    return JSONResponse(answer)


def _message(body: ConversationMessageIn) -> Send:
    return Send(body.message, Placement(parent_id=body.parent_id, edit_of=body.edit_of),
                body.provider, body.model)


def _regeneration(body: RegenerateIn, message: int) -> Send:
    return Send(None, Placement(regenerate_of=message), body.provider, body.model)


@router.post(
    ONE + "/messages",
    summary="Send a message in the conversation (or edit one with editOf)",
    description=_SEND + "By default the message follows the end of the active branch; "
    "`parentId` puts it after another reply, `editOf` makes it a sibling of that user message "
    "(an edit: the old one stays). The answer ends the new active branch. `provider` and "
    "`model` switch vendor or model for this message only.",
    response_model=None,
    responses={200: {"model": ChatOut}, **_CHAT_ERRORS},
    openapi_extra=body_openapi(ConversationMessageIn),
)
async def send_message(
    user: ChatUser,
    conversation: ConversationId,
    body: Annotated[ConversationMessageIn, Depends(json_body(ConversationMessageIn))],
    runtime: RuntimeDep,
) -> JSONResponse:
    return await _answered(runtime, user, conversation, _message(body))


@router.post(
    ONE + "/messages/stream",
    summary="Send a message in the conversation, answered as Server-Sent Events",
    description=_STREAM,
    response_class=StreamingResponse,
    responses={200: _SSE_200, **_CHAT_ERRORS},
    openapi_extra=body_openapi(ConversationMessageIn),
)
async def send_message_stream(
    request: Request,
    user: ChatUser,
    conversation: ConversationId,
    body: Annotated[ConversationMessageIn, Depends(json_body(ConversationMessageIn))],
    runtime: RuntimeDep,
) -> StreamingResponse:
    return await _streamed(request, runtime, user, conversation, _message(body))


_REGENERATE = (
    "A new reply to the user message that `messageId` answers (or to `messageId` itself when "
    "it is a user message): a sibling of the old reply, which stays. The message is not "
    "stored again. " + _SEND
)


@router.post(
    ONE + "/messages/{messageId}/regenerate",
    summary="Regenerate a reply (a new sibling), optionally with another provider or model",
    description=_REGENERATE,
    response_model=None,
    responses={200: {"model": ChatOut}, **_CHAT_ERRORS},
    openapi_extra=body_openapi(RegenerateIn),
)
async def regenerate(
    user: ChatUser,
    conversation: ConversationId,
    message: MessageId,
    body: Annotated[RegenerateIn, Depends(json_body(RegenerateIn, empty_ok=True))],
    runtime: RuntimeDep,
) -> JSONResponse:
    return await _answered(runtime, user, conversation, _regeneration(body, message))


@router.post(
    ONE + "/messages/{messageId}/regenerate/stream",
    summary="Regenerate a reply, answered as Server-Sent Events",
    description=_STREAM,
    response_class=StreamingResponse,
    responses={200: _SSE_200, **_CHAT_ERRORS},
    openapi_extra=body_openapi(RegenerateIn),
)
async def regenerate_stream(
    request: Request,
    user: ChatUser,
    conversation: ConversationId,
    message: MessageId,
    body: Annotated[RegenerateIn, Depends(json_body(RegenerateIn, empty_ok=True))],
    runtime: RuntimeDep,
) -> StreamingResponse:
    return await _streamed(request, runtime, user, conversation, _regeneration(body, message))
