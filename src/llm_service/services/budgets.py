"""Monthly token and cost budgets that hold under concurrency, across replicas and through
database failures.

Before a vendor is called, the worst case (a conservative estimate of the input plus `maxTokens`,
and its price) is reserved in one transaction: a conditional `UPDATE` on the user's row of
`llm_budget_usage` (the row lock on PostgreSQL, the write lock on SQLite, makes check-and-reserve
atomic, so parallel chats can never reserve past the limit) and an `INSERT` of the reservation
into `llm_budget_reservations` with an expiry. After the vendor answers, `settle` deletes that
reservation row and, only if it deleted it, moves the reservation to the real usage in the same
transaction: settling twice (a retry after a lost commit) charges once. A chat is charged at most
what it reserved, so the month's `used` never passes the limit (the vendor's own figures, bounded,
stay on the stored reply).

A reservation whose chat never settled (the database went away mid-chat, the process died) is
*leaked*: it expires `reservation_ttl_s` after it was made (longer than any chat may run: the
vendor's timeout, the stream deadline and a minute for storing), and `reconcile` deletes expired
reservations and gives their tokens back. Reconciling runs before a reservation is refused and
whenever the standing is read, so a leak costs the user headroom for minutes, not for the month;
an expired reservation is released, not charged (whether the vendor was paid is unknown).

The month's row starts from the user's stored history, so turning a budget on mid-month counts
what was already spent. Users whose role has no budget skip all of this (no extra round trip).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from sqlalchemy import bindparam, delete, func, insert, literal, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from llm_service.db.models import BILLED_CALL, BudgetReservation, BudgetUsage, ChatMessage
from llm_service.db.session import dialect_insert
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


# Per message: the role and the separators every vendor's chat template adds.
TOKENS_PER_TURN = 8


def estimate_tokens(text: str) -> int:
    """A conservative token count: one per non-ASCII character, one per four ASCII characters.

    Four characters a token holds for English; CJK and most other scripts take about one token a
    character (30,000 Chinese characters are about 30,000 tokens, not 7,500), so counting them at
    four would let one chat outrun a budget by the difference."""
    ascii_chars = len(text.encode("ascii", "ignore"))
    return (len(text) - ascii_chars) + math.ceil(ascii_chars / 4)


def estimate_input_tokens(contents: list[str]) -> int:
    """The input of a chat: every turn's text and its framing."""
    return sum(estimate_tokens(c) for c in contents) + TOKENS_PER_TURN * len(contents)


def reservation_ttl_s(settings: Settings) -> float:
    """How long a reservation may stay unsettled: the longest a chat can run, plus a minute."""
    return settings.upstream_timeout_s + settings.stream_timeout_s + 60


@dataclass(frozen=True, slots=True)
class Reservation:
    id: int
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


async def _ensure_month(conn: AsyncConnection, user_id: int, now: datetime) -> str:
    month, start, end = month_bounds(now)
    spent = select(
        literal(user_id), literal(month),
        func.coalesce(func.sum(ChatMessage.input_tokens + ChatMessage.output_tokens), 0),
        func.coalesce(func.sum(ChatMessage.cost_usd), 0),
    ).where(ChatMessage.user_id == user_id, BILLED_CALL,
            ChatMessage.created_at >= start, ChatMessage.created_at < end)
    await conn.execute(
        dialect_insert(conn, BudgetUsage)
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


async def reconcile(conn: AsyncConnection, user_id: int, now: datetime) -> int:
    """Release the user's expired reservations (their chats never settled); returns how many.
    Run it inside a transaction: the `DELETE ... RETURNING` makes each row released once, even
    when two replicas reconcile at the same time."""
    expired = (await conn.execute(
        delete(BudgetReservation)
        .where(BudgetReservation.user_id == user_id, BudgetReservation.expires_at < now)
        .returning(BudgetReservation.month, BudgetReservation.tokens, BudgetReservation.cost_usd)
    )).all()
    per_month: dict[str, tuple[int, Decimal]] = {}
    for month, tokens, cost in expired:
        held_tokens, held_cost = per_month.get(month, (0, Decimal(0)))
        per_month[month] = (held_tokens + tokens, held_cost + cost)
    for month, (tokens, cost) in per_month.items():
        await conn.execute(
            update(BudgetUsage)
            .where(BudgetUsage.user_id == user_id, BudgetUsage.month == month)
            .values(reserved_tokens=BudgetUsage.reserved_tokens - tokens,
                    reserved_cost_usd=BudgetUsage.reserved_cost_usd - cost)
        )
    return len(expired)


async def standing(conn: AsyncConnection, user_id: int, now: datetime) -> Standing:
    """The month's figures, expired reservations released first."""
    month, _, _ = month_bounds(now)
    query = select(
        BudgetUsage.used_tokens, BudgetUsage.reserved_tokens, BudgetUsage.used_cost_usd,
        BudgetUsage.reserved_cost_usd,
    ).where(BudgetUsage.user_id == user_id, BudgetUsage.month == month)
    await reconcile(conn, user_id, now)
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
    now: datetime, ttl_s: float,
) -> tuple[Reservation, Standing]:
    """Reserve the worst case, or raise 429 `budget_exceeded`. Run it inside a transaction (the
    budget row's update and the reservation's row stand or fall together); two statements once
    the month's row exists and nothing is refused."""
    month, _, _ = month_bounds(now)
    values = {"u": user_id, "m": month, "t": tokens, "c": cost_usd, "tl": budget.tokens,
              "cl": budget.cost_usd}
    row = (await conn.execute(_RESERVE, values)).first()
    if row is None:
        # Missing month row, or no headroom: release leaked reservations, then try once more.
        figures = await standing(conn, user_id, now)
        row = (await conn.execute(_RESERVE, values)).first()
        if row is None:
            raise budget_exceeded(budget, figures, tokens, now)
    reservation_id = (await conn.execute(
        insert(BudgetReservation).returning(BudgetReservation.id),
        {"user_id": user_id, "month": month, "tokens": tokens, "cost_usd": cost_usd,
         "expires_at": now + timedelta(seconds=ttl_s)},
    )).scalar_one()
    return Reservation(reservation_id, user_id, month, tokens, cost_usd), Standing(*row)


async def settle(
    conn: AsyncConnection, reservation: Reservation, tokens: int, cost_usd: Decimal
) -> Standing | None:
    """Replace the reservation by what was really used (zero to release it), charging at most
    what was reserved. Run it inside a transaction. None when the reservation was already gone
    (settled by an earlier attempt whose commit was lost, or expired and reconciled): nothing
    is charged twice."""
    gone = (await conn.execute(
        delete(BudgetReservation).where(BudgetReservation.id == reservation.id)
        .returning(BudgetReservation.id)
    )).first()
    if gone is None:
        return None
    row = (await conn.execute(
        update(BudgetUsage)
        .where(BudgetUsage.user_id == reservation.user_id,
               BudgetUsage.month == reservation.month)
        .values(reserved_tokens=BudgetUsage.reserved_tokens - reservation.tokens,
                reserved_cost_usd=BudgetUsage.reserved_cost_usd - reservation.cost_usd,
                used_tokens=BudgetUsage.used_tokens + min(tokens, reservation.tokens),
                used_cost_usd=BudgetUsage.used_cost_usd + min(cost_usd, reservation.cost_usd))
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
