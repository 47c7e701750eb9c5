"""The one error type and the one JSON error shape.

Every failure leaves the service as
``{"success": false, "error": <sentence>, "code": <code>, "requestId": <id>}`` (plus ``details``
for validation), with the same id in the ``X-Request-ID`` header. Handlers are installed by
``install_error_handlers``; unexpected exceptions are caught by ``RequestContextMiddleware``.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from sqlalchemy import exc as sa_exc
from starlette.exceptions import HTTPException as StarletteHTTPException

from llm_service.jsonutil import dumps
from llm_service.providers.registry import provider_ids

log = logging.getLogger("llm_service.errors")

DB_RETRY_AFTER_S = 5


class ServiceError(Exception):
    """An error with a status, a contract code and a sentence a person can act on."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        *,
        headers: Mapping[str, str] | None = None,
        details: Sequence[Mapping[str, Any]] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = dict(headers or {})
        self.details = details


def unauthorized() -> ServiceError:
    return ServiceError(
        401,
        "unauthorized",
        "Your session is missing or has expired: sign in again.",
        headers={"WWW-Authenticate": "Bearer"},
    )


def unknown_provider() -> ServiceError:
    return ServiceError(
        404,
        "unknown_provider",
        f"Unknown provider; use one of: {', '.join(provider_ids())}.",
    )


def database_unavailable() -> ServiceError:
    return ServiceError(
        503,
        "unavailable",
        "The service's database is not reachable right now; try again in a few seconds.",
        headers={"Retry-After": str(DB_RETRY_AFTER_S)},
    )


# SQLSTATEs that mean "the database is not there for us right now", not "this query is wrong":
# class 08 (connection exceptions) by prefix, and these: the database refuses connections
# (55000, `ALTER DATABASE ... ALLOW_CONNECTIONS false`), administrator/crash shutdown and "starting
# up / shutting down" (57P01-57P03), too many connections (53300), a dropped database (3D000).
OUTAGE_SQLSTATES = frozenset({"55000", "57P01", "57P02", "57P03", "53300", "3D000"})


def sqlstate_of(exc: BaseException) -> str | None:
    """The PostgreSQL SQLSTATE behind an error: SQLAlchemy's wrapper (`.orig`), the adapted
    asyncpg error or asyncpg's own, whichever carries it first along the cause chain."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        for candidate in (current, getattr(current, "orig", None)):
            state = getattr(candidate, "sqlstate", None)
            if isinstance(state, str) and state:
                return state
        current = current.__cause__ or current.__context__
    return None


def is_database_outage(exc: BaseException) -> bool:
    """Connection-level failures of the database (not bugs such as a bad query)."""
    state = sqlstate_of(exc)
    if state is not None and (state in OUTAGE_SQLSTATES or state.startswith("08")):
        return True
    if isinstance(exc, sa_exc.DBAPIError):
        return exc.connection_invalidated or isinstance(
            exc, sa_exc.OperationalError | sa_exc.InterfaceError
        )
    return isinstance(exc, sa_exc.TimeoutError | sa_exc.DisconnectionError | OSError)


def request_id_of(request: Request) -> str:
    return str(request.scope.get("state", {}).get("request_id", ""))


def error_body(error: ServiceError, request_id: str) -> dict[str, Any]:
    """The contract's one error shape (a JSON answer's body, a stream's `error` event)."""
    body: dict[str, Any] = {"success": False, "error": error.message, "code": error.code}
    if error.details is not None:
        body["details"] = list(error.details)
    body["requestId"] = request_id
    return body


def error_response(error: ServiceError, request_id: str) -> Response:
    headers = {**error.headers, "X-Request-ID": request_id}
    return Response(dumps(error_body(error, request_id)), status_code=error.status,
                    headers=headers, media_type="application/json")


def _validation_details(errors: Sequence[Mapping[str, Any]]) -> list[dict[str, str]]:
    """Field path and reason only: never the submitted input (it may be an API key)."""
    details = []
    for err in errors:
        loc = [str(part) for part in err.get("loc", ()) if part not in ("body", "query", "path")]
        details.append({"field": ".".join(loc) or "body", "reason": str(err.get("msg", "invalid"))})
    return details


def validation_error(errors: Sequence[Mapping[str, Any]]) -> ServiceError:
    details = _validation_details(errors)
    first = details[0] if details else {"field": "body", "reason": "invalid"}
    return ServiceError(
        422,
        "validation_error",
        f"Check the request: {first['field']}: {first['reason']}.",
        details=details,
    )


_HTTP_CODES = {
    404: ("not_found", "Nothing here: check the URL."),
    405: ("method_not_allowed", "This URL does not take that method."),
}


def _allowed_methods(request: Request) -> str:
    """Every method any route takes at this path (Starlette names only the first route's)."""
    path = request.url.path
    methods: set[str] = set()
    for pattern, route_methods in getattr(request.app.state, "route_methods", ()):
        if pattern.match(path):
            methods |= route_methods
    return ", ".join(sorted(methods))


def install_error_handlers(app: FastAPI) -> None:
    async def on_service_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, ServiceError)
        return error_response(exc, request_id_of(request))

    async def on_validation(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, RequestValidationError)
        return error_response(validation_error(exc.errors()), request_id_of(request))

    async def on_http(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, StarletteHTTPException)
        code, message = _HTTP_CODES.get(exc.status_code, ("error", "The request failed."))
        headers = dict(exc.headers or {})
        if exc.status_code == 405:
            headers["Allow"] = _allowed_methods(request)
        return error_response(
            ServiceError(exc.status_code, code, message, headers=headers), request_id_of(request)
        )

    app.add_exception_handler(ServiceError, on_service_error)
    app.add_exception_handler(RequestValidationError, on_validation)
    app.add_exception_handler(StarletteHTTPException, on_http)
