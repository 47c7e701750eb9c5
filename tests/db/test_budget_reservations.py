"""Budget reservations on both databases: a leaked one (its chat never settled) stops counting
once it expires, settling is idempotent, and a chat is charged at most what it reserved."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

from sqlalchemy import event, func, select

from llm_service.db.models import BudgetReservation, utcnow
from llm_service.services import budgets
from tests.conftest import Api

BUDGET = budgets.Budget(tokens=1000, cost_usd=None)
TTL_S = 600.0


async def reserve(api: Api, tokens: int, user: int = 1, at_offset_s: float = 0
                  ) -> budgets.Reservation:
    async with api.runtime.engine.begin() as conn:
        reservation, _ = await budgets.reserve(
            conn, BUDGET, user, tokens, Decimal(0), utcnow() + timedelta(seconds=at_offset_s),
            TTL_S)
    return reservation


async def standing(api: Api, user: int = 1, at_offset_s: float = 0) -> budgets.Standing:
    async with api.runtime.engine.begin() as conn:
        return await budgets.standing(conn, user, utcnow() + timedelta(seconds=at_offset_s))


async def reservation_rows(api: Api) -> int:
    async with api.runtime.engine.connect() as conn:
        return int((await conn.execute(select(func.count()).select_from(BudgetReservation)))
                   .scalar_one())


async def test_a_leaked_reservation_counts_until_it_expires_then_is_released(api: Api) -> None:
    await reserve(api, 400)  # its chat never settles
    assert (await standing(api)).reserved_tokens == 400
    assert (await standing(api, at_offset_s=TTL_S - 5)).reserved_tokens == 400
    after = await standing(api, at_offset_s=TTL_S + 1)
    assert (after.reserved_tokens, after.used_tokens) == (0, 0)  # released, not charged
    assert await reservation_rows(api) == 0


async def test_a_refused_reservation_releases_expired_ones_first(api: Api) -> None:
    await reserve(api, 900, at_offset_s=-(TTL_S + 1))  # leaked long ago: already expired
    reservation = await reserve(api, 900)  # would not fit beside the leaked one
    assert reservation.tokens == 900
    assert (await standing(api)).reserved_tokens == 900


async def test_a_reservation_that_does_not_fit_is_refused(api: Api) -> None:
    await reserve(api, 900)
    try:
        await reserve(api, 200)
    except budgets.ServiceError as exc:
        assert exc.status == 429 and exc.code == "budget_exceeded"
    else:
        raise AssertionError("the second reservation went past the limit")
    assert (await standing(api)).reserved_tokens == 900
    assert await reservation_rows(api) == 1  # the refused one left no row


async def test_settling_twice_charges_once(api: Api) -> None:
    reservation = await reserve(api, 300)
    async with api.runtime.engine.begin() as conn:
        first = await budgets.settle(conn, reservation, 120, Decimal(0))
    async with api.runtime.engine.begin() as conn:
        again = await budgets.settle(conn, reservation, 120, Decimal(0))
    assert first is not None and (first.used_tokens, first.reserved_tokens) == (120, 0)
    assert again is None
    assert (await standing(api)).used_tokens == 120


async def test_settling_an_expired_and_released_reservation_charges_nothing(api: Api) -> None:
    reservation = await reserve(api, 300)
    await standing(api, at_offset_s=TTL_S + 1)  # reconciled: released
    async with api.runtime.engine.begin() as conn:
        assert await budgets.settle(conn, reservation, 120, Decimal(0)) is None
    figures = await standing(api)
    assert (figures.used_tokens, figures.reserved_tokens) == (0, 0)


async def test_a_chat_is_charged_at_most_what_it_reserved(api: Api) -> None:
    reservation = await reserve(api, 300)
    async with api.runtime.engine.begin() as conn:
        figures = await budgets.settle(conn, reservation, 2**40, Decimal(0))
    assert figures is not None and figures.used_tokens == 300


async def test_reconciling_touches_only_that_users_reservations(api: Api) -> None:
    await reserve(api, 400, user=1, at_offset_s=-(TTL_S + 1))
    await reserve(api, 500, user=2, at_offset_s=-(TTL_S + 1))
    assert (await standing(api, user=1)).reserved_tokens == 0
    assert await reservation_rows(api) == 1
    assert (await standing(api, user=2)).reserved_tokens == 0


async def test_a_reservation_that_fits_takes_two_statements_once_the_month_exists(
    api: Api,
) -> None:
    # The docstring's promise: the conditional UPDATE and the reservation's INSERT, no reading
    # of the standing (and no reconciling) on the way of a chat that fits.
    await standing(api)  # the month's row exists
    statements: list[str] = []

    def record(conn: object, cursor: object, statement: str, *args: object) -> None:
        statements.append(statement.split(None, 1)[0].upper())

    async with api.runtime.engine.begin() as conn:
        event.listen(conn.sync_connection, "before_cursor_execute", record)
        try:
            await budgets.reserve(conn, BUDGET, 1, 100, Decimal(0), utcnow(), TTL_S)
        finally:
            event.remove(conn.sync_connection, "before_cursor_execute", record)
    assert statements == ["UPDATE", "INSERT"]
    assert (await standing(api)).reserved_tokens == 100


async def reserve_at(api: Api, at: datetime, tokens: int, cost: str) -> None:
    async with api.runtime.engine.begin() as conn:
        await budgets.reserve(conn, budgets.Budget(None, None), 1, tokens, Decimal(cost), at,
                              TTL_S)


async def standing_at(api: Api, at: datetime) -> budgets.Standing:
    async with api.runtime.engine.begin() as conn:
        return await budgets.standing(conn, 1, at)


NOV_END = datetime(2025, 11, 30, 23, 50, tzinfo=UTC)
DEC_START = datetime(2025, 12, 1, 0, 5, tzinfo=UTC)


async def test_expired_reservations_give_back_their_tokens_and_cost_in_each_month(
    api: Api,
) -> None:
    await reserve_at(api, NOV_END, 400, "0.40")  # November's
    await reserve_at(api, DEC_START, 300, "0.30")  # two of December's
    await reserve_at(api, DEC_START, 200, "0.25")
    assert await standing_at(api, DEC_START) == budgets.Standing(0, 500, Decimal(0),
                                                                  Decimal("0.55"))
    later = DEC_START + timedelta(seconds=TTL_S + 1)  # all three expired
    assert await standing_at(api, later) == budgets.Standing(0, 0, Decimal(0), Decimal(0))
    assert await standing_at(api, NOV_END) == budgets.Standing(0, 0, Decimal(0), Decimal(0))
    assert await reservation_rows(api) == 0


async def test_a_reservation_still_counts_at_the_instant_it_expires(api: Api) -> None:
    await reserve_at(api, DEC_START, 300, "0.30")
    expiry = DEC_START + timedelta(seconds=TTL_S)
    assert (await standing_at(api, expiry)).reserved_tokens == 300
    assert (await standing_at(api, expiry + timedelta(microseconds=1))).reserved_tokens == 0


async def test_reading_an_existing_months_standing_reconciles_and_reads_only(api: Api) -> None:
    await standing_at(api, DEC_START)  # the month's row exists
    statements: list[str] = []

    def record(conn: object, cursor: object, statement: str, *args: object) -> None:
        statements.append(statement.split(None, 1)[0].upper())

    async with api.runtime.engine.begin() as conn:
        event.listen(conn.sync_connection, "before_cursor_execute", record)
        try:
            await budgets.standing(conn, 1, DEC_START)
        finally:
            event.remove(conn.sync_connection, "before_cursor_execute", record)
    assert statements == ["DELETE", "SELECT"]
