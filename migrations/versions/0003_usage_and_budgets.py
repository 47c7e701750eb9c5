"""Usage and budgets: each stored reply records its model, input and output tokens and estimated
cost; `llm_budget_usage` holds each user's monthly spend and in-flight reservations, so a budget
holds across concurrent requests and replicas.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-25
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

Money = sa.Numeric(14, 6)


def upgrade() -> None:
    with op.batch_alter_table("llm_chat_history") as batch:
        batch.add_column(sa.Column("model", sa.String(100), nullable=True))
        batch.add_column(sa.Column("input_tokens", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("output_tokens", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("cost_usd", Money, nullable=True))
    # Usage queries read a user's replies by time, across providers.
    op.create_index(
        "ix_llm_chat_history_user_created", "llm_chat_history", ["user_id", "created_at"]
    )
    op.create_index("ix_llm_chat_history_created", "llm_chat_history", ["created_at"])
    users = sa.inspect(op.get_bind()).has_table("users")
    op.create_table(
        "llm_budget_usage",
        sa.Column("user_id", sa.BigInteger(), nullable=False),
        sa.Column("month", sa.String(7), nullable=False),  # YYYY-MM, UTC
        sa.Column("used_tokens", sa.BigInteger(), nullable=False, server_default="0"),
        sa.Column("used_cost_usd", Money, nullable=False, server_default="0"),
        sa.Column("reserved_tokens", sa.BigInteger(), nullable=False, server_default="0"),
        sa.Column("reserved_cost_usd", Money, nullable=False, server_default="0"),
        sa.PrimaryKeyConstraint("user_id", "month", name="pk_llm_budget_usage"),
        *([sa.ForeignKeyConstraint(["user_id"], ["users.id"], name="fk_llm_budget_usage_user",
                                   ondelete="CASCADE")] if users else []),
    )


def downgrade() -> None:
    op.drop_table("llm_budget_usage")
    op.drop_index("ix_llm_chat_history_created", table_name="llm_chat_history")
    op.drop_index("ix_llm_chat_history_user_created", table_name="llm_chat_history")
    with op.batch_alter_table("llm_chat_history") as batch:
        batch.drop_column("cost_usd")
        batch.drop_column("output_tokens")
        batch.drop_column("input_tokens")
        batch.drop_column("model")
