"""Per-user rate limits and the chat concurrency cap: counts, headers, keys, Redis, failover."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest

from tests.conftest import Api
from tests.fakes.vendor import FakeVendor
from tests.security.conftest import AppFactory

KEY = "sk-rate-limit-tests-0001"


async def configure(api: Api, user: int, provider: str = "openai") -> None:
    response = await api.client.post(
        f"/llm/config/{provider}", json={"apiKey": KEY}, headers=api.auth(user)
    )
    assert response.status_code == 200, response.text


async def chat(api: Api, user: int, **headers: str) -> Any:
    return await api.client.post(
        "/llm/chat/openai", json={"message": "hi", "history": []},
        headers={**api.auth(user), **headers},
    )


async def test_default_limit_refuses_the_request_over_it(make_api: AppFactory) -> None:
    async with make_api(RATE_LIMIT_DEFAULT="3/minute") as api:
        statuses = [(await api.client.get("/llm/configs", headers=api.auth(1))).status_code
                    for _ in range(4)]
        refused = await api.client.get("/llm/configs", headers=api.auth(1))
    assert statuses == [200, 200, 200, 429]
    body = refused.json()
    assert body["code"] == "rate_limited"
    assert "too many requests (3 per window)" in body["error"]
    assert 1 <= int(refused.headers["Retry-After"]) <= 60
    assert refused.headers["X-RateLimit-Limit"] == "3"
    assert refused.headers["X-RateLimit-Remaining"] == "0"


async def test_every_limited_answer_carries_the_headers(make_api: AppFactory) -> None:
    async with make_api(RATE_LIMIT_DEFAULT="10/minute") as api:
        ok = await api.client.get("/llm/configs", headers=api.auth(1))
        not_configured = await api.client.delete("/llm/config/qwen", headers=api.auth(1))
        invalid = await api.client.post("/llm/config/qwen", json={"maxTokens": 0},
                                        headers=api.auth(1))
        unknown = await api.client.get("/llm/history/nope", headers=api.auth(1))
    remaining = []
    for response, status in ((ok, 200), (not_configured, 404), (invalid, 422), (unknown, 404)):
        assert response.status_code == status
        assert response.headers["X-RateLimit-Limit"] == "10"
        assert 0 < int(response.headers["X-RateLimit-Reset"]) <= 60
        remaining.append(int(response.headers["X-RateLimit-Remaining"]))
    assert remaining == [9, 8, 7, 6]


async def test_unauthenticated_requests_are_not_counted_or_limited(make_api: AppFactory) -> None:
    async with make_api(RATE_LIMIT_DEFAULT="1/minute") as api:
        for _ in range(3):
            response = await api.client.get("/llm/configs")
            assert response.status_code == 401
            assert "X-RateLimit-Limit" not in response.headers
        assert (await api.client.get("/llm/configs", headers=api.auth(1))).status_code == 200


async def test_health_is_not_limited(make_api: AppFactory) -> None:
    async with make_api(RATE_LIMIT_DEFAULT="1/minute") as api:
        for _ in range(3):
            response = await api.client.get("/health")
            assert response.status_code == 200
            assert "X-RateLimit-Limit" not in response.headers


async def test_limits_are_per_user_not_per_address_or_header(make_api: AppFactory) -> None:
    async with make_api(RATE_LIMIT_DEFAULT="2/minute") as api:
        for i in range(2):
            spoof = {"X-Forwarded-For": f"10.0.0.{i}", "X-Real-IP": f"10.1.0.{i}"}
            assert (await api.client.get("/llm/configs",
                                         headers={**api.auth(1), **spoof})).status_code == 200
        spoofed = await api.client.get(
            "/llm/configs", headers={**api.auth(1), "X-Forwarded-For": "192.0.2.99"}
        )
        other_user = await api.client.get("/llm/configs", headers=api.auth(2))
    assert spoofed.status_code == 429
    assert other_user.status_code == 200


async def test_chat_has_its_own_limit(make_api: AppFactory) -> None:
    async with make_api(RATE_LIMIT_CHAT="2/minute", RATE_LIMIT_DEFAULT="50/minute") as api:
        await configure(api, 1)
        statuses = [(await chat(api, 1)).status_code for _ in range(3)]
        refused = await chat(api, 1)
        other_routes = await api.client.get("/llm/history/openai", headers=api.auth(1))
    assert statuses == [200, 200, 429]
    assert refused.json()["code"] == "rate_limited"
    assert "too many chat messages (2 per window)" in refused.json()["error"]
    assert refused.headers["X-RateLimit-Limit"] == "2"
    assert other_routes.status_code == 200
    assert other_routes.headers["X-RateLimit-Limit"] == "50"


async def test_a_refused_chat_calls_no_vendor_and_stores_nothing(
    make_api: AppFactory, fake_vendor: FakeVendor
) -> None:
    async with make_api(RATE_LIMIT_CHAT="1/minute") as api:
        await configure(api, 1)
        assert (await chat(api, 1)).status_code == 200
        assert (await chat(api, 1)).status_code == 429
        history = await api.client.get("/llm/history/openai", headers=api.auth(1))
    assert len(fake_vendor.requests_for("openai")) == 1
    assert history.json()["total"] == 2


async def test_concurrent_chats_never_pass_the_limit(
    make_api: AppFactory, fake_vendor: FakeVendor
) -> None:
    async with make_api(RATE_LIMIT_CHAT="5/minute", LLM_MAX_CONCURRENT_CHATS_PER_USER=50) as api:
        await configure(api, 1)
        results = await asyncio.gather(*[chat(api, 1) for _ in range(12)])
    statuses = sorted(r.status_code for r in results)
    assert statuses == [200] * 5 + [429] * 7
    assert len(fake_vendor.requests_for("openai")) == 5


async def test_concurrency_cap_refuses_a_chat_over_it(
    make_api: AppFactory, fake_vendor: FakeVendor
) -> None:
    async with make_api(LLM_MAX_CONCURRENT_CHATS_PER_USER=2) as api:
        await configure(api, 1)
        await configure(api, 2)
        fake_vendor.set_behaviour("hang", provider="openai", times=2)
        waiting = [asyncio.create_task(chat(api, 1)) for _ in range(2)]
        for _ in range(300):  # both chats reach the vendor and hang there
            if len(fake_vendor.requests_for("openai")) == 2:
                break
            await asyncio.sleep(0.01)
        third = await chat(api, 1)
        other_user = await chat(api, 2)
        first, second = await asyncio.gather(*waiting)
        after = await chat(api, 1)
    assert third.status_code == 429
    assert third.json()["code"] == "rate_limited"
    assert third.json()["error"].startswith("You already have 2 chats waiting for an answer")
    assert other_user.status_code == 200
    assert (first.status_code, second.status_code) == (504, 504)
    assert after.status_code == 200


@pytest.mark.redis
async def test_with_redis_two_instances_share_the_counts(
    make_api: AppFactory, redis_url: str
) -> None:
    async with make_api(REDIS_URL=redis_url, RATE_LIMIT_DEFAULT="4/minute") as one, \
            make_api(REDIS_URL=redis_url, RATE_LIMIT_DEFAULT="4/minute") as two:
        assert one.runtime.limiter.uses_redis
        statuses = []
        for i in range(6):
            api = one if i % 2 == 0 else two
            statuses.append((await api.client.get("/llm/configs", headers=api.auth(1))).status_code)
    assert statuses == [200, 200, 200, 200, 429, 429]


@pytest.mark.redis
async def test_without_redis_instances_count_separately(make_api: AppFactory) -> None:
    async with make_api(RATE_LIMIT_DEFAULT="2/minute") as one, \
            make_api(RATE_LIMIT_DEFAULT="2/minute") as two:
        statuses = [(await api.client.get("/llm/configs", headers=api.auth(1))).status_code
                    for api in (one, one, two, two)]
    assert statuses == [200, 200, 200, 200]


async def test_unreachable_redis_fails_over_to_counting_in_process(
    make_api: AppFactory, caplog: pytest.LogCaptureFixture
) -> None:
    # Nothing listens on port 1: the documented choice is to keep serving, limits held per
    # process, with a warning logged.
    with caplog.at_level(logging.WARNING, logger="llm_service.rate_limit"):
        async with make_api(
            REDIS_URL="redis://127.0.0.1:1/0", RATE_LIMIT_DEFAULT="2/minute"
        ) as api:
            statuses = [(await api.client.get("/llm/configs", headers=api.auth(1))).status_code
                        for _ in range(3)]
    assert statuses == [200, 200, 429]
    warnings = [r.getMessage() for r in caplog.records]
    assert warnings and warnings[0].startswith("rate-limit storage unreachable")
