"""Initial schema: llm_configs and llm_chat_history.

The foreign keys to the auth service's ``users(id) ON DELETE CASCADE`` are created only when a
``users`` table exists in the same database at migration time; without it the service runs
standalone.

Revision ID: 0001
Revises:
Create Date: 2026-11-25
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
Timestamp = sa.DateTime(timezone=True)


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
        "llm_configs",
        sa.Column("id", BigId, primary_key=True, autoincrement=True),
        sa.Column("user_id", sa.BigInteger(), nullable=False),
        sa.Column("provider", sa.String(32), nullable=False),
        sa.Column("api_key_encrypted", sa.Text(), nullable=False),
        sa.Column("api_key_hint", sa.String(16), nullable=False),
        sa.Column("model", sa.String(100), nullable=False),
        sa.Column("temperature", sa.Numeric(3, 2), nullable=False, server_default="0.7"),
        sa.Column("max_tokens", sa.Integer(), nullable=False, server_default="2048"),
        sa.Column("created_at", Timestamp, nullable=False, server_default=sa.func.now()),
        sa.Column("updated_at", Timestamp, nullable=False, server_default=sa.func.now()),
        sa.UniqueConstraint("user_id", "provider", name="uq_llm_configs_user_provider"),
        *_user_fk("llm_configs"),
    )
    op.create_table(
        "llm_chat_history",
        sa.Column("id", BigId, primary_key=True, autoincrement=True),
        sa.Column("user_id", sa.BigInteger(), nullable=False),
        sa.Column("provider", sa.String(32), nullable=False),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("content", sa.Text(), nullable=False),
        sa.Column("tokens_used", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("created_at", Timestamp, nullable=False, server_default=sa.func.now()),
        *_user_fk("llm_chat_history"),
    )
    op.create_index(
        "ix_llm_chat_history_user_provider_created",
        "llm_chat_history",
        ["user_id", "provider", sa.text("created_at DESC"), sa.text("id DESC")],
    )


def downgrade() -> None:
    op.drop_index("ix_llm_chat_history_user_provider_created", table_name="llm_chat_history")
    op.drop_table("llm_chat_history")
    op.drop_table("llm_configs")
