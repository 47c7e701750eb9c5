"""Chat history: paging, clearing, the context for the next chat, and storing messages.

These are the provider's default thread: rows without a conversation (`conversation_id IS NULL`);
conversations have their own module (`services/conversations.py`).

The chat path uses Core statements on a connection (`recent_turns`, `store_messages`): one round
trip each, no ORM objects. The routes of the history page use the request's session.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy import bindparam, delete, func, select, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from llm_service.db.driver import DriverInsert, DriverQuery
from llm_service.db.models import ChatMessage, Conversation, utcnow


@dataclass(frozen=True, slots=True)
class NewMessage:
    role: str  # "user" or "assistant"
    content: str
    tokens_used: int
    interrupted: bool = False
    tokens_estimated: bool = False
    # Replies only: what the exchange used and cost.
    model: str | None = None
    input_tokens: int | None = None
    output_tokens: int | None = None
    cost_usd: Decimal | None = None
    cached_input_tokens: int | None = None
    finish_reason: str | None = None  # "length": cut at maxTokens


def _of(user_id: int, provider: str) -> tuple[Any, ...]:
    """The provider's default thread: the user's rows that belong to no conversation."""
    return (ChatMessage.user_id == user_id, ChatMessage.provider == provider,
            ChatMessage.conversation_id.is_(None))


async def _newest(
    session: AsyncSession, user_id: int, provider: str, *, limit: int, offset: int
) -> list[ChatMessage]:
    """The `limit` newest messages after skipping `offset` newest ones, listed oldest first."""
    newest_first = await session.scalars(
        select(ChatMessage)
        .where(*_of(user_id, provider))
        .order_by(ChatMessage.created_at.desc(), ChatMessage.id.desc())
        .limit(limit)
        .offset(offset)
    )
    return list(newest_first)[::-1]


async def page(
    session: AsyncSession, user_id: int, provider: str, *, limit: int, offset: int
) -> tuple[list[ChatMessage], int]:
    """A page of history as a chat window shows it, and the total count."""
    rows = await _newest(session, user_id, provider, limit=limit, offset=offset)
    total = await session.scalar(
        select(func.count()).select_from(ChatMessage).where(*_of(user_id, provider))
    )
    return rows, int(total or 0)


# The chat path's statements, built once (building one costs about as much as executing it)
# and run on the driver (see `db.driver`).
_RECENT_TURNS = DriverQuery(
    select(ChatMessage.role, ChatMessage.content)
    .where(ChatMessage.user_id == bindparam("user_id"),
           ChatMessage.provider == bindparam("provider"),
           ChatMessage.conversation_id.is_(None))
    .order_by(ChatMessage.created_at.desc(), ChatMessage.id.desc())
    .limit(bindparam("count"))
)
_INSERT_MESSAGES = DriverInsert(ChatMessage.__table__)  # type: ignore[arg-type]


async def recent_turns(
    conn: AsyncConnection, user_id: int, provider: str, count: int
) -> list[tuple[str, str]]:
    """(role, content) of the newest `count` messages, oldest first: the context of a chat."""
    if count <= 0:
        return []
    rows = await _RECENT_TURNS.rows(
        conn, {"user_id": user_id, "provider": provider, "count": count}
    )
    return rows[::-1]  # type: ignore[return-value]


async def clear(session: AsyncSession, user_id: int, provider: str) -> int:
    result = await session.execute(delete(ChatMessage).where(*_of(user_id, provider)))
    return int(result.rowcount or 0)  # type: ignore[attr-defined]


async def store_messages(
    conn: AsyncConnection, user_id: int, provider: str, messages: Sequence[NewMessage]
) -> list[int]:
    """Insert the messages in order with one statement (so they are stored together even on an
    autocommit connection) and return their ids in the same order."""
    now = utcnow()
    return await _INSERT_MESSAGES.ids(
        conn, [message_row(user_id, provider, m, now) for m in messages]
    )


def message_row(user_id: int, provider: str, m: NewMessage, now: datetime) -> dict[str, Any]:
    """The column values of a new history row (a conversation adds its own two)."""
    return {"user_id": user_id, "provider": provider, "role": m.role, "content": m.content,
            "tokens_used": m.tokens_used, "interrupted": m.interrupted,
            "tokens_estimated": m.tokens_estimated, "model": m.model,
            "input_tokens": m.input_tokens, "output_tokens": m.output_tokens,
            "cost_usd": m.cost_usd, "cached_input_tokens": m.cached_input_tokens,
            "finish_reason": m.finish_reason, "created_at": now}


def history_item(row: ChatMessage) -> dict[str, Any]:
    """The contract's item; `interrupted` and `tokensEstimated` appear only when true."""
    item: dict[str, Any] = {
        "id": row.id,
        "role": row.role,
        "content": row.content,
        "tokensUsed": row.tokens_used,
        "createdAt": row.created_at,
    }
    if row.interrupted:
        item["interrupted"] = True
    if row.tokens_estimated:
        item["tokensEstimated"] = True
    return item


async def prune(conn: AsyncConnection, older_than_days: int) -> int:
    """Delete every message older than that many days; returns how many went. Conversations
    that can have lost some (those older than the cutoff) get their message count again."""
    cutoff = utcnow() - timedelta(days=older_than_days)
    result = await conn.execute(delete(ChatMessage).where(ChatMessage.created_at < cutoff))
    left = (select(func.count()).where(ChatMessage.conversation_id == Conversation.id,
                                       ChatMessage.role.in_(("user", "assistant")))
            .scalar_subquery())
    await conn.execute(update(Conversation).where(Conversation.created_at < cutoff)
                       .values(message_count=left))
    return int(result.rowcount or 0)  # type: ignore[attr-defined]
