"""CPU per request of two parts of every `/llm` request, each beside the baseline it replaced,
measured in the same run: the bounded HTTP protocol (`server.protocol_class`) against uvicorn's
own httptools and h11 protocols, and the in-process rate limiter (`LocalWindows`) against the
`limits` package's in-memory moving window (a hit, then the window's stats, as the limiter needs
both for its headers).

    .venv/bin/python -m bench.micro

The protocols are fed a chat request's bytes (a JWT, a JSON body) on a fake transport and answer
from a minimal ASGI app, one request at a time on one connection: only the protocol and uvicorn's
request cycle are measured, no socket. Rounds alternate between the variants and the medians are
printed, since on a shared machine a single round can be off by half. CPU time of this process
(threads included); the full picture is `bench/run`.
"""

from __future__ import annotations

import asyncio
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import uvicorn
import uvloop
from limits import parse
from limits.aio.strategies import MovingWindowRateLimiter
from limits.storage import storage_from_string
from uvicorn.protocols.http.h11_impl import H11Protocol
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn.server import ServerState

sys.path[:0] = [str(Path(__file__).parents[1] / "src")]

from llm_service.security.rate_limit import LocalWindows  # noqa: E402
from llm_service.server import HttpBounds, protocol_class  # noqa: E402

ROUNDS, REQUESTS = 7, 3000
BODY = b'{"message": "Hello there, how are you today?"}'
TOKEN = b"eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9." + b"x" * 80 + b"." + b"y" * 43
REQUEST = (b"POST /llm/chat/openai HTTP/1.1\r\nHost: 127.0.0.1:8085\r\nAuthorization: Bearer "
           + TOKEN + b"\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n"
           % len(BODY) + BODY)
ANSWER = b'{"status":"ok"}'


async def app(scope: Any, receive: Any, send: Any) -> None:
    await receive()
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"application/json"), (b"content-length", b"15")]})
    await send({"type": "http.response.body", "body": ANSWER})


class Transport:
    """What uvicorn's protocols use of an asyncio transport; `answered` is set by the last write."""

    def __init__(self) -> None:
        self.answered = asyncio.Event()
        self.closing = False

    def write(self, data: bytes) -> None:
        if data.endswith(ANSWER):
            self.answered.set()

    def is_closing(self) -> bool:
        return self.closing

    def close(self) -> None:
        self.closing = True

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {"sockname": ("127.0.0.1", 8085), "peername": ("127.0.0.1", 50000)}.get(name,
                                                                                      default)

    def pause_reading(self) -> None: ...

    def resume_reading(self) -> None: ...


def protocol_round(protocol: type[asyncio.Protocol]) -> Callable[[int], Awaitable[float]]:
    config = uvicorn.Config(app, http=protocol, ws="none", lifespan="off", access_log=False,
                            log_level="warning")
    config.load()

    async def run(requests: int) -> float:
        connection: Any = protocol(config=config, server_state=ServerState(),  # type: ignore[call-arg]
                                   app_state={})
        transport = Transport()
        connection.connection_made(transport)
        began = time.process_time()
        for _ in range(requests):
            transport.answered.clear()
            connection.data_received(REQUEST)
            await transport.answered.wait()
        spent = time.process_time() - began
        connection.connection_lost(None)
        return spent / requests

    return run


def limiter_round(kind: str) -> Callable[[int], Awaitable[float]]:
    item = parse("1000000/second")  # as bench/run sets it: every hit allowed

    async def run(requests: int) -> float:
        local = LocalWindows()
        library = MovingWindowRateLimiter(storage_from_string("async+memory://"))
        began = time.process_time()
        for _ in range(requests):
            if kind == "local":
                local.hit(item, "1")
            else:
                await library.hit(item, "1")
                await library.get_window_stats(item, "1")
            await asyncio.sleep(0)  # a request's other awaits: the library's clean-up task runs
        return (time.process_time() - began) / requests

    return run


async def compare(title: str, variants: dict[str, Callable[[int], Awaitable[float]]],
                  baseline: str) -> list[str]:
    for run in variants.values():
        await run(300)  # warm-up
    seconds: dict[str, list[float]] = {name: [] for name in variants}
    for _ in range(ROUNDS):
        for name, run in variants.items():
            seconds[name].append(await run(REQUESTS))
    base = statistics.median(seconds[baseline])
    lines = [f"{title} (CPU per request, median of {ROUNDS} rounds of {REQUESTS:,}):"]
    for name, values in seconds.items():
        median = statistics.median(values)
        lines.append(f"  {name:34s} {median * 1e6:7.1f} us  x{median / base:.2f} of {baseline}"
                     f"  (rounds {min(values) * 1e6:.1f}-{max(values) * 1e6:.1f} us)")
    return lines


async def main() -> None:
    bounded = protocol_class(HttpBounds(32_768, 100, 10.0, 1000))
    lines = await compare("HTTP protocol", {
        "bounded httptools (server.py)": protocol_round(bounded),
        "uvicorn httptools, unbounded": protocol_round(HttpToolsProtocol),
        "uvicorn h11 (the bounds' old base)": protocol_round(H11Protocol),
    }, baseline="uvicorn h11 (the bounds' old base)")
    lines += await compare("Rate limiter, in process", {
        "LocalWindows (rate_limit.py)": limiter_round("local"),
        "limits async memory, moving window": limiter_round("library"),
    }, baseline="limits async memory, moving window")
    print("\n".join(lines))


if __name__ == "__main__":
    uvloop.run(main())
