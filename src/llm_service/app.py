"""The application factory. The lifespan owns what requests share: the engine, the keyring, the
token decoder, the vendor HTTP pool and the provider adapters."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware
from fastapi.routing import APIRoute
from fastapi_offline import FastAPIOffline

from llm_service import __version__
from llm_service.api import chat, configs, conversations, health, history, usage
from llm_service.api import metrics as metrics_api
from llm_service.api.deps import add_body_schemas
from llm_service.db import migrate
from llm_service.db.session import create_engine, create_session_factory
from llm_service.errors import install_error_handlers
from llm_service.jsonutil import JSONResponse
from llm_service.metrics import Metrics, NullMetrics, known_models
from llm_service.middleware import RequestContextMiddleware
from llm_service.providers.registry import ProviderRegistry, make_http_client, provider_ids
from llm_service.runtime import Runtime
from llm_service.security.crypto import Keyring
from llm_service.security.jwt import TokenDecoder
from llm_service.security.rate_limit import ConcurrencyCap, RateLimiter
from llm_service.server import BodyDeadlineMiddleware
from llm_service.settings import Settings, load_settings

log = logging.getLogger("llm_service")

DESCRIPTION = """\
Bring-your-own-key chat backend for five LLM vendors (OpenAI, Gemini, Claude, Qwen, Hugging Face).

Every `/llm/*` route needs `Authorization: Bearer <jwt>` from the platform's auth service.
Every error has one shape: `{"success": false, "error": "...", "code": "...", "requestId": "..."}`
(plus `details` for validation errors), and the same id in the `X-Request-ID` header.
"""


def with_provider_enum(openapi: dict[str, Any]) -> dict[str, Any]:
    """Every `{provider}` path parameter lists the registered vendors."""
    for operations in openapi.get("paths", {}).values():
        for operation in operations.values():
            for parameter in operation.get("parameters", []):
                if parameter.get("in") == "path" and parameter.get("name") == "provider":
                    parameter["schema"] = {**parameter.get("schema", {}),
                                           "enum": list(provider_ids())}
    return openapi
# Where the Swagger UI and ReDoc files are served (the pages at /docs and /redoc load them here).
DOCS_ASSETS_URL = "/docs/assets"


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or load_settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        engine = create_engine(settings)
        http = make_http_client(settings)
        try:
            providers = ProviderRegistry(settings, http)  # a wrong catalogue stops start-up
            if settings.should_migrate_on_start:
                await migrate.upgrade(engine, wait_s=settings.db_wait_s)
            assert settings.encryption_key
            app.state.runtime = Runtime(
                settings=settings,
                engine=engine,
                autocommit=engine.execution_options(isolation_level="AUTOCOMMIT"),
                sessions=create_session_factory(engine),
                keyring=Keyring.from_hex(
                    settings.encryption_key, settings.encryption_keys_previous
                ),
                tokens=TokenDecoder(settings),
                providers=providers,
                limiter=RateLimiter(settings),
                catalog=providers.catalog,
                metrics=Metrics(known_models(settings, providers.catalog))
                if settings.metrics_enabled
                else NullMetrics(),
                chat_slots=ConcurrencyCap(settings.max_concurrent_chats_per_user),
            )
            yield
        finally:
            runtime = getattr(app.state, "runtime", None)
            if runtime is not None:  # titles still being made use the pool and the engine
                await runtime.background.close()
            await http.aclose()
            await engine.dispose()

    # /docs (Swagger UI) and /redoc load their scripts, styles and icon from the service itself
    # (fastapi-offline ships them, under DOCS_ASSETS_URL), never from a public CDN: they render on
    # an intranet, offline and wherever a CDN is blocked.
    app = FastAPIOffline(
        title="llm-service",
        version=__version__,
        description=DESCRIPTION,
        lifespan=lifespan,
        default_response_class=JSONResponse,
        # `/llm/configs/` is a 404 like any unknown path: the 307 Starlette would answer builds
        # its Location from the client's Host header.
        redirect_slashes=False,
        static_url=DOCS_ASSETS_URL,
    )
    install_error_handlers(app)
    routers = (health.router, configs.router, history.router, chat.router,
               conversations.router, usage.router, metrics_api.router)
    for router in routers:
        app.include_router(router)
    # For the Allow header of 405 answers.
    app.state.route_methods = [
        (route.path_regex, set(route.methods))
        for router in routers for route in router.routes if isinstance(route, APIRoute)
    ]
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_methods=["GET", "POST", "PATCH", "DELETE", "OPTIONS"],
            allow_headers=["Authorization", "Content-Type", "X-Request-ID"],
            expose_headers=["X-Request-ID", "Retry-After", "X-RateLimit-Limit",
                            "X-RateLimit-Remaining", "X-RateLimit-Reset"],
            max_age=600,
        )
    default_openapi = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = with_provider_enum(add_body_schemas(default_openapi()))
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
    app.add_middleware(BodyDeadlineMiddleware, timeout_s=settings.body_timeout_s)
    # Outermost of ours: every answer, CORS preflights and errors included, gets a request id.
    app.add_middleware(RequestContextMiddleware)
    return app
