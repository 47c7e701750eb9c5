"""A reply's size cap (`LLM_MAX_REPLY_CHARS`, at most maxTokens x 8) on both chat routes, and a
stream's total deadline (`LLM_STREAM_TIMEOUT_S`), against the fake vendor on both databases."""

from __future__ import annotations

import asyncio
from typing import Any

from tests.conftest import Api, AppFactory, sse_events
from tests.fakes.vendor import FakeVendor

CAP = 40
MESSAGE = "please write me a long answer about the sea and its many moods"
FULL = f"Echo from openai gpt-4o: {MESSAGE}"


async def configure(api: Api, max_tokens: int = 1000) -> None:
    response = await api.client.post(
        "/llm/config/openai", json={"apiKey": "sk-limits-key", "model": "gpt-4o",
                                    "maxTokens": max_tokens}, headers=api.auth(1))
    assert response.status_code == 200, response.text


async def stored(api: Api) -> list[dict[str, Any]]:
    page = await api.client.get("/llm/history/openai", headers=api.auth(1))
    return page.json()["history"]  # type: ignore[no-any-return]


async def vendor_hung_up(fake_vendor: FakeVendor) -> bool:
    """The service closed the vendor's stream before the vendor had sent all of it."""
    for _ in range(100):
        (record,) = fake_vendor.requests_for("openai")
        if record.disconnected_at is not None:
            return record.finished_at is None or record.disconnected_at <= record.finished_at
        await asyncio.sleep(0.02)
    return False


async def test_a_reply_past_the_cap_is_cut_stored_interrupted_and_flagged(
    make_api: AppFactory,
) -> None:
    async with make_api(LLM_MAX_REPLY_CHARS=CAP) as api:
        await configure(api)
        response = await api.client.post("/llm/chat/openai", json={"message": MESSAGE},
                                         headers=api.auth(1))
        history = await stored(api)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["response"] == FULL[:CAP]
    assert body["truncated"] is True and f"{CAP:,} characters" in body["warning"]
    assert history[1]["content"] == FULL[:CAP] and history[1]["interrupted"] is True


async def test_the_cap_follows_max_tokens(make_api: AppFactory) -> None:
    async with make_api() as api:
        await configure(api, max_tokens=5)  # 5 tokens x 8 = 40 characters
        response = await api.client.post("/llm/chat/openai", json={"message": MESSAGE},
                                         headers=api.auth(1))
    assert response.json()["response"] == FULL[:40]
    assert response.json()["truncated"] is True


async def test_a_reply_within_the_cap_is_untouched(api: Api) -> None:
    await configure(api)
    response = await api.client.post("/llm/chat/openai", json={"message": MESSAGE},
                                     headers=api.auth(1))
    body = response.json()
    assert body["response"] == FULL and "truncated" not in body and "warning" not in body


async def test_a_stream_past_the_cap_closes_the_vendor_and_ends_with_a_truncated_done(
    make_api: AppFactory, fake_vendor: FakeVendor
) -> None:
    fake_vendor.set_behaviour("ok", pieces=12, delay=0.05)
    async with make_api(LLM_MAX_REPLY_CHARS=CAP) as api:
        await configure(api)
        response = await api.client.post("/llm/chat/openai/stream", json={"message": MESSAGE},
                                         headers=api.auth(1))
        events = sse_events(response.text)
        history = await stored(api)
    kinds = [name for name, _ in events]
    assert kinds[-1] == "done" and kinds.count("done") == 1 and "error" not in kinds
    done = events[-1][1]
    deltas = "".join(data["text"] for name, data in events if name == "delta")
    assert deltas == done["response"] == FULL[:CAP]
    assert done["truncated"] is True and f"{CAP:,} characters" in done["warning"]
    assert await vendor_hung_up(fake_vendor)
    assert history[1]["content"] == FULL[:CAP] and history[1]["interrupted"] is True


async def test_a_stream_past_its_deadline_ends_with_provider_timeout_and_keeps_the_part(
    make_api: AppFactory, fake_vendor: FakeVendor
) -> None:
    # Each pause (0.3 s) is well within LLM_UPSTREAM_TIMEOUT_S; the whole stream is not.
    fake_vendor.set_behaviour("ok", pieces=10, delay=0.3)
    async with make_api(LLM_STREAM_TIMEOUT_S=0.7) as api:
        await configure(api)
        response = await api.client.post("/llm/chat/openai/stream", json={"message": MESSAGE},
                                         headers=api.auth(1))
        events = sse_events(response.text)
        history = await stored(api)
    kinds = [name for name, _ in events]
    assert kinds[-1] == "error" and "done" not in kinds and "delta" in kinds
    error = events[-1][1]
    assert error["code"] == "provider_timeout" and "0.7 seconds" in error["error"]
    assert error["requestId"] == response.headers["X-Request-ID"]
    assert await vendor_hung_up(fake_vendor)
    partial = "".join(data["text"] for name, data in events if name == "delta")
    assert history[1]["interrupted"] is True
    assert history[1]["content"].startswith(partial) and FULL.startswith(history[1]["content"])
    assert history[1]["content"] != FULL
