"""The HTTP server: uvicorn on httptools with every part of a request bounded.

uvicorn's httptools protocol, as it ships, takes request heads of any size (60 MiB were accepted,
RSS 202 -> 541 MB: httptools gathers a header's value until its end arrives), and uvicorn itself
holds a connection that sends nothing, or its head or body a byte at a time, for ever. So `serve`
runs uvicorn with `BoundedHttpToolsProtocol`, built on uvicorn's httptools protocol (the fastest
parser uvicorn has, llhttp in C: 29 µs per request against 104 µs for uvicorn's pure-Python h11
one, `python -m bench.micro`), and these bounds, all settings:

- head size: while a head is unfinished the parser is fed at most `LLM_MAX_HEADER_BYTES` of it
  (counted from the head's first byte); an unfinished head past that is answered 431
  `headers_too_large` without reading more. A finished head is measured too (request line and
  fields). More than `LLM_MAX_HEADERS` fields: the same 431, as soon as the one too many arrives.
- head time: a head not complete within `LLM_HEADER_TIMEOUT_S` of the connection (on a
  kept-alive connection: of the next request's first byte) is answered 408 `request_timeout`
  (closed silently when nothing arrived). uvicorn has no such option, hence the subclass.
- body time: `BodyDeadlineMiddleware` (below) answers 408 when the app waits for a body that has
  not arrived within `LLM_BODY_TIMEOUT_S` of the head; a body nobody reads gets no more time than
  an idle connection (`LLM_KEEPALIVE_TIMEOUT_S`), however slowly it trickles in (uvicorn restarts
  the idle timer on every byte; here the rest of an answered request's body does not).
- idle keep-alive: uvicorn's `timeout_keep_alive` (`LLM_KEEPALIVE_TIMEOUT_S`).
- connections: a connection opened while `LLM_MAX_CONNECTIONS` are open gets 503 `unavailable`
  (with `Retry-After`) to its request; connections already open keep working. uvicorn's own
  `limit_concurrency` answers a plain-text 503 and also refuses requests on connections already
  open, so it is not used. `ensure_fd_headroom` raises the process's file limit to fit the cap.
- upgrades: WebSockets are off (`ws="none"`, the service has none); a request asking for an
  upgrade is served as a plain request and its connection closed after the answer, since the
  parser reads nothing after an upgrade's head.

Every refusal is the contract's error shape with a fresh request id, and closes the connection.
"""

from __future__ import annotations

import asyncio
import http
import logging
import resource
import uuid
from dataclasses import dataclass
from typing import Any, ClassVar

import httptools
import uvicorn
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

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


def bad_request() -> ServiceError:
    return ServiceError(400, "bad_request",
                        "The request is not valid HTTP/1.1; check the client.")


class Refused(Exception):
    """Raised in a parser callback: the request is answered `error` and the connection closed
    (httptools wraps it in its callback error; the protocol keeps it in `refusal`)."""

    def __init__(self, error: ServiceError) -> None:
        super().__init__(error.message)
        self.error = error


class BoundedHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with the head bounded in size, count and time, the
    connections capped, and refusals in the contract's shape. `protocol_class` binds the bounds.

    `_in_head` is True from the connection's start, or the end of the request before, until the
    next head is complete; `_head_fed` counts the bytes of it given to the parser (from the end
    of a body's bytes, so a chunked body's last framing counts as head)."""

    bounds: ClassVar[HttpBounds]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._head_timer: asyncio.TimerHandle | None = None
        self._over_capacity = False
        self._in_head = True
        self._head_fed = 0
        self._head_size = 0
        self._fields = 0
        self._heads = 0  # heads completed on this connection
        self._body_fed = 0  # body bytes of the piece being parsed
        self._begun = False  # whether a request began in the piece being parsed
        self.refusal: ServiceError | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        # Counted once, at connect: clients already connected keep being served.
        self._over_capacity = len(self.connections) > self.bounds.max_connections
        self._arm_head_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_head_timer()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        # Fed in pieces of at most the head bound, so that where a head begins (at the
        # connection's start, or after the body before it) the parser, which buffers an
        # unfinished head, is never given more than the bound of it.
        bound = self.bounds.max_header_bytes
        while data and not self.transport.is_closing():
            if self._in_head:
                if self._head_timer is None and self._head_fed == 0:
                    self._arm_head_timer()
                piece, data = data[:bound - self._head_fed], data[bound - self._head_fed:]
                self._head_fed += len(piece)
                heads = self._heads
                super().data_received(piece)
                if data and self._in_head and self._heads == heads:  # still the same head
                    self._refuse(headers_too_large(self.bounds))
                    return
            else:
                piece, data = data[:bound], data[bound:]
                self._body_fed = 0
                self._begun = False
                if self.cycle is not None and self.cycle.response_complete:
                    # Answered, but the body still comes: it must not restart the idle timer.
                    self._feed(piece)
                else:
                    super().data_received(piece)
                if self._in_head and self._begun:  # a next head began after the body's end
                    self._head_fed = max(self._head_fed, len(piece) - self._body_fed)
                    if self._head_timer is None:
                        self._arm_head_timer()

    def _feed(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            pass
        except httptools.HttpParserError:
            self.send_400_response("Invalid HTTP request received.")

    # Parser callbacks
    def on_message_begin(self) -> None:
        self._begun = True
        self._in_head = True
        self._head_size = 0
        self._fields = 0
        super().on_message_begin()

    def on_url(self, url: bytes) -> None:
        self._head_size += len(url)
        super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._fields += 1
        self._head_size += len(name) + len(value) + 4
        if self._fields > self.bounds.max_headers:
            raise self._refused(headers_too_large(self.bounds))
        super().on_header(name, value)

    def on_body(self, body: bytes) -> None:
        self._body_fed += len(body)
        super().on_body(body)

    def on_headers_complete(self) -> None:
        """Raise `Refused` for a head over the bounds or a connection over the cap."""
        self._cancel_head_timer()
        self._in_head = False
        self._heads += 1
        if self._over_capacity:
            raise self._refused(over_capacity())
        if self._head_size + len(self.parser.get_method()) > self.bounds.max_header_bytes:
            raise self._refused(headers_too_large(self.bounds))
        # A kept-alive connection's next request may start while uvicorn's idle timer runs.
        self._unset_keepalive_if_required()
        super().on_headers_complete()
        if self.parser.should_upgrade():
            self.cycle.keep_alive = False  # nothing after an upgrade's head is read

    def on_message_complete(self) -> None:
        super().on_message_complete()
        self._in_head = True
        self._head_fed = 0

    def _refused(self, error: ServiceError) -> Refused:
        self.refusal = error
        return Refused(error)

    def send_400_response(self, msg: str) -> None:
        self._refuse(self.refusal or bad_request())

    def _unsupported_upgrade_warning(self) -> None:
        """uvicorn's warning names WebSocket libraries to install; here upgrades are off."""

    def _arm_head_timer(self) -> None:
        self._cancel_head_timer()
        self._head_timer = self.loop.call_later(self.bounds.header_timeout_s, self._head_timeout)

    def _cancel_head_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_timeout(self) -> None:
        self._head_timer = None
        if self.transport.is_closing() or not self._in_head:
            return
        if self.cycle is not None and not self.cycle.response_complete:
            # A pipelined head behind a request still being answered: judged after the answer.
            self._arm_head_timer()
            return
        if self._head_fed:
            self._refuse(request_timeout("headers", self.bounds.header_timeout_s))
        else:
            self.transport.close()

    def _refuse(self, error: ServiceError) -> None:
        """Answer `error` in the contract's shape and close, whatever the parser's state."""
        if self.transport.is_closing():
            return
        response = error_response(error, uuid.uuid4().hex)
        phrase = http.HTTPStatus(error.status).phrase
        lines = [f"HTTP/1.1 {error.status} {phrase}\r\n".encode()]
        headers = [*self.server_state.default_headers, *response.raw_headers]
        if not any(name.lower() == b"connection" for name, _ in headers):
            headers.append((b"connection", b"close"))
        lines += [name + b": " + value + b"\r\n" for name, value in headers]
        self.transport.write(b"".join([*lines, b"\r\n", bytes(response.body)]))
        self.transport.close()


def protocol_class(bounds: HttpBounds) -> type[BoundedHttpToolsProtocol]:
    return type("BoundedHttpToolsProtocol", (BoundedHttpToolsProtocol,), {"bounds": bounds})


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
