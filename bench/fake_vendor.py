"""A lean fake OpenAI vendor for benchmarks: a raw `asyncio.Protocol` HTTP/1.1 server.

It answers any ``POST .../chat/completions`` with one fixed ``chat.completion`` (with ``usage``),
built once at start-up, so that the vendor is never the bottleneck of a benchmark. A body with
``"stream": true`` gets a Server-Sent Events stream instead: a role chunk, a few content deltas,
a finish chunk, a usage chunk and ``data: [DONE]``, in chunked transfer encoding.

* ``--delay-ms N`` waits N ms before answering (``loop.call_later``, nothing blocks), to hold many
  requests in flight like a slow vendor does.
* ``--stream-gap-ms N`` waits N ms between the events of a stream (time to first delta).

Other routes: ``GET /health`` (200) and ``GET /_stats`` (requests answered so far); anything
else is 404. Keep-alive is the default; ``Connection: close`` is honoured. One request per
connection is handled at a time (a pipelined request waits for the previous answer).

    .venv/bin/python -m bench.fake_vendor --port 0 --delay-ms 200

prints ``fake_vendor listening on http://127.0.0.1:<port>`` once it accepts connections, and
stops on SIGTERM/SIGINT, after ``--max-seconds``, or when its parent process goes away.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any, cast

MODEL = "gpt-4o-2024-08-06"
REPLY_PIECES = ("Hello! I am a fake vendor, ", "answering at once ", "so that the benchmark ",
                "measures the service.")
PROMPT_TOKENS = 19
COMPLETION_TOKENS = 17
MAX_HEAD_BYTES = 64 * 1024
REASONS = {200: b"OK", 400: b"Bad Request", 404: b"Not Found", 431: b"Too Large"}


def _dumps(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":")).encode()


def _usage() -> dict[str, int]:
    return {"prompt_tokens": PROMPT_TOKENS, "completion_tokens": COMPLETION_TOKENS,
            "total_tokens": PROMPT_TOKENS + COMPLETION_TOKENS}


def _response(status: int, content_type: bytes, body: bytes, close: bool = False) -> bytes:
    head = b"HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %d\r\n" % (
        status, REASONS.get(status, b"Error"), content_type, len(body))
    if close:
        head += b"Connection: close\r\n"
    return head + b"\r\n" + body


def _completion_body() -> bytes:
    return _dumps({
        "id": "chatcmpl-bench0000000000000000000000",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": MODEL,
        "choices": [{
            "index": 0,
            "message": {"role": "assistant", "content": "".join(REPLY_PIECES),
                        "refusal": None, "annotations": []},
            "logprobs": None,
            "finish_reason": "stop",
        }],
        "usage": _usage(),
        "system_fingerprint": "fp_bench",
    })


def _stream_events() -> list[bytes]:
    """The events of one stream, each already framed as one HTTP chunk."""
    created = int(time.time())

    def chunk(choices: list[dict[str, Any]], usage: dict[str, int] | None = None) -> bytes:
        data: dict[str, Any] = {"id": "chatcmpl-bench-stream", "object": "chat.completion.chunk",
                                "created": created, "model": MODEL,
                                "system_fingerprint": "fp_bench", "choices": choices}
        if usage is not None:
            data["usage"] = usage
        return b"data: " + _dumps(data) + b"\n\n"

    def choice(delta: dict[str, Any], finish: str | None = None) -> list[dict[str, Any]]:
        return [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}]

    events = [chunk(choice({"role": "assistant", "content": "", "refusal": None}))]
    events += [chunk(choice({"content": piece})) for piece in REPLY_PIECES]
    events += [chunk(choice({}, "stop")), chunk([], _usage()), b"data: [DONE]\n\n"]
    return [b"%x\r\n%s\r\n" % (len(event), event) for event in events]


def _wants_stream(body: bytes) -> bool:
    if b'"stream"' not in body:
        return False
    try:
        parsed = json.loads(body)
    except ValueError:
        return False
    return isinstance(parsed, dict) and parsed.get("stream") is True


class Vendor:
    """State shared by every connection: the prepared answers, the options and counters."""

    def __init__(self, delay_s: float, stream_gap_s: float) -> None:
        self.delay_s = delay_s
        self.stream_gap_s = stream_gap_s
        body = _completion_body()
        self.completion = _response(200, b"application/json", body)
        self.completion_close = _response(200, b"application/json", body, close=True)
        self.stream_head = (b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
                            b"Cache-Control: no-cache\r\nTransfer-Encoding: chunked\r\n")
        self.stream_events = _stream_events()
        self.requests = 0
        self.streams = 0


class VendorProtocol(asyncio.Protocol):
    def __init__(self, vendor: Vendor) -> None:
        self.vendor = vendor
        self.loop = asyncio.get_running_loop()
        self.buffer = bytearray()
        self.transport: asyncio.Transport | None = None
        self.busy = False
        self.parsing = False
        self.pending: asyncio.TimerHandle | None = None

    # asyncio callbacks

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        if self.pending is not None:
            self.pending.cancel()
            self.pending = None

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        if not self.busy:
            self._process()

    # parsing

    def _process(self) -> None:
        self.parsing = True
        try:
            self._parse()
        finally:
            self.parsing = False

    def _parse(self) -> None:
        while not self.busy and self.transport is not None:
            buffer = self.buffer
            end = buffer.find(b"\r\n\r\n")
            if end < 0:
                if len(buffer) > MAX_HEAD_BYTES:
                    self._finish(_response(431, b"text/plain", b"headers too large\n"), True)
                return
            lines = bytes(buffer[:end]).split(b"\r\n")
            parts = lines[0].split(b" ")
            if len(parts) != 3:
                self._finish(_response(400, b"text/plain", b"bad request line\n"), True)
                return
            method, target, version = parts
            length = 0
            chunked = False
            close = version == b"HTTP/1.0"
            for line in lines[1:]:
                name, _, value = line.partition(b":")
                name = name.strip().lower()
                if name == b"content-length":
                    length = int(value)
                elif name == b"transfer-encoding":
                    chunked = b"chunked" in value.lower()
                elif name == b"connection":
                    token = value.strip().lower()
                    close = token == b"close" or (close and token != b"keep-alive")
            start = end + 4
            if chunked:
                decoded = _dechunk(buffer, start)
                if decoded is None:
                    return
                body, consumed = decoded
            else:
                if len(buffer) < start + length:
                    return
                body, consumed = bytes(buffer[start:start + length]), start + length
            del buffer[:consumed]
            self._respond(method, target.split(b"?", 1)[0], body, close)

    # answering

    def _respond(self, method: bytes, path: bytes, body: bytes, close: bool) -> None:
        vendor = self.vendor
        if method == b"POST" and path.endswith(b"/chat/completions"):
            vendor.requests += 1
            if _wants_stream(body):
                vendor.streams += 1
                self._later(vendor.delay_s, lambda: self._stream(0, close))
            else:
                answer = vendor.completion_close if close else vendor.completion
                self._later(vendor.delay_s, lambda: self._finish(answer, close))
        elif method == b"GET" and path == b"/health":
            self._finish(_response(200, b"application/json", b'{"status":"ok"}', close), close)
        elif method == b"GET" and path == b"/_stats":
            stats = _dumps({"requests": vendor.requests, "streams": vendor.streams})
            self._finish(_response(200, b"application/json", stats, close), close)
        else:
            self._finish(_response(404, b"application/json", b'{"error":"not found"}', close),
                         close)

    def _later(self, delay_s: float, action: Callable[[], None]) -> None:
        if delay_s <= 0:
            action()
            return
        self.busy = True
        self.pending = self.loop.call_later(delay_s, action)

    def _stream(self, index: int, close: bool) -> None:
        self.pending = None
        transport = self.transport
        if transport is None:
            return
        vendor = self.vendor
        events = vendor.stream_events
        if index == 0:
            head = vendor.stream_head + (b"Connection: close\r\n" if close else b"") + b"\r\n"
            transport.write(head)
        if vendor.stream_gap_s <= 0:
            transport.write(b"".join(events) + b"0\r\n\r\n")
            self._done(close)
            return
        transport.write(events[index])
        if index + 1 == len(events):
            transport.write(b"0\r\n\r\n")
            self._done(close)
            return
        self.busy = True
        self.pending = self.loop.call_later(
            vendor.stream_gap_s, lambda: self._stream(index + 1, close))

    def _finish(self, answer: bytes, close: bool) -> None:
        self.pending = None
        if self.transport is not None:
            self.transport.write(answer)
        self._done(close)

    def _done(self, close: bool) -> None:
        self.busy = False
        if self.transport is None:
            return
        if close:
            self.transport.close()
            self.transport = None
        elif self.buffer and not self.parsing:
            self._process()


def _dechunk(buffer: bytearray, start: int) -> tuple[bytes, int] | None:
    """A chunked body starting at `start`: (body, bytes consumed), or None while incomplete."""
    body = bytearray()
    pos = start
    while True:
        line_end = buffer.find(b"\r\n", pos)
        if line_end < 0:
            return None
        size = int(bytes(buffer[pos:line_end]).split(b";", 1)[0], 16)
        pos = line_end + 2
        if size == 0:
            trailer_end = buffer.find(b"\r\n\r\n", pos - 2)
            return (bytes(body), trailer_end + 4) if trailer_end >= 0 else None
        if len(buffer) < pos + size + 2:
            return None
        body += buffer[pos:pos + size]
        pos += size + 2


async def serve(host: str, port: int, delay_ms: float, stream_gap_ms: float,
                max_seconds: float) -> None:
    loop = asyncio.get_running_loop()
    vendor = Vendor(delay_ms / 1000, stream_gap_ms / 1000)
    server = await loop.create_server(lambda: VendorProtocol(vendor), host, port, backlog=4096,
                                      reuse_address=True)
    bound = server.sockets[0].getsockname()[1]
    loop_name = type(loop).__module__.split(".")[0]
    print(f"fake_vendor listening on http://{host}:{bound} delay_ms={delay_ms:g} "
          f"stream_gap_ms={stream_gap_ms:g} loop={loop_name}", flush=True)
    stop = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    parent = os.getppid()
    deadline = loop.time() + max_seconds
    while not stop.is_set() and loop.time() < deadline and os.getppid() == parent:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=1.0)
    server.close()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench.fake_vendor", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port (printed)")
    parser.add_argument("--delay-ms", type=float, default=0.0, help="wait before each answer")
    parser.add_argument("--stream-gap-ms", type=float, default=0.0,
                        help="wait between the events of a stream")
    parser.add_argument("--max-seconds", type=float, default=3600.0,
                        help="stop by itself after this long (default 1 hour)")
    args = parser.parse_args(argv)
    if args.host not in ("127.0.0.1", "localhost", "::1"):
        print("bench.fake_vendor: listens on the loopback interface only", file=sys.stderr)
        return 2
    coroutine = serve(args.host, args.port, args.delay_ms, args.stream_gap_ms, args.max_seconds)
    try:
        import uvloop
    except ImportError:
        asyncio.run(coroutine)
    else:
        uvloop.run(coroutine)
    return 0


if __name__ == "__main__":
    sys.exit(main())
