"""Routes of the settings page: list, save and delete a user's vendor configurations."""

from __future__ import annotations

from typing import Annotated, Any

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
from llm_service.schemas import (
    ConfigIn,
    ConfigsOut,
    KeyCheckIn,
    KeyCheckOut,
    MessageOut,
    ModelsOut,
)
from llm_service.security.crypto import KeyUnreadable
from llm_service.services import configs
from llm_service.services.chat import key_unreadable, not_configured
from llm_service.services.keycheck import check_key
from llm_service.services.models import catalogue_models, key_models

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
        "default model, temperature 0.7, maxTokens 2048. `null` is refused. With "
        "`?verify=true` the key is checked with the vendor first (as `/test` does) and a "
        "failed check is 400 `provider_key_check_failed`, nothing saved."
    ),
    response_model=None,
    responses={200: {"model": MessageOut}, **error_responses(400, 401, 403, 404, 413, 422,
                                                               503)},
    openapi_extra=body_openapi(ConfigIn),
)
async def save_config(
    user: CurrentUser,
    provider: Provider,
    body: Annotated[ConfigIn, Depends(json_body(ConfigIn))],
    runtime: RuntimeDep,
    session: SessionDep,
    verify: bool = False,
) -> JSONResponse:
    if verify:  # the key check first: a failed one saves nothing
        await _verified(runtime, user.user_id, provider, body)
    await configs.save_config(
        session,
        runtime.keyring,
        runtime.settings,
        user_id=user.user_id,
        provider=provider,
        given=body,
    )
    return JSONResponse({"success": True, "message": "Configuration saved"})


async def _verified(runtime: Any, user_id: int, provider: str, body: ConfigIn) -> None:
    """`?verify=true`: the given key (else the saved one) must pass the key check in the given
    (else the saved) region, or the save is 400 `provider_key_check_failed` with its sentence."""
    name = runtime.providers[provider].display_name
    api_key, region = body.api_key, body.region
    if api_key is None or region is None:
        async with runtime.autocommit.connect() as conn:
            saved = await configs.chat_config(conn, user_id, provider)
        if saved is not None:
            region = region or saved.region
            if api_key is None:
                try:
                    api_key = runtime.keyring.decrypt(saved.api_key_encrypted, user_id=user_id,
                                                      provider=provider)
                except KeyUnreadable:
                    raise key_unreadable(name) from None
    if api_key is None:
        raise not_configured(name)
    configs.check_region(runtime.settings, provider, region)
    checked = await check_key(runtime, provider, api_key, region)
    if checked["result"] != "ok":
        raise ServiceError(400, "provider_key_check_failed",
                           f"Not saved: {checked['message']}")


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


@router.post(
    "/config/{provider}/test",
    summary="Check a key with the vendor (its list-models call), without changing anything",
    description=(
        "Checks `apiKey` from the body (not saved), else the saved key, in `region` (else the "
        "saved one): `result` is ok, key_rejected, no_credit, wrong_region (with the key's "
        "`region`) or unreachable, answered within 5 seconds. A failed check never changes "
        "or deletes the saved key."
    ),
    response_model=None,
    responses={200: {"model": KeyCheckOut}, **error_responses(400, 401, 403, 404, 413, 422,
                                                               503)},
    openapi_extra=body_openapi(KeyCheckIn),
)
async def test_key(
    user: CurrentUser,
    provider: Provider,
    body: Annotated[KeyCheckIn, Depends(json_body(KeyCheckIn))],
    runtime: RuntimeDep,
) -> JSONResponse:
    name = runtime.providers[provider].display_name
    region = body.region
    api_key = body.api_key
    if api_key is None or region is None:
        async with runtime.autocommit.connect() as conn:
            saved = await configs.chat_config(conn, user.user_id, provider)
        if saved is None and api_key is None:
            raise not_configured(name)
        if saved is not None:
            region = region or saved.region
            if api_key is None:
                try:
                    api_key = runtime.keyring.decrypt(
                        saved.api_key_encrypted, user_id=user.user_id, provider=provider)
                except KeyUnreadable:
                    raise key_unreadable(name) from None
    configs.check_region(runtime.settings, provider, region)
    assert api_key is not None
    return JSONResponse(await check_key(runtime, provider, api_key, region))


@router.get(
    "/models/{provider}",
    summary="The models the user's key can call, with the catalogue's prices and status",
    description=(
        "With a saved key: the vendor's own list for it (cached a few minutes per user), each "
        "joined with the model catalogue (`listed` false for an id the catalogue does not "
        "know). Without one, or when the vendor cannot be asked: the catalogue's list, with "
        "`source` saying which."
    ),
    response_model=None,
    responses={200: {"model": ModelsOut}, **error_responses(401, 403, 404, 503)},
)
async def list_models(user: CurrentUser, provider: Provider, runtime: RuntimeDep) -> JSONResponse:
    async with runtime.autocommit.connect() as conn:
        saved = await configs.chat_config(conn, user.user_id, provider)
    if saved is not None:
        try:
            api_key = runtime.keyring.decrypt(saved.api_key_encrypted, user_id=user.user_id,
                                              provider=provider)
        except KeyUnreadable:
            api_key = None
        if api_key is not None:
            models = await key_models(runtime, user.user_id, provider, api_key, saved.region,
                                      saved.api_key_encrypted[-16:])
            if models is not None:
                return JSONResponse({"source": "vendor", "models": models})
    return JSONResponse({"source": "catalogue", "models": catalogue_models(runtime, provider)})
