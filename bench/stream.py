"""Time to first delta of the streaming chat route, with a small asyncio client (httpx2).

The route is `POST /llm/chat/{provider}/stream` (issue 6): `text/event-stream` with
`event: delta` lines, then `event: done` (or `event: error`). Each worker keeps one stream open
at a time, back to back, until the deadline; for each stream it records the time from sending
the request to the first `event: delta` line (TTFD) and to the end of the stream. A stream that
is not 200, carries `event: error`, or ends without a delta counts as an error.

The client runs in the runner's process on the same 2 cores, so at 16 streams its own parsing
is part of the figure; compare TTFD with the fake's `--stream-gap-ms`, not with zero.
"""

from __future__ import annotations

import asyncio
import time

import httpx2

from bench.report import StreamRun


async def probe(url: str, body: bytes, headers: dict[str, str]) -> int:
    """The status the streaming route answers (404/405 while it does not exist)."""
    async with httpx2.AsyncClient(timeout=30.0) as client, \
            client.stream("POST", url, content=body, headers=headers) as answer:
        await answer.aread()
        return answer.status_code


async def _one_stream(client: httpx2.AsyncClient, url: str, body: bytes,
                      headers: dict[str, str], run: StreamRun) -> None:
    started = time.perf_counter()
    first: float | None = None
    failed = False
    try:
        async with client.stream("POST", url, content=body, headers=headers) as answer:
            if answer.status_code != 200:
                await answer.aread()
                run.errors += 1
                return
            async for line in answer.aiter_lines():
                if line.startswith("event:"):
                    event = line[6:].strip()
                    if event == "delta" and first is None:
                        first = time.perf_counter()
                    elif event == "error":
                        failed = True
    except httpx2.HTTPError:
        run.errors += 1
        return
    ended = time.perf_counter()
    if failed or first is None:
        run.errors += 1
        return
    run.ttfd_ms.append((first - started) * 1000)
    run.total_ms.append((ended - started) * 1000)


async def measure(url: str, body: bytes, headers: dict[str, str], concurrency: int,
                  duration_s: float) -> StreamRun:
    """`concurrency` workers streaming back to back for `duration_s` (plus the last stream)."""
    run = StreamRun(duration_s=duration_s)
    limits = httpx2.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx2.AsyncClient(timeout=httpx2.Timeout(30.0), limits=limits) as client:
        deadline = time.perf_counter() + duration_s

        async def worker() -> None:
            while time.perf_counter() < deadline:
                await _one_stream(client, url, body, headers, run)

        started = time.perf_counter()
        await asyncio.wait_for(
            asyncio.gather(*(worker() for _ in range(concurrency))), timeout=duration_s + 60
        )
        run.duration_s = time.perf_counter() - started
    return run
