"""The chat route: one message in, the vendor's answer out, both stored in the history."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends

from llm_service.api.deps import ChatUser, Provider, RuntimeDep, body_openapi, json_body
from llm_service.api.responses import error_responses
from llm_service.jsonutil import JSONResponse
from llm_service.schemas import ChatIn, ChatOut
from llm_service.services import chat as chat_service

router = APIRouter(prefix="/llm", tags=["chat"])


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
    async with runtime.chat_slots.slot(user.user_id):
        answer = await chat_service.chat(
            runtime, user_id=user.user_id, provider=provider, body=body
        )
    return JSONResponse(answer)
