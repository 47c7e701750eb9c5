"""Dependencies as Annotated aliases, so a route reads as its signature.

All are `async def`: FastAPI runs a plain `def` dependency in a worker thread, a thread hop per
dependency per request.

Order of checks is the contract's: `CurrentUser` or `ChatUser` (401/403, then the rate limit's
429) comes first in every signature, then `Provider` (404), then the body (413/422).
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from typing import Annotated, Any, TypeVar

from fastapi import Depends, Request
from pydantic import BaseModel, ValidationError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from llm_service.errors import ServiceError, unauthorized, unknown_provider, validation_error
from llm_service.jsonutil import loads
from llm_service.providers.registry import VENDORS
from llm_service.runtime import Runtime
from llm_service.security.jwt import InvalidToken, Principal, UnknownRole
from llm_service.security.rate_limit import rate_limited

ModelT = TypeVar("ModelT", bound=BaseModel)


def runtime_of(request: Request) -> Runtime:
    return request.app.state.runtime  # type: ignore[no-any-return]


async def get_runtime(request: Request) -> Runtime:
    return runtime_of(request)


RuntimeDep = Annotated[Runtime, Depends(get_runtime)]


def _authenticate(request: Request, runtime: Runtime) -> Principal:
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise unauthorized()
    try:
        return runtime.tokens.decode(token.strip())
    except InvalidToken:
        raise unauthorized() from None
    except UnknownRole:
        raise ServiceError(
            403, "forbidden", "Your account's role may not use the assistant."
        ) from None


async def _count_request(
    request: Request, runtime: Runtime, user: Principal, chat: bool
) -> Principal:
    limiter = runtime.limiter
    state = await limiter.hit(limiter.chat if chat else limiter.default, user.user_id)
    # RequestContextMiddleware puts the X-RateLimit-* headers on whatever answer follows.
    request.scope.setdefault("state", {})["rate_limit"] = state
    if not state.allowed:
        runtime.metrics.rejected("rate_limited")
        raise rate_limited(state, "chat messages" if chat else "requests")
    return user


# Each is one dependency doing the token check (401/403) and the rate limit (429) in one step,
# with no sub-dependencies: FastAPI's dependency solving costs tens of microseconds per level.
async def current_user(request: Request) -> Principal:
    """The caller, authenticated and counted against RATE_LIMIT_DEFAULT."""
    runtime = runtime_of(request)
    return await _count_request(request, runtime, _authenticate(request, runtime), chat=False)


async def chat_user(request: Request) -> Principal:
    """The caller, authenticated and counted against RATE_LIMIT_CHAT."""
    runtime = runtime_of(request)
    return await _count_request(request, runtime, _authenticate(request, runtime), chat=True)


CurrentUser = Annotated[Principal, Depends(current_user)]
ChatUser = Annotated[Principal, Depends(chat_user)]


async def provider_id(provider: str) -> str:
    if provider not in VENDORS:
        raise unknown_provider()
    return provider


Provider = Annotated[str, Depends(provider_id)]


async def db_session(runtime: RuntimeDep) -> AsyncIterator[AsyncSession]:
    """One session per request, committed once when the route returns, rolled back on error."""
    async with runtime.sessions() as session:
        try:
            yield session
        except BaseException:
            await session.rollback()
            raise
        await session.commit()


# scope="function": the commit happens before the response is sent, so a failed commit is the
# response.
SessionDep = Annotated[AsyncSession, Depends(db_session, scope="function")]


async def db_connection(runtime: RuntimeDep) -> AsyncIterator[AsyncConnection]:
    """An autocommit connection for a route's reads (each statement its own transaction, no
    BEGIN/COMMIT round trips), back in the pool when the route returns."""
    async with runtime.autocommit.connect() as conn:
        yield conn


ConnectionDep = Annotated[AsyncConnection, Depends(db_connection, scope="function")]


def payload_too_large(limit: int) -> ServiceError:
    return ServiceError(
        413,
        "payload_too_large",
        f"The request body is larger than {limit} bytes; send less.",
    )


async def _read_limited(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None and (not declared.isdigit() or int(declared) > limit):
        raise payload_too_large(limit)
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise payload_too_large(limit)
        chunks.append(chunk)
    return b"".join(chunks)


# No body of the contract nests deeper than 4; past this a body is refused, never walked further
# (orjson stops at 1024 levels and the standard library's parser then raises RecursionError).
MAX_JSON_DEPTH = 64


def _too_deep(data: object, limit: int = MAX_JSON_DEPTH) -> bool:
    """Whether `data` nests arrays and objects more than `limit` levels deep (iteratively)."""
    stack: list[tuple[dict[str, Any] | list[Any], int]] = []
    if isinstance(data, dict | list):
        stack.append((data, 1))
    while stack:
        value, depth = stack.pop()
        if depth > limit:
            return True
        children = value.values() if isinstance(value, dict) else value
        stack.extend((child, depth + 1) for child in children if isinstance(child, dict | list))
    return False


def json_body(model: type[ModelT], *, empty_ok: bool = False) -> Callable[..., Any]:
    """A dependency reading the body as `model`: 413 over the size limit (before parsing),
    422 when it is not a JSON object, nests past MAX_JSON_DEPTH or does not validate.
    `empty_ok`: no body at all reads as `{}` (a body whose fields are all optional)."""

    async def read(request: Request) -> ModelT:
        runtime = runtime_of(request)
        raw = await _read_limited(request, runtime.settings.max_body_bytes)
        if empty_ok and not raw.strip():
            raw = b"{}"
        try:
            data = loads(raw)
        except ValueError:
            try:  # valid JSON orjson refuses: lone surrogate escapes (text fields refuse them)
                data = json.loads(raw)
            except RecursionError:
                raise _nested_too_deep() from None
            except ValueError:
                raise validation_error(
                    [{"loc": ("body",), "msg": "the body is not valid JSON"}]
                ) from None
        if not isinstance(data, dict):
            raise validation_error([{"loc": ("body",), "msg": "the body must be a JSON object"}])
        if _too_deep(data):
            raise _nested_too_deep()
        try:
            return model.model_validate(data, context={"settings": runtime.settings})
        except ValidationError as exc:
            raise validation_error(exc.errors(include_input=False, include_url=False)) from None

    return read


def _nested_too_deep() -> ServiceError:
    return validation_error(
        [{"loc": ("body",), "msg": f"the body nests deeper than {MAX_JSON_DEPTH} levels"}]
    )


# Schemas of bodies read with `json_body`, added to the OpenAPI components by `add_body_schemas`.
_BODY_SCHEMAS: dict[str, dict[str, Any]] = {}


def body_openapi(model: type[BaseModel]) -> dict[str, Any]:
    """The OpenAPI requestBody for a route that reads its body with `json_body`."""
    schema = model.model_json_schema(by_alias=True, ref_template="#/components/schemas/{model}")
    _BODY_SCHEMAS.update(schema.pop("$defs", {}))
    _BODY_SCHEMAS[model.__name__] = schema
    return {
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {"schema": {"$ref": f"#/components/schemas/{model.__name__}"}}
            },
        }
    }


def add_body_schemas(openapi: dict[str, Any]) -> dict[str, Any]:
    components = openapi.setdefault("components", {}).setdefault("schemas", {})
    for name, schema in _BODY_SCHEMAS.items():
        components.setdefault(name, schema)
    return openapi
