"""Budgets on the real databases (SQLite and PostgreSQL, the `api` fixture): two budgeted users
with token and cost limits never touch each other's row, the month's row starts from exactly that
month's history, and a reservation fits up to the limit and not one token past it."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import insert

from llm_service.db.models import ChatMessage
from llm_service.errors import ServiceError
from llm_service.services import budgets
from llm_service.services.budgets import Budget, Standing
from tests.conftest import Api, AppFactory
from tests.fakes.vendor import FakeVendor

LAST_SECOND = datetime(2025, 12, 31, 23, 59, 59, tzinfo=UTC)
BUDGET = Budget(1000, Decimal("1.00"))
TTL_S = 3600.0


async def add_message(api: Api, user: int, at: datetime, tokens: tuple[int, int], cost: str,
                      role: str = "assistant") -> None:
    async with api.runtime.engine.begin() as conn:
        await conn.execute(insert(ChatMessage).values(
            user_id=user, provider="openai", role=role, content="r", created_at=at,
            tokens_used=tokens[1], model="gpt-4o", input_tokens=tokens[0],
            output_tokens=tokens[1], cost_usd=Decimal(cost),
        ))


async def standing(api: Api, user: int, now: datetime = LAST_SECOND) -> Standing:
    async with api.runtime.autocommit.connect() as conn:
        return await budgets.standing(conn, user, now)


async def reserve(api: Api, user: int, tokens: int, cost: str, now: datetime = LAST_SECOND,
                  budget: Budget = BUDGET) -> tuple[budgets.Reservation, Standing]:
    async with api.runtime.engine.begin() as conn:
        return await budgets.reserve(conn, budget, user, tokens, Decimal(cost), now, TTL_S)


async def settle(api: Api, reservation: budgets.Reservation, tokens: int, cost: str) -> Standing:
    async with api.runtime.engine.begin() as conn:
        figures = await budgets.settle(conn, reservation, tokens, Decimal(cost))
    assert figures is not None  # the reservation was there to settle
    return figures


def held(reservation: budgets.Reservation) -> tuple[int, str, int, Decimal]:
    """A reservation's figures, without its row id."""
    return (reservation.user_id, reservation.month, reservation.tokens, reservation.cost_usd)


async def test_the_month_starts_from_exactly_that_months_history(api: Api) -> None:
    await add_message(api, 1, datetime(2025, 12, 1, tzinfo=UTC), (10, 20), "0.100000")
    await add_message(api, 1, datetime(2025, 12, 31, 23, 59, 58, tzinfo=UTC), (1, 2), "0.010000")
    await add_message(api, 1, datetime(2025, 11, 30, 23, 59, 59, tzinfo=UTC), (500, 0), "5")
    await add_message(api, 1, datetime(2026, 1, 1, tzinfo=UTC), (700, 0), "7")
    await add_message(api, 1, datetime(2025, 12, 15, tzinfo=UTC), (900, 0), "9", role="user")
    await add_message(api, 2, datetime(2025, 12, 15, tzinfo=UTC), (300, 0), "3")
    assert await standing(api, 1) == Standing(33, 0, Decimal("0.11"), Decimal(0))
    assert await standing(api, 2) == Standing(300, 0, Decimal("3"), Decimal(0))
    # January is its own month, from January's history.
    january = datetime(2026, 1, 1, tzinfo=UTC)
    assert await standing(api, 1, january) == Standing(700, 0, Decimal("7"), Decimal(0))


async def test_a_month_without_history_starts_at_zero(api: Api) -> None:
    assert await standing(api, 5) == Standing(0, 0, Decimal(0), Decimal(0))
    # Reading it again finds the row made the first time (and does not count history twice).
    await add_message(api, 5, datetime(2025, 12, 2, tzinfo=UTC), (1, 1), "0.01")
    assert await standing(api, 5) == Standing(0, 0, Decimal(0), Decimal(0))


async def test_two_users_reserve_and_settle_only_their_own_rows(api: Api) -> None:
    await add_message(api, 2, datetime(2025, 12, 3, tzinfo=UTC), (100, 100), "0.200000")
    assert await standing(api, 2) == Standing(200, 0, Decimal("0.2"), Decimal(0))
    first, figures = await reserve(api, 1, 300, "0.30")
    assert held(first) == (1, "2025-12", 300, Decimal("0.30"))
    assert figures == Standing(0, 300, Decimal(0), Decimal("0.30"))
    second, figures = await reserve(api, 2, 50, "0.05")
    assert figures == Standing(200, 50, Decimal("0.2"), Decimal("0.05"))
    assert await standing(api, 1) == Standing(0, 300, Decimal(0), Decimal("0.30"))

    assert await settle(api, first, 120, "0.12") == Standing(120, 0, Decimal("0.12"), Decimal(0))
    assert await standing(api, 2) == Standing(200, 50, Decimal("0.2"), Decimal("0.05"))
    assert await settle(api, second, 0, "0") == Standing(200, 0, Decimal("0.2"), Decimal(0))
    assert await standing(api, 1) == Standing(120, 0, Decimal("0.12"), Decimal(0))


async def test_settling_touches_only_the_reservations_month(api: Api) -> None:
    november = datetime(2025, 11, 30, 23, 59, 59, tzinfo=UTC)
    await add_message(api, 1, datetime(2025, 11, 2, tzinfo=UTC), (40, 2), "0.04")
    assert await standing(api, 1, november) == Standing(42, 0, Decimal("0.04"), Decimal(0))
    reservation, _ = await reserve(api, 1, 100, "0.10")  # December's
    assert await settle(api, reservation, 10, "0.01") == Standing(10, 0, Decimal("0.01"),
                                                                  Decimal(0))
    assert await standing(api, 1, november) == Standing(42, 0, Decimal("0.04"), Decimal(0))


async def test_a_reservation_fits_up_to_the_token_limit_and_not_one_past(api: Api) -> None:
    await add_message(api, 1, datetime(2025, 12, 3, tzinfo=UTC), (400, 0), "0")
    _, figures = await reserve(api, 1, 500, "0")
    assert figures.used_tokens + figures.reserved_tokens == 900
    _, figures = await reserve(api, 1, 100, "0")  # exactly the limit
    assert figures.used_tokens + figures.reserved_tokens == 1000
    try:
        await reserve(api, 1, 1, "0")
    except ServiceError as error:
        assert (error.status, error.code) == (429, "budget_exceeded")
        assert "token limit of 1,000 tokens" in error.message
        assert "resets on 2026-01-01" in error.message
    else:
        raise AssertionError("one token past the limit was reserved")
    assert await standing(api, 1) == Standing(400, 600, Decimal(0), Decimal(0))
    assert (await reserve(api, 2, 1000, "0"))[1].reserved_tokens == 1000  # user 2: own row


async def test_a_reservation_fits_up_to_the_cost_limit_and_not_a_cent_past(api: Api) -> None:
    await add_message(api, 1, datetime(2025, 12, 3, tzinfo=UTC), (1, 1), "0.40")
    _, figures = await reserve(api, 1, 10, "0.60")  # exactly $1.00
    assert figures.used_cost_usd + figures.reserved_cost_usd == Decimal("1.00")
    try:
        await reserve(api, 1, 10, "0.01")
    except ServiceError as error:
        assert "cost limit of $1.00" in error.message
    else:
        raise AssertionError("a cent past the cost limit was reserved")
    assert await standing(api, 1) == Standing(2, 10, Decimal("0.40"), Decimal("0.60"))


async def test_without_a_limit_anything_can_be_reserved(api: Api) -> None:
    tokens_only, cost_only = Budget(10, None), Budget(None, Decimal("0.01"))
    assert (await reserve(api, 1, 5, "1000", budget=tokens_only))[1].reserved_cost_usd == 1000
    assert (await reserve(api, 2, 10**9, "0.01", budget=cost_only))[1].reserved_tokens == 10**9


async def configure(api: Api, user: int) -> None:
    response = await api.client.post(
        "/llm/config/openai", json={"apiKey": f"sk-budget-{user}", "model": "gpt-4o",
                                    "maxTokens": 1000}, headers=api.auth(user))
    assert response.status_code == 200, response.text


async def limits(api: Api, user: int) -> dict[str, Any]:
    response = await api.client.get("/llm/usage/limits", headers=api.auth(user))
    assert response.status_code == 200, response.text
    return response.json()  # type: ignore[no-any-return]


async def chat(api: Api, user: int) -> Any:
    return await api.client.post("/llm/chat/openai", json={"message": "hi", "history": []},
                                 headers=api.auth(user))


async def test_two_budgeted_users_chat_without_touching_each_others_figures(
    make_api: AppFactory, fake_vendor: FakeVendor
) -> None:
    async with make_api(LLM_BUDGET_TOKENS_CLIENT=100_000, LLM_BUDGET_COST_USD_CLIENT=1.0) as api:
        for user in (1, 2, 3):
            await configure(api, user)
        await add_message(api, 2, datetime.now(UTC), (500, 500), "0.500000")
        await add_message(api, 3, datetime.now(UTC), (1, 1), "0.995000")
        before = await limits(api, 2)
        answer = (await chat(api, 1)).json()
        one, two = await limits(api, 1), await limits(api, 2)
        refused = await chat(api, 3)  # tokens fit; $0.995 + a 1,000-token reservation does not
        three = await limits(api, 3)
    assert before["tokens"] == {"limit": 100_000, "used": 1000, "reserved": 0}
    assert before["costUsd"] == {"limit": 1.0, "used": 0.5, "reserved": 0.0}
    assert one["tokens"] == {"limit": 100_000, "used": answer["tokensUsed"], "reserved": 0}
    assert one["costUsd"] == {"limit": 1.0, "used": answer["costUsd"], "reserved": 0.0}
    assert answer["costUsd"] > 0
    assert two == before
    assert refused.status_code == 429
    assert refused.json()["code"] == "budget_exceeded"
    assert "monthly cost limit of $1.00" in refused.json()["error"]
    assert three["tokens"]["reserved"] == 0 and three["costUsd"]["reserved"] == 0.0
    assert len(fake_vendor.requests_for("openai")) == 1
