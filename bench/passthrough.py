"""The bare pass-through proxy: the floor of what Python can do between a client and a vendor.

A minimal FastAPI app on one uvicorn worker (uvloop and httptools when importable, access log
off) with ``POST /proxy``: the raw request body goes to ``<vendor>/v1/chat/completions`` through
ONE client made at start-up, and the vendor's bytes come back with its status and content type.
No authentication, no validation, no database.

    .venv/bin/python -m bench.passthrough --vendor http://127.0.0.1:9100 --client httpx2

``--client auto`` (the default) takes aiohttp when it is importable, since it measured faster
(about 2x at 1 connection, 3 to 4x at 16 and 64: see bench/README.md), else httpx2.
``--client httpx2`` or ``--client aiohttp`` pick one (exit code 3 when it is not importable).
Prints ``passthrough listening on http://127.0.0.1:<port> ...`` before serving; stops
on SIGTERM/SIGINT, after ``--max-seconds``, or when its parent process goes away.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib.util
import os
import socket
import sys
from collections.abc import AsyncIterator, Sequence
from typing import Any, Protocol

import uvicorn
from fastapi import FastAPI, Request, Response

CLIENTS = ("httpx2", "aiohttp")
PREFERENCE = ("aiohttp", "httpx2")  # fastest measured first
POOL_SIZE = 1024


class Forwarder(Protocol):
    async def forward(self, body: bytes) -> tuple[int, bytes, str]: ...

    async def close(self) -> None: ...


class Httpx2Forwarder:
    def __init__(self, url: str) -> None:
        import httpx2

        self._url = url
        self._client = httpx2.AsyncClient(
            timeout=httpx2.Timeout(60.0, connect=5.0),
            limits=httpx2.Limits(max_connections=POOL_SIZE, max_keepalive_connections=POOL_SIZE),
        )

    async def forward(self, body: bytes) -> tuple[int, bytes, str]:
        answer = await self._client.post(
            self._url, content=body, headers={"content-type": "application/json"}
        )
        return (answer.status_code, answer.content,
                answer.headers.get("content-type", "application/json"))

    async def close(self) -> None:
        await self._client.aclose()


class AiohttpForwarder:
    def __init__(self, url: str) -> None:
        import aiohttp

        self._url = url
        self._session: Any = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=POOL_SIZE, limit_per_host=POOL_SIZE),
            timeout=aiohttp.ClientTimeout(total=60.0, connect=5.0),
        )

    async def forward(self, body: bytes) -> tuple[int, bytes, str]:
        async with self._session.post(
            self._url, data=body, headers={"content-type": "application/json"}
        ) as answer:
            content = await answer.read()
            return (answer.status, content,
                    answer.headers.get("content-type", "application/json"))

    async def close(self) -> None:
        await self._session.close()


def client_available(name: str) -> bool:
    return importlib.util.find_spec(name) is not None


def default_client() -> str:
    """The fastest measured client that is importable here."""
    return next((name for name in PREFERENCE if client_available(name)), "httpx2")


def create_app(vendor_url: str, client: str) -> FastAPI:
    upstream = vendor_url.rstrip("/") + "/v1/chat/completions"

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        forwarder: Forwarder = (
            AiohttpForwarder(upstream) if client == "aiohttp" else Httpx2Forwarder(upstream)
        )
        app.state.forwarder = forwarder
        try:
            yield
        finally:
            await forwarder.close()

    app = FastAPI(lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None)

    @app.post("/proxy")
    async def proxy(request: Request) -> Response:
        status, content, content_type = await request.app.state.forwarder.forward(
            await request.body()
        )
        return Response(content=content, status_code=status,
                        headers={"content-type": content_type})

    @app.get("/health")
    async def health() -> Response:
        return Response(content=b'{"status":"ok"}', media_type="application/json")

    return app


async def _watch_parent(server: uvicorn.Server, max_seconds: float) -> None:
    parent = os.getppid()
    loop = asyncio.get_running_loop()
    deadline = loop.time() + max_seconds
    while not server.should_exit:
        if os.getppid() != parent or loop.time() > deadline:
            server.should_exit = True
        await asyncio.sleep(1.0)


async def _serve(server: uvicorn.Server, sock: socket.socket, max_seconds: float) -> None:
    watcher = asyncio.create_task(_watch_parent(server, max_seconds))
    try:
        await server.serve(sockets=[sock])
    finally:
        watcher.cancel()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench.passthrough", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--vendor", required=True, help="the vendor's root, http://127.0.0.1:N")
    parser.add_argument("--client", choices=("auto", *CLIENTS), default="auto")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port (printed)")
    parser.add_argument("--max-seconds", type=float, default=3600.0,
                        help="stop by itself after this long (default 1 hour)")
    args = parser.parse_args(argv)
    if args.client == "auto":
        args.client = default_client()
    if not client_available(args.client):
        print(f"bench.passthrough: {args.client} is not importable in this Python",
              file=sys.stderr)
        return 3
    loop = "uvloop" if client_available("uvloop") else "asyncio"
    http = os.environ.get("BENCH_PASSTHROUGH_HTTP") or (
        "httptools" if client_available("httptools") else "h11")
    config = uvicorn.Config(
        create_app(args.vendor, args.client),
        loop=loop,
        http=http,
        access_log=False,
        log_level="warning",
        server_header=False,
        lifespan="on",
        timeout_graceful_shutdown=5,
    )
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", args.port))
    port = sock.getsockname()[1]
    print(f"passthrough listening on http://127.0.0.1:{port} client={args.client} "
          f"loop={loop} http={http}", flush=True)
    server = uvicorn.Server(config)
    with asyncio.Runner(loop_factory=config.get_loop_factory()) as runner:
        runner.run(_serve(server, sock, args.max_seconds))
    return 0


if __name__ == "__main__":
    sys.exit(main())
