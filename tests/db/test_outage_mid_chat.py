"""A database cut in the middle of a chat (issue 10, item 5), through a TCP proxy in front of
PostgreSQL that the test cuts while the vendor's answer is on its way: the client still gets the
answer it paid for, with a warning; the stream still ends with a terminal event; the failure is
counted; and the reservation the chat could not settle is released once it expires."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import httpx2
import pytest

from llm_service.app import create_app
from llm_service.catalog import load_catalog
from llm_service.db.models import utcnow
from llm_service.providers.base import ChatRequest, Completion, StreamEvent
from llm_service.runtime import Runtime
from llm_service.services import budgets
from tests.conftest import (
    Api,
    create_pg_database,
    drop_pg_database,
    make_settings,
    sse_events,
    vendor_settings,
)
from tests.fakes.vendor import FakeVendor

# What a configuration saved without a model gets: the catalogue's current OpenAI default.
DEFAULT = load_catalog().default_model("openai")

pytestmark = pytest.mark.postgres

BUDGET = 100_000


class CuttableProxy:
    """127.0.0.1 TCP proxy to PostgreSQL. `cut()` drops every open connection and refuses new
    ones until `restore()`."""

    def __init__(self, target_port: int) -> None:
        self._target_port = target_port
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self.port = 0

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", self.port)
        self.port = self._server.sockets[0].getsockname()[1]

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self._target_port)
        self._writers |= {writer, up_writer}

        async def pipe(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
            with contextlib.suppress(OSError):
                while data := await source.read(65536):
                    sink.write(data)
                    await sink.drain()
            sink.close()

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))
        self._writers -= {writer, up_writer}

    def cut(self) -> None:
        assert self._server is not None
        self._server.close()  # new connections are refused
        for writer in list(self._writers):
            writer.transport.abort()  # open ones drop, mid-statement or idle in the pool
        self._writers.clear()

    async def restore(self) -> None:
        await self.start()

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
        for writer in list(self._writers):
            writer.transport.abort()


@pytest.fixture
async def cut_api(
    tmp_path: Path, fake_vendor: FakeVendor
) -> AsyncIterator[tuple[Api, CuttableProxy]]:
    direct = await create_pg_database("llm_cut")
    host_port = direct.split("@", 1)[1].split("/", 1)[0]
    proxy = CuttableProxy(int(host_port.rsplit(":", 1)[1]))
    await proxy.start()
    through_proxy = direct.replace(host_port, f"127.0.0.1:{proxy.port}")
    settings = make_settings(tmp_path, through_proxy, DB_TIMEOUT_S=2, LLM_UPSTREAM_TIMEOUT_S=5,
                             LLM_BUDGET_TOKENS_CLIENT=BUDGET, LLM_METRICS_ENABLED=True,
                             **vendor_settings(fake_vendor))
    fake_vendor.reset()
    app = create_app(settings)
    try:
        async with app.router.lifespan_context(app), httpx2.AsyncClient(
            transport=httpx2.ASGITransport(app=app), base_url="http://test"
        ) as client:
            api = Api(app=app, client=client, settings=settings, backend="postgres")
            response = await client.post("/llm/config/openai", json={"apiKey": "sk-cut-key"},
                                         headers=api.auth(1))
            assert response.status_code == 200
            yield api, proxy
    finally:
        await proxy.stop()
        await drop_pg_database(direct)


async def reserved_after(runtime: Runtime, seconds: float) -> int:
    async with runtime.engine.begin() as conn:
        figures = await budgets.standing(conn, 1, utcnow() + timedelta(seconds=seconds))
    return figures.reserved_tokens


async def metric(api: Api, what: str) -> str:
    text = (await api.client.get("/metrics")).text
    return next(line for line in text.splitlines()
                if line.startswith(f'llm_db_write_failures_total{{what="{what}"}}'))


async def assert_the_leak_is_bounded(api: Api, proxy: CuttableProxy) -> None:
    await proxy.restore()
    ttl_s = budgets.reservation_ttl_s(api.settings)
    assert await reserved_after(api.runtime, 0) > 0  # leaked: the settlement never arrived
    assert await reserved_after(api.runtime, ttl_s + 1) == 0  # expired and released
    assert await metric(api, "history") == 'llm_db_write_failures_total{what="history"} 1.0'
    assert await metric(api, "budget") == 'llm_db_write_failures_total{what="budget"} 1.0'
    again = await api.client.post("/llm/chat/openai", json={"message": "after"},
                                  headers=api.auth(1))
    assert again.status_code == 200 and again.json()["id"] is not None


async def test_a_cut_after_the_vendor_answered_still_returns_the_answer_with_a_warning(
    cut_api: tuple[Api, CuttableProxy], monkeypatch: pytest.MonkeyPatch
) -> None:
    api, proxy = cut_api
    registry = api.runtime.providers
    real_complete = registry.complete

    async def complete_then_cut(provider: str, request: ChatRequest, key: str) -> Completion:
        answer = await real_complete(provider, request, key)
        proxy.cut()  # the vendor has been paid; now the database goes away
        return answer

    monkeypatch.setattr(registry, "complete", complete_then_cut)
    response = await api.client.post("/llm/chat/openai", json={"message": "Hello there"},
                                     headers=api.auth(1))
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["response"] == f"Echo from openai {DEFAULT}: Hello there"
    assert body["id"] is None
    assert "could not be saved" in body["warning"]
    monkeypatch.setattr(registry, "complete", real_complete)
    await assert_the_leak_is_bounded(api, proxy)


async def test_a_cut_during_a_stream_still_ends_it_with_done_and_a_warning(
    cut_api: tuple[Api, CuttableProxy], monkeypatch: pytest.MonkeyPatch,
    fake_vendor: FakeVendor,
) -> None:
    api, proxy = cut_api
    fake_vendor.set_behaviour("ok", pieces=4, delay=0.05)
    registry = api.runtime.providers
    real_open = registry.open_stream

    async def open_then_cut(provider: str, request: ChatRequest, key: str
                            ) -> tuple[StreamEvent | None, AsyncIterator[StreamEvent]]:
        first, events = await real_open(provider, request, key)

        async def cut_after_two() -> AsyncIterator[StreamEvent]:
            try:
                for count in itertools.count():
                    if count == 2:
                        proxy.cut()  # mid-stream: the vendor is still writing
                    yield await anext(events)
            except StopAsyncIteration:
                return
            finally:
                await events.aclose()  # type: ignore[attr-defined]

        return first, cut_after_two()

    monkeypatch.setattr(registry, "open_stream", open_then_cut)
    response = await api.client.post("/llm/chat/openai/stream", json={"message": "Hi you"},
                                     headers=api.auth(1))
    events = sse_events(response.text)
    kinds = [name for name, _ in events]
    assert response.status_code == 200
    assert kinds[-1] == "done" and "error" not in kinds
    done = events[-1][1]
    assert done["response"] == f"Echo from openai {DEFAULT}: Hi you"
    assert "".join(d["text"] for n, d in events if n == "delta") == done["response"]
    assert done["id"] is None and "could not be saved" in done["warning"]
    monkeypatch.setattr(registry, "open_stream", real_open)
    await assert_the_leak_is_bounded(api, proxy)

