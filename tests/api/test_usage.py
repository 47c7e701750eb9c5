"""Usage, cost and budgets: recorded for every vendor streamed or not, grouped exactly, budgets
that hold under concurrency, the 80% warning, and admin-only platform figures."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import insert

from llm_service.db.models import ChatMessage
from llm_service.providers.registry import provider_ids
from tests.conftest import Api, AppFactory
from tests.fakes.vendor import FakeVendor

PROVIDERS = provider_ids()
MODELS = {"openai": "gpt-4o", "gemini": "gemini-3.1-flash-lite", "claude": "claude-haiku-4-5",
          "qwen": "qwen-plus", "huggingface": "meta-llama/Llama-3.3-70B-Instruct"}


async def configure(api: Api, provider: str, user: int = 1, **fields: Any) -> None:
    body = {"apiKey": f"sk-usage-{user}-{provider}", "model": MODELS[provider], **fields}
    response = await api.client.post(f"/llm/config/{provider}", json=body, headers=api.auth(user))
    assert response.status_code == 200, response.text


async def chat(api: Api, provider: str, user: int = 1, stream: bool = False,
               message: str = "How much does this cost") -> Any:
    path = f"/llm/chat/{provider}/stream" if stream else f"/llm/chat/{provider}"
    return await api.client.post(path, json={"message": message, "history": []},
                                 headers=api.auth(user))


async def usage(api: Api, query: str, user: int = 1) -> dict[str, Any]:
    response = await api.client.get(f"/llm/usage{query}", headers=api.auth(user))
    assert response.status_code == 200, response.text
    return response.json()  # type: ignore[no-any-return]


async def insert_reply(api: Api, user: int, at: datetime, tokens: tuple[int, int],
                       cost: str | None, provider: str = "openai", model: str = "gpt-4o") -> None:
    async with api.runtime.engine.begin() as conn:
        await conn.execute(insert(ChatMessage).values(
            user_id=user, provider=provider, role="assistant", content="r", created_at=at,
            tokens_used=tokens[1], model=model, input_tokens=tokens[0], output_tokens=tokens[1],
            cost_usd=Decimal(cost) if cost is not None else None,
        ))


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "streamed"])
async def test_tokens_and_cost_are_recorded_for_every_vendor(api: Api, stream: bool) -> None:
    expected = {}
    for provider in PROVIDERS:
        await configure(api, provider)
        response = await chat(api, provider, stream=stream)
        assert response.status_code == 200
        words_in, words_out = 5, len(f"Echo from {provider} {MODELS[provider]}: x".split()) + 4
        cost = api.runtime.catalog.cost(provider, MODELS[provider], words_in, words_out)
        # The catalogue has no Hugging Face prices (the router bills each serving provider's
        # own rate): that vendor's requests are counted as unpriced, never as free.
        assert (cost is None) == (provider == "huggingface")
        expected[provider] = {"requests": 1, "inputTokens": words_in, "outputTokens": words_out,
                              "tokens": words_in + words_out,
                              "costUsd": None if cost is None else float(cost),
                              "unpricedRequests": int(cost is None)}
    body = await usage(api, "?groupBy=provider")
    groups = {g["key"]: {k: v for k, v in g.items() if k != "key"} for g in body["groups"]}
    assert groups == expected
    assert body["total"]["requests"] == 5
    assert body["total"]["costUsd"] == pytest.approx(
        sum(e["costUsd"] or 0 for e in expected.values()))


async def test_an_unpriced_model_costs_null_not_zero(api: Api) -> None:
    await configure(api, "openai", model="house-model-7b")
    answer = (await chat(api, "openai")).json()
    assert answer["costUsd"] is None
    (group,) = (await usage(api, "?groupBy=model"))["groups"]
    assert (group["key"], group["costUsd"], group["unpricedRequests"]) == ("house-model-7b",
                                                                           None, 1)


async def test_day_groups_and_totals_are_exact_across_midnight_utc(api: Api) -> None:
    await insert_reply(api, 1, datetime(2026, 3, 9, 23, 59, 59, 999000, tzinfo=UTC), (10, 20),
                       "0.001000")
    await insert_reply(api, 1, datetime(2026, 3, 10, 0, 0, 0, tzinfo=UTC), (1, 2), "0.000100",
                       provider="claude", model="claude-haiku-4-5")
    await insert_reply(api, 1, datetime(2026, 3, 10, 23, 0, tzinfo=UTC), (3, 4), None,
                       model="house")
    await insert_reply(api, 1, datetime(2026, 3, 11, 0, 0, tzinfo=UTC), (100, 100), "1.0")
    await insert_reply(api, 2, datetime(2026, 3, 10, 12, 0, tzinfo=UTC), (7, 7), "0.5")
    body = await usage(api, "?from=2026-03-09&to=2026-03-10&groupBy=day")
    assert [(g["key"], g["requests"], g["tokens"], g["costUsd"], g["unpricedRequests"])
            for g in body["groups"]] == [
        ("2026-03-09", 1, 30, 0.001, 0),
        ("2026-03-10", 2, 10, 0.0001, 1),
    ]
    assert (body["total"]["requests"], body["total"]["inputTokens"],
            body["total"]["outputTokens"], body["total"]["costUsd"]) == (3, 14, 26, 0.0011)
    by_model = await usage(api, "?from=2026-03-09&to=2026-03-11&groupBy=model")
    assert [g["key"] for g in by_model["groups"]] == ["claude-haiku-4-5", "gpt-4o", "house"]


async def test_from_after_to_is_an_empty_period(api: Api) -> None:
    await insert_reply(api, 1, datetime(2026, 3, 9, 12, tzinfo=UTC), (1, 1), "0.1")
    body = await usage(api, "?from=2026-03-10&to=2026-03-09")
    assert body["groups"] == [] and body["total"]["requests"] == 0


@pytest.mark.parametrize("query", [
    "?groupBy=week", "?from=yesterday", "?to=2026-13-01", "?to=9999-12-31",
    "?from=9999-12-31&to=9999-12-31", "?from=2025-01-01&to=2026-01-02",
    "?from=0001-01-01&to=9999-12-30",
])
async def test_bad_periods_and_groupings_are_422(api: Api, query: str) -> None:
    response = await api.client.get(f"/llm/usage{query}", headers=api.auth(1))
    assert response.status_code == 422
    assert response.json()["code"] == "validation_error"


@pytest.mark.parametrize("query", ["?to=9999-12-31", "?from=2025-01-01&to=2026-01-02"])
async def test_admin_usage_refuses_the_same_periods(api: Api, query: str) -> None:
    response = await api.client.get(f"/llm/admin/usage{query}", headers=api.auth(1, "ADMIN"))
    assert response.status_code == 422
    assert response.json()["details"][0]["field"] == "to"


async def test_a_period_of_366_days_is_accepted(api: Api) -> None:
    await insert_reply(api, 1, datetime(2024, 12, 31, 12, tzinfo=UTC), (1, 1), "0.1")
    body = await usage(api, "?from=2024-01-01&to=2024-12-31")  # a leap year: 366 days
    assert body["total"]["requests"] == 1


async def test_the_last_usable_day_is_not_an_error(api: Api) -> None:
    body = await usage(api, "?from=9999-12-30&to=9999-12-30")
    assert body["total"]["requests"] == 0


async def test_limits_without_a_budget(api: Api) -> None:
    await configure(api, "openai")
    answer = (await chat(api, "openai")).json()
    body = (await api.client.get("/llm/usage/limits", headers=api.auth(1))).json()
    now = datetime.now(UTC)
    assert body["month"] == now.strftime("%Y-%m")
    assert body["tokens"] == {"limit": None, "used": answer["tokensUsed"], "reserved": 0}
    assert body["costUsd"]["limit"] is None and body["warning"] is None
    assert "warning" not in answer


async def seed_spend(api: Api, user: int, tokens: int) -> None:
    await insert_reply(api, user, datetime.now(UTC), (tokens, 0), "0")


async def test_past_80_percent_the_answer_warns(make_api: AppFactory) -> None:
    async with make_api(LLM_BUDGET_TOKENS_CLIENT=100) as api:
        await configure(api, "openai", maxTokens=5)
        await seed_spend(api, 1, 75)
        answer = (await chat(api, "openai", message="hi")).json()
    assert answer["warning"].startswith("You have used 8")
    assert "monthly token limit" in answer["warning"]


async def test_over_the_budget_is_429_and_calls_no_vendor(
    make_api: AppFactory, fake_vendor: FakeVendor
) -> None:
    async with make_api(LLM_BUDGET_TOKENS_CLIENT=100) as api:
        await configure(api, "openai", maxTokens=50)
        await seed_spend(api, 1, 90)
        response = await chat(api, "openai")
        other = await chat(api, "openai", user=2)
    assert response.status_code == 429
    body = response.json()
    assert body["code"] == "budget_exceeded"
    assert "monthly token limit of 100 tokens" in body["error"] and "resets on" in body["error"]
    assert other.status_code == 400  # user 2 has no config: not limited by user 1's spend
    assert fake_vendor.requests_for("openai") == []


async def test_staff_and_admin_have_their_own_budgets(make_api: AppFactory) -> None:
    async with make_api(LLM_BUDGET_TOKENS_CLIENT=10, LLM_BUDGET_TOKENS_STAFF=0) as api:
        await configure(api, "openai", maxTokens=50)
        client = await chat(api, "openai")
        staff = await api.client.post("/llm/chat/openai", json={"message": "hi"},
                                      headers=api.auth(1, "STAFF"))
    assert client.status_code == 429 and staff.status_code == 200


async def test_concurrent_chats_never_spend_past_the_budget_by_more_than_one_reservation(
    make_api: AppFactory,
) -> None:
    limit, max_tokens = 1000, 100
    async with make_api(LLM_BUDGET_TOKENS_CLIENT=limit, LLM_MAX_CONCURRENT_CHATS_PER_USER=50,
                        RATE_LIMIT_CHAT="1000/minute") as api:
        await configure(api, "openai", maxTokens=max_tokens)
        await seed_spend(api, 1, 700)
        results = await asyncio.gather(*[chat(api, "openai", message=f"m {i}")
                                          for i in range(20)])
        limits = (await api.client.get("/llm/usage/limits", headers=api.auth(1))).json()
    statuses = [r.status_code for r in results]
    assert set(statuses) <= {200, 429} and 200 in statuses and 429 in statuses
    assert all(r.json()["code"] == "budget_exceeded" for r in results if r.status_code == 429)
    reservation = max_tokens + 2
    assert limits["tokens"]["reserved"] == 0
    assert limits["tokens"]["used"] <= limit + reservation
    spent = sum(r.json()["tokensUsed"] for r in results if r.status_code == 200)
    assert limits["tokens"]["used"] == 700 + spent


@pytest.mark.parametrize("role", ["CLIENT", "STAFF"])
async def test_admin_usage_refuses_other_roles(api: Api, role: str) -> None:
    response = await api.client.get("/llm/admin/usage", headers=api.auth(1, role))
    assert response.status_code == 403
    assert response.json()["code"] == "forbidden"


async def test_admin_usage_has_platform_figures_and_top_users(api: Api) -> None:
    day = datetime(2026, 4, 2, 12, 0, tzinfo=UTC)
    await insert_reply(api, 1, day, (10, 10), "0.10")
    await insert_reply(api, 2, day, (5, 5), "0.50", provider="claude", model="claude-haiku-4-5")
    await insert_reply(api, 3, day, (1, 1), None, model="house")
    response = await api.client.get("/llm/admin/usage?from=2026-04-01&to=2026-04-30",
                                    headers=api.auth(9, "ADMIN"))
    assert response.status_code == 200
    body = response.json()
    assert [g["key"] for g in body["byProvider"]] == ["claude", "openai"]
    assert [(g["key"], g["requests"]) for g in body["byDay"]] == [("2026-04-02", 3)]
    assert [(u["userId"], u["costUsd"]) for u in body["topUsers"]] == [(2, 0.5), (1, 0.1),
                                                                      (3, None)]
    assert body["total"]["requests"] == 3 and body["total"]["costUsd"] == pytest.approx(0.6)
