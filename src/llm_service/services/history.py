"""Chat history: paging, clearing, the context for the next chat, and storing an exchange."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import delete, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from llm_service.db.models import ChatMessage, utcnow


@dataclass(frozen=True, slots=True)
class NewMessage:
    role: str  # "user" or "assistant"
    content: str
    tokens_used: int


def _of(user_id: int, provider: str) -> tuple[Any, ...]:
    return (ChatMessage.user_id == user_id, ChatMessage.provider == provider)


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


async def recent(
    session: AsyncSession, user_id: int, provider: str, count: int
) -> list[ChatMessage]:
    """The newest `count` messages, oldest first: the context of the next chat."""
    if count <= 0:
        return []
    return await _newest(session, user_id, provider, limit=count, offset=0)


async def clear(session: AsyncSession, user_id: int, provider: str) -> int:
    result = await session.execute(delete(ChatMessage).where(*_of(user_id, provider)))
    return int(result.rowcount or 0)  # type: ignore[attr-defined]


async def add_messages(
    session: AsyncSession, user_id: int, provider: str, messages: Sequence[NewMessage]
) -> list[ChatMessage]:
    """Add messages in order (the caller's transaction stores them together)."""
    now = utcnow()
    rows = [
        ChatMessage(
            user_id=user_id,
            provider=provider,
            role=message.role,
            content=message.content,
            tokens_used=message.tokens_used,
            created_at=now,
        )
        for message in messages
    ]
    session.add_all(rows)
    await session.flush()
    return rows


def history_item(row: ChatMessage) -> dict[str, Any]:
    return {
        "id": row.id,
        "role": row.role,
        "content": row.content,
        "tokensUsed": row.tokens_used,
        "createdAt": row.created_at,
    }
