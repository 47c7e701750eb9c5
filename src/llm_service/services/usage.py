"""Usage figures from the stored replies: requests, tokens and estimated cost per group (UTC day,
provider or model) and in total, for one user or the whole platform. A request is a row that
stands for one paid vendor call (`BILLED_CALL`): a reply, or a conversation's title call; a
fork's copies are not."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from typing import Any, Literal

from sqlalchemy import ColumnElement, Select, desc, func, select
from sqlalchemy.ext.asyncio import AsyncConnection

from llm_service.db.models import BILLED_CALL, ChatMessage

GroupBy = Literal["day", "provider", "model"]


def _day(dialect: str) -> ColumnElement[str]:
    if dialect == "postgresql":
        return func.to_char(func.timezone("UTC", ChatMessage.created_at), "YYYY-MM-DD")
    return func.substr(ChatMessage.created_at, 1, 10)  # SQLite keeps UTC ISO text


def _key(group_by: GroupBy, dialect: str) -> ColumnElement[Any]:
    if group_by == "day":
        return _day(dialect)
    if group_by == "provider":
        return ChatMessage.provider
    return func.coalesce(ChatMessage.model, "unknown")


def _figures() -> list[ColumnElement[Any]]:
    return [
        func.count().label("requests"),
        func.coalesce(func.sum(ChatMessage.input_tokens), 0).label("input_tokens"),
        func.coalesce(func.sum(func.coalesce(ChatMessage.output_tokens, ChatMessage.tokens_used)),
                      0).label("output_tokens"),
        func.sum(ChatMessage.cost_usd).label("cost_usd"),
        func.count(ChatMessage.cost_usd).label("priced"),
    ]


def _replies(start: date, end: date, user_id: int | None) -> list[ColumnElement[bool]]:
    conditions = [
        BILLED_CALL,
        ChatMessage.created_at >= datetime.combine(start, time(), UTC),
        ChatMessage.created_at < datetime.combine(end + timedelta(days=1), time(), UTC),
    ]
    if user_id is not None:
        conditions.append(ChatMessage.user_id == user_id)
    return conditions


def _shape(row: Any) -> dict[str, Any]:
    """A group's figures. `costUsd` is null when no reply in it had a price; `unpricedRequests`
    counts the replies whose model had none."""
    cost: Decimal | None = row.cost_usd
    return {
        "requests": row.requests,
        "inputTokens": int(row.input_tokens),
        "outputTokens": int(row.output_tokens),
        "tokens": int(row.input_tokens) + int(row.output_tokens),
        "costUsd": float(cost) if cost is not None else None,
        "unpricedRequests": row.requests - row.priced,
    }


async def grouped(
    conn: AsyncConnection, group_by: GroupBy, start: date, end: date, user_id: int | None = None
) -> list[dict[str, Any]]:
    key = _key(group_by, conn.dialect.name).label("key")
    query: Select[Any] = (
        select(key, *_figures()).where(*_replies(start, end, user_id)).group_by(key).order_by(key)
    )
    return [{"key": row.key, **_shape(row)} for row in await conn.execute(query)]


async def total(
    conn: AsyncConnection, start: date, end: date, user_id: int | None = None
) -> dict[str, Any]:
    row = (await conn.execute(select(*_figures()).where(*_replies(start, end, user_id)))).one()
    return _shape(row)


async def top_users(
    conn: AsyncConnection, start: date, end: date, limit: int = 10
) -> list[dict[str, Any]]:
    cost = func.sum(ChatMessage.cost_usd)
    query = (
        select(ChatMessage.user_id, *_figures())
        .where(*_replies(start, end, None))
        .group_by(ChatMessage.user_id)
        .order_by(desc(func.coalesce(cost, 0)), ChatMessage.user_id)
        .limit(limit)
    )
    return [{"userId": row.user_id, **_shape(row)} for row in await conn.execute(query)]
