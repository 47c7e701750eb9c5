"""Routes of the settings page: list, save and delete a user's vendor configurations."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends

from llm_service.api.deps import (
    CurrentUser,
    Provider,
    RuntimeDep,
    SessionDep,
    body_openapi,
    json_body,
)
from llm_service.api.responses import error_responses
from llm_service.errors import ServiceError
from llm_service.jsonutil import JSONResponse
from llm_service.schemas import ConfigIn, ConfigsOut, MessageOut
from llm_service.services import configs

router = APIRouter(prefix="/llm", tags=["configs"])


@router.get(
    "/configs",
    summary="The user's configured providers, keys masked",
    response_model=None,
    responses={200: {"model": ConfigsOut}, **error_responses(401, 403, 503)},
)
async def list_configs(user: CurrentUser, session: SessionDep, runtime: RuntimeDep) -> JSONResponse:
    rows = await configs.list_configs(session, user.user_id)
    return JSONResponse({"configs": {row.provider: configs.config_view(row, runtime.catalog)
                                     for row in rows}})


@router.post(
    "/config/{provider}",
    summary="Create or update the user's configuration of a provider",
    description=(
        "An upsert, one row per (user, provider). `apiKey` is required the first time (without "
        "it, a provider not yet configured is 422 `validation_error` on `apiKey`); on an "
        "update, left-out "
        "fields keep their stored values. Defaults on creation: the provider's "
        "default model, temperature 0.7, maxTokens 2048. `null` is refused."
    ),
    response_model=None,
    responses={200: {"model": MessageOut}, **error_responses(401, 403, 404, 413, 422, 503)},
    openapi_extra=body_openapi(ConfigIn),
)
async def save_config(
    user: CurrentUser,
    provider: Provider,
    body: Annotated[ConfigIn, Depends(json_body(ConfigIn))],
    runtime: RuntimeDep,
    session: SessionDep,
) -> JSONResponse:
    await configs.save_config(
        session,
        runtime.keyring,
        runtime.settings,
        user_id=user.user_id,
        provider=provider,
        given=body,
    )
    return JSONResponse({"success": True, "message": "Configuration saved"})


@router.delete(
    "/config/{provider}",
    summary="Delete the user's configuration of a provider (history is kept)",
    response_model=None,
    responses={200: {"model": MessageOut}, **error_responses(401, 403, 404, 503)},
)
async def delete_config(user: CurrentUser, provider: Provider, session: SessionDep) -> JSONResponse:
    if not await configs.delete_config(session, user.user_id, provider):
        raise ServiceError(
            404, "not_configured", f"There is no {provider} configuration to delete."
        )
    return JSONResponse({"success": True, "message": "Configuration deleted"})
