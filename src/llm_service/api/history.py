"""Routes of the chat window's history: read a page, clear it."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from llm_service.api.deps import CurrentUser, Provider, SessionDep
from llm_service.api.responses import error_responses
from llm_service.jsonutil import JSONResponse
from llm_service.schemas import HistoryOut, MessageOut
from llm_service.services import history

router = APIRouter(prefix="/llm", tags=["history"])


@router.get(
    "/history/{provider}",
    summary="A page of the user's chat history with a provider",
    description=(
        "`offset` counts back from the newest message: the page holds the `limit` newest "
        "messages after skipping `offset`, listed oldest first. `total` counts all of them."
    ),
    response_model=None,
    responses={200: {"model": HistoryOut}, **error_responses(401, 403, 404, 422, 503)},
)
async def get_history(
    user: CurrentUser,
    provider: Provider,
    session: SessionDep,
    limit: Annotated[int, Query(ge=1, le=200, description="1-200")] = 50,
    offset: Annotated[
        int, Query(ge=0, le=1_000_000_000, description="Messages to skip, from the newest")
    ] = 0,
) -> JSONResponse:
    rows, total = await history.page(session, user.user_id, provider, limit=limit, offset=offset)
    return JSONResponse({"history": [history.history_item(row) for row in rows], "total": total})


@router.delete(
    "/history/{provider}",
    summary="Clear the user's chat history with a provider",
    response_model=None,
    responses={200: {"model": MessageOut}, **error_responses(401, 403, 404, 503)},
)
async def clear_history(user: CurrentUser, provider: Provider, session: SessionDep) -> JSONResponse:
    await history.clear(session, user.user_id, provider)
    return JSONResponse({"success": True, "message": "Chat history cleared"})
