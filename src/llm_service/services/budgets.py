"""Monthly token and cost budgets that hold under concurrency and across replicas.

Before a vendor is called, the worst case (an estimate of the input plus `maxTokens`, and its
price) is reserved with one conditional `UPDATE` on the user's row of `llm_budget_usage`: the row
lock (PostgreSQL) or the write lock (SQLite) makes check-and-reserve atomic, so parallel chats can
never reserve past the limit. After the vendor answers, the reservation is settled to the real
usage; on failure it is released. The month's row starts from the user's stored history, so
turning a budget on mid-month counts what was already spent. Users whose role has no budget skip
all of this (no extra round trip).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal

from sqlalchemy import bindparam, func, literal, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection

from llm_service.db.models import BudgetUsage, ChatMessage
from llm_service.errors import ServiceError
from llm_service.settings import Settings

WARN_AT = 0.8


@dataclass(frozen=True, slots=True)
class Budget:
    tokens: int | None  # None: no limit
    cost_usd: Decimal | None

    @property
    def limited(self) -> bool:
        return self.tokens is not None or self.cost_usd is not None


def budget_for(settings: Settings, role: str) -> Budget:
    name = role.lower()
    tokens = int(getattr(settings, f"budget_tokens_{name}", 0))
    cost = float(getattr(settings, f"budget_cost_usd_{name}", 0))
    return Budget(tokens or None, Decimal(str(cost)) if cost else None)


def month_bounds(now: datetime) -> tuple[str, datetime, datetime]:
    start = now.astimezone(UTC).replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    end = start.replace(year=start.year + 1, month=1) if start.month == 12 else \
        start.replace(month=start.month + 1)
    return start.strftime("%Y-%m"), start, end


def estimate_tokens(text: str) -> int:
    """About four characters per token, the usual rule of thumb."""
    return math.ceil(len(text) / 4)


@dataclass(frozen=True, slots=True)
class Reservation:
    user_id: int
    month: str
    tokens: int
    cost_usd: Decimal


@dataclass(frozen=True, slots=True)
class Standing:
    """A month's figures after a reservation or settlement."""

    used_tokens: int
    reserved_tokens: int
    used_cost_usd: Decimal
    reserved_cost_usd: Decimal


def _insert(dialect: str):  # type: ignore[no-untyped-def]
    return (postgresql.insert if dialect == "postgresql" else sqlite.insert)(BudgetUsage)


async def _ensure_month(conn: AsyncConnection, user_id: int, now: datetime) -> str:
    month, start, end = month_bounds(now)
    spent = select(
        literal(user_id), literal(month),
        func.coalesce(func.sum(ChatMessage.input_tokens + ChatMessage.output_tokens), 0),
        func.coalesce(func.sum(ChatMessage.cost_usd), 0),
    ).where(ChatMessage.user_id == user_id, ChatMessage.role == "assistant",
            ChatMessage.created_at >= start, ChatMessage.created_at < end)
    await conn.execute(
        _insert(conn.dialect.name)
        .from_select(["user_id", "month", "used_tokens", "used_cost_usd"], spent)
        .on_conflict_do_nothing(index_elements=["user_id", "month"])
    )
    return month


_RESERVE = (
    update(BudgetUsage)
    .where(
        BudgetUsage.user_id == bindparam("u"),
        BudgetUsage.month == bindparam("m"),
        (bindparam("tl", type_=BudgetUsage.used_tokens.type).is_(None))
        | (BudgetUsage.used_tokens + BudgetUsage.reserved_tokens + bindparam("t")
           <= bindparam("tl")),
        (bindparam("cl", type_=BudgetUsage.used_cost_usd.type).is_(None))
        | (BudgetUsage.used_cost_usd + BudgetUsage.reserved_cost_usd + bindparam("c")
           <= bindparam("cl")),
    )
    .values(reserved_tokens=BudgetUsage.reserved_tokens + bindparam("t"),
            reserved_cost_usd=BudgetUsage.reserved_cost_usd + bindparam("c"))
    .returning(BudgetUsage.used_tokens, BudgetUsage.reserved_tokens,
               BudgetUsage.used_cost_usd, BudgetUsage.reserved_cost_usd)
)


async def standing(conn: AsyncConnection, user_id: int, now: datetime) -> Standing:
    month, _, _ = month_bounds(now)
    query = select(
        BudgetUsage.used_tokens, BudgetUsage.reserved_tokens, BudgetUsage.used_cost_usd,
        BudgetUsage.reserved_cost_usd,
    ).where(BudgetUsage.user_id == user_id, BudgetUsage.month == month)
    row = (await conn.execute(query)).first()
    if row is None:  # the month's first look: start it from the stored history
        await _ensure_month(conn, user_id, now)
        row = (await conn.execute(query)).one()
    return Standing(*row)


def budget_exceeded(
    budget: Budget, figures: Standing, tokens: int, now: datetime
) -> ServiceError:
    _, _, end = month_bounds(now)
    resets = end.strftime("%Y-%m-%d")
    # Other chats may have settled since the refused reservation: name the token limit unless
    # only the cost limit can have been the one.
    over_tokens = budget.tokens is not None and (
        budget.cost_usd is None
        or figures.used_tokens + figures.reserved_tokens + tokens > budget.tokens
    )
    if over_tokens:
        which = f"monthly token limit of {budget.tokens:,} tokens"
    else:
        which = f"monthly cost limit of ${budget.cost_usd:.2f}"
    return ServiceError(
        429,
        "budget_exceeded",
        f"This message would go past your {which}; it resets on {resets} (UTC). Ask for a "
        "shorter answer (a lower maxTokens) or wait until then.",
    )


async def reserve(
    conn: AsyncConnection, budget: Budget, user_id: int, tokens: int, cost_usd: Decimal,
    now: datetime,
) -> tuple[Reservation, Standing]:
    """Reserve the worst case, or raise 429 `budget_exceeded`. One round trip once the month's
    row exists."""
    month, _, _ = month_bounds(now)
    values = {"u": user_id, "m": month, "t": tokens, "c": cost_usd, "tl": budget.tokens,
              "cl": budget.cost_usd}
    row = (await conn.execute(_RESERVE, values)).first()
    if row is None:
        figures = await standing(conn, user_id, now)  # creates the month's row when missing
        row = (await conn.execute(_RESERVE, values)).first()
        if row is None:
            raise budget_exceeded(budget, figures, tokens, now)
    return Reservation(user_id, month, tokens, cost_usd), Standing(*row)


async def settle(
    conn: AsyncConnection, reservation: Reservation, tokens: int, cost_usd: Decimal
) -> Standing:
    """Replace the reservation by what was really used (zero to release it)."""
    row = (await conn.execute(
        update(BudgetUsage)
        .where(BudgetUsage.user_id == reservation.user_id,
               BudgetUsage.month == reservation.month)
        .values(reserved_tokens=BudgetUsage.reserved_tokens - reservation.tokens,
                reserved_cost_usd=BudgetUsage.reserved_cost_usd - reservation.cost_usd,
                used_tokens=BudgetUsage.used_tokens + tokens,
                used_cost_usd=BudgetUsage.used_cost_usd + cost_usd)
        .returning(BudgetUsage.used_tokens, BudgetUsage.reserved_tokens,
                   BudgetUsage.used_cost_usd, BudgetUsage.reserved_cost_usd)
    )).one()
    return Standing(*row)


def warning(budget: Budget, figures: Standing, now: datetime) -> str | None:
    """A sentence once a limit is 80% used, else None."""
    _, _, end = month_bounds(now)
    resets = end.strftime("%Y-%m-%d")
    if budget.tokens is not None:
        used = figures.used_tokens + figures.reserved_tokens
        if used >= budget.tokens * WARN_AT:
            return (f"You have used {used / budget.tokens:.0%} of your monthly token limit "
                    f"({used:,} of {budget.tokens:,}); it resets on {resets} (UTC).")
    if budget.cost_usd is not None:
        spent = figures.used_cost_usd + figures.reserved_cost_usd
        if spent >= budget.cost_usd * Decimal(str(WARN_AT)):
            return (f"You have used {float(spent / budget.cost_usd):.0%} of your monthly cost "
                    f"limit (${spent:.2f} of ${budget.cost_usd:.2f}); it resets on {resets} "
                    "(UTC).")
    return None
