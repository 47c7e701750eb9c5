"""The HTTP server: uvicorn on h11 with every part of a request bounded.

uvicorn's default parser (httptools, picked by `http="auto"` when installed) takes request heads of
any size (60 MiB were accepted, RSS 202 -> 541 MB), and uvicorn itself holds a connection that
sends nothing, or its head or body a byte at a time, for ever. So `serve` runs uvicorn with
`BoundedH11Protocol`, built on uvicorn's h11 protocol (pure Python, maintained with uvicorn; it
costs a few percent of a chat's CPU, see the README), and these bounds, all settings:

- head size: h11's `max_incomplete_event_size` (uvicorn's `h11_max_incomplete_event_size`) keeps
  an unfinished head under `LLM_MAX_HEADER_BYTES`; a head that arrives whole in one read is
  measured too. Over it: 431 `headers_too_large`. More than `LLM_MAX_HEADERS` fields: the same.
- head time: a head not complete within `LLM_HEADER_TIMEOUT_S` of the connection (on a
  kept-alive connection: of the next request's first byte) is answered 408 `request_timeout`
  (closed silently when nothing arrived). uvicorn has no such option, hence the subclass.
- body time: `BodyDeadlineMiddleware` (below) answers 408 when the app waits for a body that has
  not arrived within `LLM_BODY_TIMEOUT_S` of the head; a body nobody reads gets no more time than
  an idle connection (`LLM_KEEPALIVE_TIMEOUT_S`), however slowly it trickles in.
- idle keep-alive: uvicorn's `timeout_keep_alive` (`LLM_KEEPALIVE_TIMEOUT_S`).
- connections: a connection opened while `LLM_MAX_CONNECTIONS` are open gets 503 `unavailable`
  (with `Retry-After`) to its request; connections already open keep working. uvicorn's own
  `limit_concurrency` answers a plain-text 503 and also refuses requests on connections already
  open, so it is not used. `ensure_fd_headroom` raises the process's file limit to fit the cap.

Every refusal is the contract's error shape with a fresh request id, and closes the connection.
WebSockets are off (`ws="none"`): the service has none, and an upgrade would leave these bounds.
"""

from __future__ import annotations

import asyncio
import http
import logging
import resource
import uuid
from dataclasses import dataclass
from typing import Any, ClassVar

import h11
import uvicorn
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from uvicorn.protocols.http.h11_impl import H11Protocol

from llm_service.errors import ServiceError, error_response
from llm_service.settings import Settings

log = logging.getLogger("llm_service.server")

# Descriptors the process needs beside client connections: database pool, Redis, vendors, logs.
FD_HEADROOM = 256
RETRY_AFTER_S = 1


@dataclass(frozen=True, slots=True)
class HttpBounds:
    max_header_bytes: int
    max_headers: int
    header_timeout_s: float
    max_connections: int

    @classmethod
    def from_settings(cls, settings: Settings) -> HttpBounds:
        return cls(settings.max_header_bytes, settings.max_headers, settings.header_timeout_s,
                   settings.max_connections)


def headers_too_large(bounds: HttpBounds) -> ServiceError:
    return ServiceError(
        431, "headers_too_large",
        f"The request's headers are over {bounds.max_header_bytes} bytes or "
        f"{bounds.max_headers} fields: send fewer or smaller headers.",
    )


def request_timeout(what: str, seconds: float) -> ServiceError:
    return ServiceError(
        408, "request_timeout",
        f"The request's {what} did not arrive within {seconds:g} seconds: send it again.",
        headers={"Connection": "close"},
    )


def over_capacity() -> ServiceError:
    return ServiceError(
        503, "unavailable",
        "The service has too many open connections right now; try again in a moment.",
        headers={"Retry-After": str(RETRY_AFTER_S)},
    )


def _protocol_error(exc: h11.RemoteProtocolError, bounds: HttpBounds) -> ServiceError:
    if exc.error_status_hint == 431:
        return headers_too_large(bounds)
    return ServiceError(exc.error_status_hint, "bad_request",
                        "The request is not valid HTTP/1.1; check the client.")


class Refused(h11.RemoteProtocolError):
    """A request refused before the app sees it; uvicorn's error path answers it."""

    def __init__(self, error: ServiceError) -> None:
        super().__init__(error.message, error_status_hint=error.status)
        self.error = error


class _BoundedConnection(h11.Connection):
    """h11's server side; each request head is checked before uvicorn runs the app, and the last
    refusal is kept for the answer (uvicorn's handler is only told that there was one)."""

    def __init__(self, protocol: BoundedH11Protocol) -> None:
        super().__init__(h11.SERVER, max_incomplete_event_size=protocol.bounds.max_header_bytes)
        self._protocol = protocol
        self.refusal: ServiceError | None = None

    def next_event(self) -> Any:
        try:
            event = super().next_event()
            if isinstance(event, h11.Request):
                self._protocol.head_received(event)
            return event
        except Refused as exc:
            self.refusal = exc.error
            raise
        except h11.RemoteProtocolError as exc:
            self.refusal = _protocol_error(exc, self._protocol.bounds)
            raise


class BoundedH11Protocol(H11Protocol):
    """uvicorn's h11 protocol with the head bounded in size, count and time, the connections
    capped, and refusals in the contract's shape. `protocol_class` binds the bounds."""

    bounds: ClassVar[HttpBounds]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.conn: _BoundedConnection = _BoundedConnection(self)
        self._head_timer: asyncio.TimerHandle | None = None
        self._over_capacity = False

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        # Counted once, at connect: clients already connected keep being served.
        self._over_capacity = len(self.connections) > self.bounds.max_connections
        self._arm_head_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_head_timer()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._draining():
            # Answered, but the body still comes: the data must not reset the idle timer.
            self.conn.receive_data(data)
            self.handle_events()
            return
        if self.conn.their_state is h11.IDLE and self._head_timer is None:
            self._arm_head_timer()
        super().data_received(data)

    def head_received(self, event: h11.Request) -> None:
        """Raise `Refused` for a head over the bounds or a connection over the cap."""
        self._cancel_head_timer()
        if self._over_capacity:
            raise Refused(over_capacity())
        size = len(event.method) + len(event.target) + sum(
            len(name) + len(value) + 4 for name, value in event.headers
        )
        if len(event.headers) > self.bounds.max_headers or size > self.bounds.max_header_bytes:
            raise Refused(headers_too_large(self.bounds))

    def send_400_response(self, msg: str) -> None:
        self._refuse(self.conn.refusal or ServiceError(400, "bad_request", msg))

    def _draining(self) -> bool:
        return (self.cycle is not None and self.cycle.response_complete
                and self.conn.their_state is h11.SEND_BODY)

    def _arm_head_timer(self) -> None:
        self._cancel_head_timer()
        self._head_timer = self.loop.call_later(self.bounds.header_timeout_s, self._head_timeout)

    def _cancel_head_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_timeout(self) -> None:
        self._head_timer = None
        if self.transport.is_closing() or self.conn.their_state is not h11.IDLE:
            return
        if self.conn.trailing_data[0]:
            self._refuse(request_timeout("headers", self.bounds.header_timeout_s))
        else:
            self.transport.close()

    def _refuse(self, error: ServiceError) -> None:
        """Answer `error` in the contract's shape and close, whatever h11's state."""
        response = error_response(error, uuid.uuid4().hex)
        phrase = http.HTTPStatus(error.status).phrase
        lines = [f"HTTP/1.1 {error.status} {phrase}\r\n".encode()]
        headers = [*self.server_state.default_headers, *response.raw_headers]
        if not any(name.lower() == b"connection" for name, _ in headers):
            headers.append((b"connection", b"close"))
        lines += [name + b": " + value + b"\r\n" for name, value in headers]
        self.transport.write(b"".join([*lines, b"\r\n", bytes(response.body)]))
        self.transport.close()


def protocol_class(bounds: HttpBounds) -> type[BoundedH11Protocol]:
    return type("BoundedH11Protocol", (BoundedH11Protocol,), {"bounds": bounds})


class BodyDeadlineMiddleware:
    """The request body must arrive within `timeout_s` of the head: the app's `receive` waits no
    longer, then 408 `request_timeout` (through the error handlers, so with the request id) and
    the connection is closed. Once the body is complete, `receive` is not limited."""

    def __init__(self, app: ASGIApp, timeout_s: float) -> None:
        self.app = app
        self.timeout_s = timeout_s

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        deadline = asyncio.get_running_loop().time() + self.timeout_s
        complete = False

        async def receive_by_deadline() -> Message:
            nonlocal complete
            if complete:
                return await receive()
            try:
                async with asyncio.timeout_at(deadline):
                    message = await receive()
            except TimeoutError:
                raise request_timeout("body", self.timeout_s) from None
            complete = message["type"] != "http.request" or not message.get("more_body", False)
            return message

        await self.app(scope, receive_by_deadline, send)


def server_config(settings: Settings, app: ASGIApp) -> uvicorn.Config:
    """The one uvicorn configuration `serve` runs (the tests run it too)."""
    return uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        log_level=settings.log_level.lower(),
        loop="auto",
        http=protocol_class(HttpBounds.from_settings(settings)),
        ws="none",
        h11_max_incomplete_event_size=settings.max_header_bytes,
        timeout_keep_alive=settings.keepalive_timeout_s,
        access_log=False,
        proxy_headers=False,
        server_header=False,
        timeout_graceful_shutdown=30,
    )


def ensure_fd_headroom(max_connections: int) -> None:
    """Raise the soft limit on open files so `max_connections` clients fit beside the pools;
    warn when the hard limit does not allow it (then the cap is reached as EMFILE first)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = max_connections + FD_HEADROOM
    if soft != resource.RLIM_INFINITY and soft < wanted:
        target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        if target < wanted:
            log.warning("the open-file limit is %d: lower LLM_MAX_CONNECTIONS to %d or raise "
                        "the limit (ulimit -n)", target, max(1, target - FD_HEADROOM))
