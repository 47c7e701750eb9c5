"""Request ids and the last line of defence, as pure ASGI (no per-request task or body copy).

Every response carries `X-Request-ID` (the caller's, when it is a sane token, else a new one),
and the `X-RateLimit-*` headers when the request was counted by a rate limit.
An exception nothing else handled becomes the contract's error body: 503 `unavailable` when the
database is out (logged as one warning line), else 500 `internal_error`, logged with its stack
trace and the request id. The client never sees the trace.
"""

from __future__ import annotations

import logging
import re
import time
import uuid

from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from llm_service.errors import (
    ServiceError,
    database_unavailable,
    error_response,
    is_database_outage,
)

log = logging.getLogger("llm_service.requests")

_SANE_ID = re.compile(r"^[A-Za-z0-9._-]{8,64}$")


def _incoming_request_id(scope: Scope) -> str | None:
    for name, value in scope.get("headers", ()):
        if name == b"x-request-id":
            text = value.decode("latin-1")
            return text if _SANE_ID.match(text) else None
    return None


class RequestContextMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = _incoming_request_id(scope) or uuid.uuid4().hex
        scope.setdefault("state", {})["request_id"] = request_id
        started = False
        began = time.perf_counter()

        async def send_with_id(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                self._count(scope, message["status"], time.perf_counter() - began)
                headers = MutableHeaders(scope=message)
                if "x-request-id" not in headers:
                    headers.append("X-Request-ID", request_id)
                limit_state = scope["state"].get("rate_limit")
                if limit_state is not None and "x-ratelimit-limit" not in headers:
                    for name, value in limit_state.headers().items():
                        headers.append(name, value)
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        except Exception as exc:
            if started:
                log.exception("request %s failed after the response began", request_id)
                raise
            error = self._error_for(exc, scope, request_id)
            await error_response(error, request_id)(scope, receive, send)

    @staticmethod
    def _count(scope: Scope, status: int, seconds: float) -> None:
        runtime = getattr(scope["app"].state, "runtime", None)
        if runtime is not None and runtime.metrics.enabled:
            route = getattr(scope.get("route"), "path", "unmatched")
            runtime.metrics.request(route, scope["method"], status, seconds)

    @staticmethod
    def _error_for(exc: Exception, scope: Scope, request_id: str) -> ServiceError:
        where = f"{scope.get('method')} {scope.get('path')}"
        if is_database_outage(exc):
            log.warning("request %s %s: database unavailable (%s)", request_id, where,
                        type(exc).__name__)
            return database_unavailable()
        log.error("request %s %s failed", request_id, where, exc_info=exc)
        return ServiceError(
            500,
            "internal_error",
            f"Something went wrong on our side; if it persists, report request id {request_id}.",
        )
