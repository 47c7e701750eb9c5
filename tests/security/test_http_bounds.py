"""The HTTP layer is bounded: head size and fields (431), head and body time (408), idle keep-alive,
open connections (503), each answered in the contract's error shape and the connection closed.

A real uvicorn server, built by `server_config` as `serve` builds it, runs in a thread on a free
127.0.0.1 port; the tests speak raw HTTP/1.1 over sockets. Waits are generous outcome bounds (a
socket timeout turns a hang into a failure); nothing asserts how long anything took. The server
does not touch the database here, so these run once, on SQLite.
"""

from __future__ import annotations

import gc
import json
import logging
import resource
import socket
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import uvicorn

from llm_service import cli
from llm_service import server as server_module
from llm_service.app import create_app
from llm_service.security.jwt import issue_token
from llm_service.server import (
    FD_HEADROOM,
    BoundedHttpToolsProtocol,
    ensure_fd_headroom,
    server_config,
)
from llm_service.settings import Settings
from tests.conftest import make_settings

WAIT_S = 15.0  # how long a test waits for an answer before calling it a hang


@dataclass
class Server:
    port: int
    settings: Settings

    def connect(self) -> socket.socket:
        sock = socket.create_connection(("127.0.0.1", self.port), timeout=WAIT_S)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return sock


@contextmanager
def running_server(tmp_path: Path, **overrides: Any) -> Iterator[Server]:
    settings = make_settings(tmp_path, f"sqlite+aiosqlite:///{tmp_path / 'bounds.db'}",
                             **overrides)
    server = uvicorn.Server(server_config(settings, create_app(settings)))
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", 0))
    started = threading.Event()

    async def on_tick(counter: int, tick: Callable[[int], Any] = server.on_tick) -> bool:
        started.set()  # the main loop ticks once serving began
        return await tick(counter)  # type: ignore[no-any-return]

    server.on_tick = on_tick  # type: ignore[method-assign]
    thread = threading.Thread(target=server.run, kwargs={"sockets": [listener]}, daemon=True)
    thread.start()
    try:
        assert started.wait(WAIT_S), "the server did not start"
        yield Server(listener.getsockname()[1], settings)
    finally:
        server.should_exit = True
        thread.join(WAIT_S)
        listener.close()


@pytest.fixture
def serve(tmp_path: Path) -> Callable[..., Any]:
    return lambda **overrides: running_server(tmp_path, **overrides)


@dataclass
class Answer:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


def read_answer(sock: socket.socket) -> Answer:
    """One response (with Content-Length), read to its end."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        assert chunk, f"closed before an answer: {data!r}"
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    status_line, *lines = head.decode("latin-1").split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, v in (line.split(":", 1) for line in lines)}
    length = int(headers.get("content-length", "0"))
    while len(body) < length:
        chunk = sock.recv(65536)
        assert chunk, "closed in the middle of the body"
        body += chunk
    return Answer(int(status_line.split()[1]), headers, body)


def closed_by_server(sock: socket.socket) -> bool:
    """True when the server closed the connection (EOF or reset) before WAIT_S."""
    try:
        return sock.recv(65536) == b""
    except ConnectionResetError:
        return True
    except TimeoutError:
        return False


def assert_error(answer: Answer, status: int, code: str) -> None:
    assert answer.status == status
    body = answer.json()
    assert body["success"] is False
    assert body["code"] == code
    assert body["requestId"] == answer.headers["x-request-id"]
    assert answer.headers["connection"] == "close"


HEALTH = b"GET /health HTTP/1.1\r\nHost: test\r\n\r\n"


def test_a_plain_request_is_served_and_kept_alive(serve: Callable[..., Any]) -> None:
    with serve() as server, server.connect() as sock:
        for _ in range(2):
            sock.sendall(HEALTH)
            answer = read_answer(sock)
            assert (answer.status, answer.json()) == (200, {"status": "ok"})


def test_a_head_over_the_size_limit_is_431_even_unfinished(serve: Callable[..., Any]) -> None:
    with serve(LLM_MAX_HEADER_BYTES=8192) as server, server.connect() as sock:
        # No end of head: refused once the parser was given the limit, not at the end.
        sock.sendall(b"GET /health HTTP/1.1\r\nHost: test\r\nX-Big: " + b"a" * 16_384)
        answer = read_answer(sock)
        assert_error(answer, 431, "headers_too_large")
        assert "8192 bytes or 100 fields" in answer.json()["error"]
        assert closed_by_server(sock)


def test_a_whole_head_over_the_size_limit_in_one_read_is_431(serve: Callable[..., Any]) -> None:
    with serve(LLM_MAX_HEADER_BYTES=8192) as server, server.connect() as sock:
        sock.sendall(b"GET /health HTTP/1.1\r\nHost: test\r\nX-Big: " + b"a" * 12_000
                     + b"\r\n\r\n")
        assert_error(read_answer(sock), 431, "headers_too_large")
        assert closed_by_server(sock)


def test_too_many_header_fields_is_431(serve: Callable[..., Any]) -> None:
    with serve(LLM_MAX_HEADERS=20) as server, server.connect() as sock:
        fields = b"".join(b"X-F%d: v\r\n" % i for i in range(21))
        sock.sendall(b"GET /health HTTP/1.1\r\nHost: test\r\n" + fields + b"\r\n")
        assert_error(read_answer(sock), 431, "headers_too_large")
        assert closed_by_server(sock)


def test_a_head_over_the_limit_in_small_reads_is_431(serve: Callable[..., Any]) -> None:
    with serve(LLM_MAX_HEADER_BYTES=8192) as server, server.connect() as sock:
        sock.sendall(b"GET /health HTTP/1.1\r\nHost: test\r\nX-Big: ")
        refused = None
        for _ in range(8):  # 2 KiB at a time, up to 16 KiB: each read is under the limit
            try:
                sock.sendall(b"a" * 2048)
            except (BrokenPipeError, ConnectionResetError):
                break
            sock.settimeout(0.2)
            try:
                refused = sock.recv(65536)
            except TimeoutError:
                continue
            finally:
                sock.settimeout(WAIT_S)
            break
        assert refused is not None and refused.startswith(b"HTTP/1.1 431 ")


def test_a_body_in_the_same_read_as_its_head_is_not_counted_as_head(
    serve: Callable[..., Any]
) -> None:
    """A POST arriving whole in one read, body far over the head limit: the body is the route's."""
    with serve(LLM_MAX_HEADER_BYTES=2048) as server, server.connect() as sock:
        body = json.dumps({"apiKey": "x" * 20_000}).encode()
        sock.sendall(b"POST /llm/config/openai HTTP/1.1\r\nHost: test\r\n"
                     b"Content-Type: application/json\r\n"
                     b"Content-Length: %d\r\n\r\n" % len(body) + body)
        answer = read_answer(sock)
        assert (answer.status, answer.json()["code"]) == (401, "unauthorized")
        sock.sendall(HEALTH)  # and the connection goes on
        assert read_answer(sock).status == 200


def test_pipelined_requests_in_one_read_are_each_answered(serve: Callable[..., Any]) -> None:
    with serve(LLM_MAX_HEADER_BYTES=1024) as server, server.connect() as sock:
        sock.sendall(HEALTH * 40)  # 40 small heads, 1.5 KiB in all: over the limit together
        data = b""
        while data.count(b'{"status":"ok"}') < 40:
            chunk = sock.recv(65536)
            assert chunk, f"closed after {data.count(b'HTTP/1.1 ')} answers: {data[-300:]!r}"
            data += chunk
        assert data.count(b"HTTP/1.1 200 OK\r\n") == 40


def test_a_big_head_after_an_unread_body_is_still_431(serve: Callable[..., Any]) -> None:
    """The rest of an answered request's body bypasses the idle timer, never the head bounds."""
    with serve(LLM_MAX_HEADER_BYTES=8192, LLM_KEEPALIVE_TIMEOUT_S=30,
               LLM_HEADER_TIMEOUT_S=30) as server, server.connect() as sock:
        sock.sendall(b"POST /health HTTP/1.1\r\nHost: test\r\nContent-Length: 10\r\n\r\nx")
        assert read_answer(sock).status == 405  # answered before its body is complete
        # The body's end and an unfinished 12 KB head, likely in one read: the head is counted
        # from the body's end (a 431 now, not a 408 after the head timeout).
        sock.sendall(b"y" * 9 + b"GET /health HTTP/1.1\r\nHost: test\r\nX-Big: "
                     + b"a" * 12_000)
        assert_error(read_answer(sock), 431, "headers_too_large")
        assert closed_by_server(sock)


def test_a_chunked_body_ending_is_not_taken_for_a_next_head(serve: Callable[..., Any]) -> None:
    """The end of a chunked body (its last chunk and blank line) is no head: an idle connection
    after it gets no 408 when the head time passes."""
    with serve(LLM_HEADER_TIMEOUT_S=0.5, LLM_KEEPALIVE_TIMEOUT_S=30) as server, \
            server.connect() as sock:
        sock.sendall(b"POST /health HTTP/1.1\r\nHost: test\r\nTransfer-Encoding: chunked\r\n"
                     b"\r\n")
        assert read_answer(sock).status == 405  # answered before the body
        sock.sendall(b"5\r\nhello\r\n0\r\n\r\n")  # the body, in a read of its own
        sock.settimeout(1.5)  # three head timeouts
        with pytest.raises(TimeoutError):
            sock.recv(65536)
        sock.settimeout(WAIT_S)
        sock.sendall(HEALTH)
        assert read_answer(sock).status == 200


def test_an_upgrade_request_is_answered_and_its_connection_closed(
    serve: Callable[..., Any]
) -> None:
    with serve() as server, server.connect() as sock:
        sock.sendall(b"GET /health HTTP/1.1\r\nHost: test\r\nConnection: Upgrade\r\n"
                     b"Upgrade: websocket\r\n\r\n")
        answer = read_answer(sock)
        assert (answer.status, answer.json()) == (200, {"status": "ok"})
        assert answer.headers["connection"] == "close"
        assert closed_by_server(sock)


def test_a_head_that_never_finishes_is_408(serve: Callable[..., Any]) -> None:
    with serve(LLM_HEADER_TIMEOUT_S=0.5) as server, server.connect() as sock:
        sock.sendall(b"GET /health HTTP/1.1\r\nHost: te")
        answer = read_answer(sock)
        assert_error(answer, 408, "request_timeout")
        assert "headers did not arrive within 0.5 seconds" in answer.json()["error"]
        assert closed_by_server(sock)


def test_a_connection_that_sends_nothing_is_closed(serve: Callable[..., Any]) -> None:
    with serve(LLM_HEADER_TIMEOUT_S=0.5) as server, server.connect() as sock:
        assert closed_by_server(sock)


def test_a_second_request_head_gets_the_time_limit_too(serve: Callable[..., Any]) -> None:
    with serve(LLM_HEADER_TIMEOUT_S=0.5, LLM_KEEPALIVE_TIMEOUT_S=30) as server, \
            server.connect() as sock:
        sock.sendall(HEALTH)
        assert read_answer(sock).status == 200
        sock.sendall(b"GET /health HTTP/1.1\r\n")
        assert_error(read_answer(sock), 408, "request_timeout")


def test_a_body_that_never_finishes_is_408(serve: Callable[..., Any]) -> None:
    with serve(LLM_BODY_TIMEOUT_S=0.5) as server, server.connect() as sock:
        jwt = issue_token(server.settings, user_id=1, role="CLIENT", ttl_s=600)
        sock.sendall(b"POST /llm/config/openai HTTP/1.1\r\nHost: test\r\n"
                     b"Authorization: Bearer " + jwt.encode() + b"\r\n"
                     b"Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"api")
        answer = read_answer(sock)
        assert_error(answer, 408, "request_timeout")
        assert "body did not arrive within 0.5 seconds" in answer.json()["error"]
        assert closed_by_server(sock)


def test_a_trickled_body_nobody_reads_does_not_hold_the_connection(
    serve: Callable[..., Any]
) -> None:
    with serve(LLM_KEEPALIVE_TIMEOUT_S=1) as server, server.connect() as sock:
        sock.sendall(b"POST /health HTTP/1.1\r\nHost: test\r\nContent-Length: 1000\r\n\r\nx")
        assert read_answer(sock).status == 405  # answered without reading the body
        sock.settimeout(0.2)
        closed = False
        for _ in range(200):  # a byte every 0.2 s, up to 40 s: each used to reset the idle timer
            try:
                sock.sendall(b"x")
            except (BrokenPipeError, ConnectionResetError):
                closed = True
                break
            if closed_by_server(sock):
                closed = True
                break
        assert closed


def test_an_idle_keep_alive_connection_is_closed(serve: Callable[..., Any]) -> None:
    with serve(LLM_KEEPALIVE_TIMEOUT_S=1) as server, server.connect() as sock:
        sock.sendall(HEALTH)
        assert read_answer(sock).status == 200
        assert closed_by_server(sock)


def test_connections_over_the_cap_get_503_and_those_under_it_are_served(
    serve: Callable[..., Any]
) -> None:
    with serve(LLM_MAX_CONNECTIONS=3, LLM_HEADER_TIMEOUT_S=60,
               LLM_KEEPALIVE_TIMEOUT_S=60) as server:
        idle = [server.connect(), server.connect()]  # half-open: connected, nothing sent
        served = server.connect()  # the third: still under the cap
        served.sendall(HEALTH)
        assert read_answer(served).status == 200
        over = server.connect()
        over.sendall(HEALTH)
        answer = read_answer(over)
        assert_error(answer, 503, "unavailable")
        assert answer.headers["retry-after"] == "1"
        assert closed_by_server(over)
        served.sendall(HEALTH)  # a connection made under the cap keeps being served
        assert read_answer(served).status == 200
        for sock in (*idle, served, over):
            sock.close()


def test_malformed_requests_get_the_error_shape(serve: Callable[..., Any]) -> None:
    with serve() as server, server.connect() as sock:
        sock.sendall(b"GET /health HTTP/1.1\r\nHost: test\r\nBad Header\r\n\r\n")
        assert_error(read_answer(sock), 400, "bad_request")


def serve_without_running(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, env: dict[str, str],
    on_run: Callable[[uvicorn.Config], None],
) -> list[int]:
    """`llm-service serve` up to the point where uvicorn would serve: `on_run` gets the config
    uvicorn was given; the limits `ensure_fd_headroom` was asked for are returned."""

    def run(self: uvicorn.Server, sockets: Any = None) -> None:
        on_run(self.config)
        self.started = True

    monkeypatch.setattr(uvicorn.Server, "run", run)
    fitted: list[int] = []
    monkeypatch.setattr(server_module, "ensure_fd_headroom", fitted.append)
    for name, value in {"LLM_DATA_DIR": str(tmp_path), **env}.items():
        monkeypatch.setenv(name, value)
    assert cli.main(["serve"]) == 0
    return fitted


def test_serve_runs_the_bounded_configuration(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ran: list[uvicorn.Config] = []
    fitted = serve_without_running(
        tmp_path, monkeypatch, {"LLM_MAX_HEADER_BYTES": "4096", "LLM_KEEPALIVE_TIMEOUT_S": "7"},
        ran.append)
    (config,) = ran
    assert isinstance(config.http, type) and issubclass(config.http, BoundedHttpToolsProtocol)
    assert config.http.bounds.max_header_bytes == 4096
    assert config.timeout_keep_alive == 7
    assert config.ws == "none"
    assert fitted == [1000]  # the open-file limit is fitted to LLM_MAX_CONNECTIONS


def test_serve_freezes_what_start_up_made(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The imports and the app leave the garbage collector's full collections before serving
    (llm_service/heap.py): a full collection of them paused every request for 110-190 ms."""
    frozen: list[int] = []
    gc.unfreeze()
    try:
        serve_without_running(tmp_path, monkeypatch, {},
                              lambda _: frozen.append(gc.get_freeze_count()))
    finally:
        gc.unfreeze()  # this test process goes on collecting as before
    assert frozen and frozen[0] > 10_000


def test_the_open_file_limit_is_raised_to_fit_the_cap(monkeypatch: pytest.MonkeyPatch) -> None:
    limits = {"now": (1024, 4096)}
    monkeypatch.setattr(resource, "getrlimit", lambda _: limits["now"])
    monkeypatch.setattr(resource, "setrlimit", lambda _, value: limits.update(now=value))
    ensure_fd_headroom(1000)
    assert limits["now"] == (1000 + FD_HEADROOM, 4096)


def test_a_low_hard_file_limit_is_used_and_named(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    limits = {"now": (256, 512)}
    monkeypatch.setattr(resource, "getrlimit", lambda _: limits["now"])
    monkeypatch.setattr(resource, "setrlimit", lambda _, value: limits.update(now=value))
    with caplog.at_level(logging.WARNING, logger="llm_service.server"):
        ensure_fd_headroom(1000)
    assert limits["now"] == (512, 512)
    assert "lower LLM_MAX_CONNECTIONS to 256" in caplog.text
