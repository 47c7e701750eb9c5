"""POST /llm/chat/{provider}/stream through a real uvicorn server, for every vendor, against the
fake vendor streaming several pieces with pauses."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx2
import pytest
import uvicorn

from llm_service.app import create_app
from llm_service.providers.registry import default_model, provider_ids
from llm_service.security.jwt import issue_token
from llm_service.server import server_config
from llm_service.services import chat_stream
from tests.conftest import make_settings, vendor_settings
from tests.fakes.vendor import FakeVendor

PROVIDERS = provider_ids()
PIECES, DELAY = 4, 0.25


class Server:
    """The app under uvicorn, configured as `serve` does, in a thread of its own, on a free
    port of 127.0.0.1."""

    def __init__(self, **overrides: Any) -> None:
        data_dir, database_url = overrides.pop("data_dir"), overrides.pop("database_url")
        self.settings = make_settings(data_dir, database_url, **overrides)
        # The server `serve` runs (its bounded HTTP protocol included), on a free port.
        config = server_config(self.settings, create_app(self.settings))
        config.host, config.port = "127.0.0.1", 0
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, daemon=True)

    def __enter__(self) -> Server:
        self._thread.start()
        deadline = time.monotonic() + 30
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the test server did not start")
            time.sleep(0.05)
        return self

    def __exit__(self, *_: object) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=10)

    @property
    def url(self) -> str:
        port = self._server.servers[0].sockets[0].getsockname()[1]
        return f"http://127.0.0.1:{port}"

    def auth(self, user: int) -> dict[str, str]:
        token = issue_token(self.settings, user_id=user, role="CLIENT")
        return {"Authorization": f"Bearer {token}"}


@pytest.fixture(scope="session")
def stream_server(
    database_url: str, tmp_path_factory: pytest.TempPathFactory, fake_vendor: FakeVendor
) -> Iterator[Server]:
    with Server(data_dir=tmp_path_factory.mktemp("stream"), database_url=database_url,
                LLM_UPSTREAM_TIMEOUT_S=3, RATE_LIMIT_CHAT="100000/hour",
                RATE_LIMIT_DEFAULT="100000/hour", LLM_MAX_CONCURRENT_CHATS_PER_USER=100,
                **vendor_settings(fake_vendor)) as server:
        yield server


@pytest.fixture
async def client(
    stream_server: Server, fake_vendor: FakeVendor
) -> AsyncIterator[httpx2.AsyncClient]:
    fake_vendor.reset()
    fake_vendor.set_behaviour("ok", pieces=PIECES, delay=DELAY)
    async with httpx2.AsyncClient(base_url=stream_server.url, timeout=20) as client:
        for user in (1, 2):
            await client.delete("/llm/history/openai", headers=stream_server.auth(user))
        yield client


@pytest.fixture(params=PROVIDERS)
def provider(request: pytest.FixtureRequest) -> str:
    return request.param  # type: ignore[no-any-return]


async def configure(client: httpx2.AsyncClient, server: Server, provider: str,
                    user: int = 1) -> None:
    response = await client.post(f"/llm/config/{provider}",
                                 json={"apiKey": f"sk-stream-{user}-{provider}-key"},
                                 headers=server.auth(user))
    assert response.status_code == 200
    await client.delete(f"/llm/history/{provider}", headers=server.auth(user))


async def read_events(response: httpx2.Response, stop_after_deltas: int | None = None,
                      on_event: Any = None) -> list[tuple[float, str, Any]]:
    """(arrival time, event, data) of an SSE body; comments come as (t, "comment", text).
    `on_event(events)` runs after each event arrives, before the next is read."""
    import json

    events: list[tuple[float, str, Any]] = []
    name = None
    async for line in response.aiter_lines():
        now = time.time()
        if on_event is not None and events and line == "":
            on_event(events)
        if line.startswith(":"):
            events.append((now, "comment", line[1:].strip()))
        elif line.startswith("event: "):
            name = line[7:]
        elif line.startswith("data: ") and name:
            events.append((now, name, json.loads(line[6:])))
            if stop_after_deltas and sum(e[1] == "delta" for e in events) >= stop_after_deltas:
                break
    return events


async def stream(client: httpx2.AsyncClient, server: Server, provider: str, message: str,
                 user: int = 1, stop_after_deltas: int | None = None
                 ) -> tuple[httpx2.Response, list[tuple[float, str, Any]]]:
    async with client.stream("POST", f"/llm/chat/{provider}/stream",
                             json={"message": message, "history": []},
                             headers=server.auth(user)) as response:
        if response.status_code != 200:
            await response.aread()
            return response, []
        return response, await read_events(response, stop_after_deltas)


async def history(client: httpx2.AsyncClient, server: Server, provider: str, user: int = 1
                  ) -> list[dict[str, Any]]:
    page = await client.get(f"/llm/history/{provider}", headers=server.auth(user))
    return page.json()["history"]  # type: ignore[no-any-return]


async def test_deltas_come_before_the_vendor_finishes_and_add_up(
    client: httpx2.AsyncClient, stream_server: Server, fake_vendor: FakeVendor, provider: str
) -> None:
    await configure(client, stream_server, provider)
    vendor_finished_at_first_delta: list[bool] = []

    def on_event(events: list[tuple[float, str, Any]]) -> None:
        if events[-1][1] == "delta" and not vendor_finished_at_first_delta:
            (record,) = fake_vendor.requests_for(provider)
            vendor_finished_at_first_delta.append(record.finished_at is not None)

    async with client.stream("POST", f"/llm/chat/{provider}/stream",
                             json={"message": "Tell me a story", "history": []},
                             headers=stream_server.auth(1)) as response:
        events = await read_events(response, on_event=on_event)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    deltas = [e for e in events if e[1] == "delta"]
    done = [e for e in events if e[1] == "done"]
    assert len(deltas) >= 2 and len(done) == 1 and events[-1][1] == "done"
    (record,) = fake_vendor.requests_for(provider)
    assert record.stream
    # Ordering, not timing: the first delta was relayed while the vendor was still writing.
    assert vendor_finished_at_first_delta == [False]
    assert record.finished_at is not None
    text = "".join(d[2]["text"] for d in deltas)
    assert text == done[0][2]["response"]
    stored = await history(client, stream_server, provider)
    assert [m["content"] for m in stored] == ["Tell me a story", text]
    assert stored[1]["id"] == done[0][2]["id"]
    assert "interrupted" not in stored[1]


async def test_usage_comes_from_the_vendors_stream(
    client: httpx2.AsyncClient, stream_server: Server, provider: str
) -> None:
    await configure(client, stream_server, provider)
    _, events = await stream(client, stream_server, provider, "count my words please")
    done = events[-1][2]
    reply_words = len(done["response"].split())
    assert (done["inputTokens"], done["outputTokens"]) == (4, reply_words)
    assert done["tokensUsed"] == 4 + reply_words
    assert "tokensEstimated" not in done
    stored = await history(client, stream_server, provider)
    assert [m["tokensUsed"] for m in stored] == [4, reply_words]


async def test_a_client_that_leaves_cancels_the_vendor_and_keeps_the_partial_reply(
    client: httpx2.AsyncClient, stream_server: Server, fake_vendor: FakeVendor, provider: str
) -> None:
    await configure(client, stream_server, provider)
    fake_vendor.set_behaviour("ok", pieces=8, delay=0.3)
    _, events = await stream(client, stream_server, provider, "a long answer please",
                             stop_after_deltas=2)
    partial = "".join(e[2]["text"] for e in events if e[1] == "delta")
    for _ in range(100):
        record = fake_vendor.requests_for(provider)[0]
        if record.disconnected_at is not None:
            break
        await asyncio.sleep(0.02)
    # The vendor call was closed before the vendor had sent its whole answer.
    assert record.disconnected_at is not None
    assert record.finished_at is None or record.disconnected_at <= record.finished_at
    for _ in range(100):
        stored = await history(client, stream_server, provider)
        if len(stored) == 2:
            break
        await asyncio.sleep(0.05)
    assert stored[0]["content"] == "a long answer please"
    assert stored[1]["interrupted"] is True
    full = f"Echo from {provider} {default_model(stream_server.settings, provider)}: " \
        "a long answer please"
    assert stored[1]["content"].startswith(partial)
    assert full.startswith(stored[1]["content"]) and stored[1]["content"] != full


async def test_a_vendor_failure_mid_stream_is_an_error_event(
    client: httpx2.AsyncClient, stream_server: Server, fake_vendor: FakeVendor, provider: str
) -> None:
    await configure(client, stream_server, provider)
    fake_vendor.set_behaviour("stream_error", provider=provider)
    response, events = await stream(client, stream_server, provider, "fail in the middle")
    assert response.status_code == 200
    kinds = [e[1] for e in events]
    assert kinds[-1] == "error" and "delta" in kinds and "done" not in kinds
    error = events[-1][2]
    assert error["success"] is False and error["code"] == "provider_error"
    assert error["requestId"] == response.headers["X-Request-ID"]
    stored = await history(client, stream_server, provider)
    assert stored[1]["interrupted"] is True


async def test_an_error_before_the_stream_starts_is_the_json_error(
    client: httpx2.AsyncClient, stream_server: Server, fake_vendor: FakeVendor, provider: str
) -> None:
    await configure(client, stream_server, provider)
    fake_vendor.set_behaviour("auth", provider=provider)
    response, _ = await stream(client, stream_server, provider, "hello")
    assert response.status_code == 400
    assert response.json()["code"] == "provider_auth_failed"
    assert await history(client, stream_server, provider) == []


async def test_heartbeats_keep_a_silent_stream_open(
    client: httpx2.AsyncClient, stream_server: Server, fake_vendor: FakeVendor,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(chat_stream, "HEARTBEAT_S", 0.2)
    await configure(client, stream_server, "openai")
    fake_vendor.set_behaviour("ok", pieces=2, delay=1.0)
    _, events = await stream(client, stream_server, "openai", "take your time")
    kinds = [e[1] for e in events]
    assert kinds.count("comment") >= 3
    assert {e[2] for e in events if e[1] == "comment"} == {"keep-alive"}
    assert kinds[-1] == "done"


async def test_a_stream_holds_a_concurrency_slot_until_it_ends(
    stream_server: Server, fake_vendor: FakeVendor, tmp_path: Path, database_url: str
) -> None:
    with Server(data_dir=tmp_path, database_url=database_url, LLM_MAX_CONCURRENT_CHATS_PER_USER=1,
                **vendor_settings(fake_vendor)) as server:
        fake_vendor.reset()
        fake_vendor.set_behaviour("ok", pieces=3, delay=0.4)
        async with httpx2.AsyncClient(base_url=server.url, timeout=20) as client:
            await configure(client, server, "openai")
            first = asyncio.create_task(stream(client, server, "openai", "first"))
            for _ in range(200):
                if fake_vendor.requests_for("openai"):
                    break
                await asyncio.sleep(0.01)
            second, _ = await stream(client, server, "openai", "second")
            first_response, first_events = await first
            third, third_events = await stream(client, server, "openai", "third")
    assert second.status_code == 429 and second.json()["code"] == "rate_limited"
    assert first_response.status_code == 200 and first_events[-1][1] == "done"
    assert third.status_code == 200 and third_events[-1][1] == "done"
