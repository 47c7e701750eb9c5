"""The tables of the platform's plan and the service's own, as SQLAlchemy 2 models.

The migration in ``migrations/`` is the source of truth for the schema on disk (it adds the
foreign keys to ``users(id)`` when the auth service's table exists); these models are what the
code reads and writes.
"""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

from sqlalchemy import (
    BigInteger,
    Boolean,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    Numeric,
    String,
    Text,
    UniqueConstraint,
    and_,
    func,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeDecorator

# SQLite only auto-increments a column declared exactly INTEGER PRIMARY KEY.
BigId = BigInteger().with_variant(Integer(), "sqlite")


class UTCDateTime(TypeDecorator[datetime]):
    """Timestamps stored in UTC and always read back timezone-aware (SQLite drops the zone)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: object) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: object) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def utcnow() -> datetime:
    return datetime.now(UTC)


class Base(DeclarativeBase):
    pass


class LLMConfig(Base):
    __tablename__ = "llm_configs"
    __table_args__ = (UniqueConstraint("user_id", "provider", name="uq_llm_configs_user_provider"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    user_id: Mapped[int] = mapped_column(BigInteger, nullable=False)
    provider: Mapped[str] = mapped_column(String(32), nullable=False)
    api_key_encrypted: Mapped[str] = mapped_column(Text, nullable=False)
    # The masked form shown by GET /llm/configs, made when the key is saved, so listing never
    # decrypts.
    api_key_hint: Mapped[str] = mapped_column(String(16), nullable=False)
    model: Mapped[str] = mapped_column(String(100), nullable=False)
    temperature: Mapped[Decimal] = mapped_column(Numeric(3, 2), nullable=False)
    max_tokens: Mapped[int] = mapped_column(Integer, nullable=False)
    # One of the catalogue's regions of the vendor (a DashScope key works only in its own);
    # None: the vendor's default endpoint.
    region: Mapped[str | None] = mapped_column(String(32), nullable=True)
    # The default system prompt for this vendor (a conversation's own one wins); None: none.
    system_prompt: Mapped[str | None] = mapped_column(Text, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(
        UTCDateTime, nullable=False, default=utcnow, onupdate=utcnow
    )


class ChatMessage(Base):
    __tablename__ = "llm_chat_history"
    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    user_id: Mapped[int] = mapped_column(BigInteger, nullable=False)
    provider: Mapped[str] = mapped_column(String(32), nullable=False)
    role: Mapped[str] = mapped_column(String(16), nullable=False)
    content: Mapped[str] = mapped_column(Text, nullable=False)
    tokens_used: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False, default=utcnow)
    # A streamed reply cut short (client gone, vendor failed mid-stream).
    interrupted: Mapped[bool] = mapped_column(Boolean, nullable=False, default=False)
    # The vendor's stream gave no token counts: tokens_used is an estimate.
    tokens_estimated: Mapped[bool] = mapped_column(Boolean, nullable=False, default=False)
    # On replies: what the exchange cost (the user row keeps only its tokens_used).
    model: Mapped[str | None] = mapped_column(String(100), nullable=True)
    input_tokens: Mapped[int | None] = mapped_column(Integer, nullable=True)
    output_tokens: Mapped[int | None] = mapped_column(Integer, nullable=True)
    cost_usd: Mapped[Decimal | None] = mapped_column(Numeric(14, 6), nullable=True)
    # The part of input_tokens read from the vendor's cache (priced at the cached rate).
    cached_input_tokens: Mapped[int | None] = mapped_column(Integer, nullable=True)
    # "length" when the vendor cut the reply at maxTokens; None when it finished.
    finish_reason: Mapped[str | None] = mapped_column(String(16), nullable=True)
    # None: the provider's default thread (the old routes). Else a message of that conversation,
    # following `parent_id` (None: a first message); role "title" rows are a title call's usage.
    conversation_id: Mapped[int | None] = mapped_column(
        BigInteger, ForeignKey("llm_conversations.id", ondelete="CASCADE"), nullable=True
    )
    parent_id: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    # A fork's copy of that message: no vendor call of its own (usage counts the original).
    copied_from: Mapped[int | None] = mapped_column(BigInteger, nullable=True)


class Conversation(Base):
    """A saved conversation: a tree of messages (`llm_chat_history.parent_id`) whose branch
    ending at `active_leaf_id` is shown and sent; the newest message when that is None or gone."""

    __tablename__ = "llm_conversations"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    user_id: Mapped[int] = mapped_column(BigInteger, nullable=False)
    # What it started with; a message may be sent to another configured provider or model.
    provider: Mapped[str] = mapped_column(String(32), nullable=False)
    model: Mapped[str] = mapped_column(String(100), nullable=False)
    title: Mapped[str | None] = mapped_column(String(200), nullable=True)
    # "user" (set by the user), "auto" (made by the vendor), "fallback" (the first words of the
    # first message); None: no title yet.
    title_source: Mapped[str | None] = mapped_column(String(16), nullable=True)
    system_prompt: Mapped[str | None] = mapped_column(Text, nullable=True)
    pinned: Mapped[bool] = mapped_column(Boolean, nullable=False, default=False)
    archived: Mapped[bool] = mapped_column(Boolean, nullable=False, default=False)
    active_leaf_id: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    # Every stored message of every branch (the LLM_MAX_CONVERSATION_MESSAGES bound).
    message_count: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False, default=utcnow)
    last_message_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)


class BudgetUsage(Base):
    """A user's spend in a month (UTC) and what in-flight chats have reserved of it."""

    __tablename__ = "llm_budget_usage"

    user_id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    month: Mapped[str] = mapped_column(String(7), primary_key=True)
    used_tokens: Mapped[int] = mapped_column(BigInteger, nullable=False, default=0)
    used_cost_usd: Mapped[Decimal] = mapped_column(Numeric(14, 6), nullable=False, default=0)
    reserved_tokens: Mapped[int] = mapped_column(BigInteger, nullable=False, default=0)
    reserved_cost_usd: Mapped[Decimal] = mapped_column(Numeric(14, 6), nullable=False, default=0)


class BudgetReservation(Base):
    """A chat's reservation on its user's budget until it settles; past `expires_at` it is
    leaked (its chat never settled) and `budgets.reconcile` releases it."""

    __tablename__ = "llm_budget_reservations"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    user_id: Mapped[int] = mapped_column(BigInteger, nullable=False)
    month: Mapped[str] = mapped_column(String(7), nullable=False)
    tokens: Mapped[int] = mapped_column(BigInteger, nullable=False)
    cost_usd: Mapped[Decimal] = mapped_column(Numeric(14, 6), nullable=False)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False)


# The rows that stand for one paid vendor call (usage and budgets count these): replies and
# title calls, not a fork's copies.
BILLED_CALL = and_(ChatMessage.role.in_(("assistant", "title")), ChatMessage.copied_from.is_(None))

# Paging the default thread reads newest first; id breaks ties between rows written in the same
# instant. Partial: conversation messages are never read through it.
Index(
    "ix_llm_chat_history_user_provider_created",
    ChatMessage.user_id,
    ChatMessage.provider,
    ChatMessage.created_at.desc(),
    ChatMessage.id.desc(),
    postgresql_where=ChatMessage.conversation_id.is_(None),
    sqlite_where=ChatMessage.conversation_id.is_(None),
)
Index("ix_llm_chat_history_conversation", ChatMessage.conversation_id, ChatMessage.id)
# The conversation list: newest activity (the last message, else the creation) first.
CONVERSATION_ACTIVITY = func.coalesce(Conversation.last_message_at, Conversation.created_at)
Index("ix_llm_conversations_user_activity", Conversation.user_id, CONVERSATION_ACTIVITY.desc(),
      Conversation.id.desc())
Index("ix_llm_chat_history_user_created", ChatMessage.user_id, ChatMessage.created_at)
Index("ix_llm_chat_history_created", ChatMessage.created_at)
Index("ix_llm_budget_reservations_user_expires", BudgetReservation.user_id,
      BudgetReservation.expires_at)
