"""A body the route waits for gets `LLM_BODY_TIMEOUT_S`, then 408 in the contract's shape (the
deadline is an ASGI middleware, so this holds under any server; the raw-socket test of the real
server is in test_http_bounds.py)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from tests.fakes.vendor import FakeVendor
from tests.security.conftest import AppFactory


async def never_finishing_body() -> AsyncIterator[bytes]:
    yield b'{"apiKey": "sk-body-deadline-'
    await asyncio.Event().wait()  # the rest never comes
    yield b""


async def test_a_body_that_stops_arriving_is_408(make_api: AppFactory) -> None:
    async with make_api(LLM_BODY_TIMEOUT_S=0.2) as api:
        response = await api.client.post(
            "/llm/config/openai", content=never_finishing_body(),
            headers={**api.auth(1), "Content-Type": "application/json"},
        )
        stored = await api.client.get("/llm/configs", headers=api.auth(1))
    assert response.status_code == 408
    assert response.headers["connection"] == "close"
    assert response.json() == {
        "success": False, "code": "request_timeout",
        "error": "The request's body did not arrive within 0.2 seconds: send it again.",
        "requestId": response.headers["X-Request-ID"],
    }
    assert stored.json() == {"configs": {}}


async def test_a_stream_outlasting_the_body_deadline_is_not_cut(
    make_api: AppFactory, fake_vendor: FakeVendor
) -> None:
    """Once the body is in, `receive` (the stream's disconnect listener) has no deadline."""
    async with make_api(LLM_BODY_TIMEOUT_S=0.2) as api:
        saved = await api.client.post("/llm/config/openai", json={"apiKey": "sk-in-time-0001"},
                                      headers=api.auth(1))
        assert saved.status_code == 200
        fake_vendor.set_behaviour("ok", provider="openai", pieces=6, delay=0.1)
        response = await api.client.post("/llm/chat/openai/stream",
                                         json={"message": "hi", "history": []},
                                         headers=api.auth(1))
    assert response.status_code == 200
    events = [line for line in response.text.splitlines() if line.startswith("event:")]
    assert events.count("event: delta") == 6
    assert events[-1] == "event: done"
