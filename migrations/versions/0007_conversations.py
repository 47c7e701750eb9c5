"""Conversations (issue 15): `llm_conversations`, and `conversation_id` / `parent_id` on history
rows.

A history row without a conversation belongs to the provider's default thread (the old routes);
a row with one is a message of that conversation, and `parent_id` is the message it follows (null
for a first message): editing or regenerating adds a sibling, so a conversation is a tree whose
`active_leaf_id` ends the branch shown and sent. `role = 'title'` rows are the title calls'
usage (never shown as messages); `copied_from` marks a fork's copy of a message (no vendor call of
its own, so usage and budgets skip it).

Foreign keys: `llm_conversations.user_id → users(id) ON DELETE CASCADE` when the auth service's
table exists (as in 0001), and `llm_chat_history.conversation_id → llm_conversations(id) ON DELETE
CASCADE`, so deleting a user or a conversation deletes its messages. `parent_id` and
`active_leaf_id` carry no foreign key: pruning old messages leaves a shorter branch (a message
whose parent is gone starts it), never a broken one.

The default thread's index is remade partial (`WHERE conversation_id IS NULL`), same name and
columns: the old routes read only those rows, and a user's conversation messages must not slow
their default history down.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-03
"""

from __future__ import annotations

import warnings

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
Timestamp = sa.DateTime(timezone=True)
DEFAULT_THREAD_INDEX = "ix_llm_chat_history_user_provider_created"
DEFAULT_THREAD_COLUMNS = ["user_id", "provider", sa.text("created_at DESC"), sa.text("id DESC")]


def _user_fk(table: str) -> list[sa.ForeignKeyConstraint]:
    if not sa.inspect(op.get_bind()).has_table("users"):
        return []
    return [
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name=f"fk_{table}_user", ondelete="CASCADE"
        )
    ]


def upgrade() -> None:
    op.create_table(
        "llm_conversations",
        sa.Column("id", BigId, primary_key=True, autoincrement=True),
        sa.Column("user_id", sa.BigInteger(), nullable=False),
        sa.Column("provider", sa.String(32), nullable=False),
        sa.Column("model", sa.String(100), nullable=False),
        sa.Column("title", sa.String(200), nullable=True),
        sa.Column("title_source", sa.String(16), nullable=True),
        sa.Column("system_prompt", sa.Text(), nullable=True),
        sa.Column("pinned", sa.Boolean(), nullable=False, server_default=sa.false()),
        sa.Column("archived", sa.Boolean(), nullable=False, server_default=sa.false()),
        sa.Column("active_leaf_id", sa.BigInteger(), nullable=True),
        sa.Column("message_count", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("created_at", Timestamp, nullable=False, server_default=sa.func.now()),
        sa.Column("updated_at", Timestamp, nullable=False, server_default=sa.func.now()),
        sa.Column("last_message_at", Timestamp, nullable=True),
        *_user_fk("llm_conversations"),
    )
    # The list: newest activity (the last message, else the creation) first, keyset-paged.
    op.create_index(
        "ix_llm_conversations_user_activity",
        "llm_conversations",
        ["user_id", sa.text("coalesce(last_message_at, created_at) DESC"), sa.text("id DESC")],
    )
    with op.batch_alter_table("llm_chat_history") as batch:
        batch.add_column(sa.Column("conversation_id", sa.BigInteger(), nullable=True))
        batch.add_column(sa.Column("parent_id", sa.BigInteger(), nullable=True))
        batch.add_column(sa.Column("copied_from", sa.BigInteger(), nullable=True))
        batch.create_foreign_key(
            "fk_llm_chat_history_conversation", "llm_conversations", ["conversation_id"], ["id"],
            ondelete="CASCADE",
        )
    op.create_index(
        "ix_llm_chat_history_conversation", "llm_chat_history", ["conversation_id", "id"]
    )
    op.drop_index(DEFAULT_THREAD_INDEX, table_name="llm_chat_history")
    op.create_index(
        DEFAULT_THREAD_INDEX, "llm_chat_history", DEFAULT_THREAD_COLUMNS,
        postgresql_where=sa.text("conversation_id IS NULL"),
        sqlite_where=sa.text("conversation_id IS NULL"),
    )


def downgrade() -> None:
    op.drop_index(DEFAULT_THREAD_INDEX, table_name="llm_chat_history")
    # The conversations' messages go with them: the old schema has no place for them.
    op.execute("DELETE FROM llm_chat_history WHERE conversation_id IS NOT NULL")
    op.create_index(DEFAULT_THREAD_INDEX, "llm_chat_history", DEFAULT_THREAD_COLUMNS)
    op.drop_index("ix_llm_chat_history_conversation", table_name="llm_chat_history")
    # SQLite's batch mode reflects the referenced table too, whose expression index it cannot.
    with warnings.catch_warnings(), op.batch_alter_table("llm_chat_history") as batch:
        warnings.filterwarnings("ignore", "Skipped unsupported reflection of expression-based")
        batch.drop_constraint("fk_llm_chat_history_conversation", type_="foreignkey")
        batch.drop_column("copied_from")
        batch.drop_column("parent_id")
        batch.drop_column("conversation_id")
    op.drop_index("ix_llm_conversations_user_activity", table_name="llm_conversations")
    op.drop_table("llm_conversations")
