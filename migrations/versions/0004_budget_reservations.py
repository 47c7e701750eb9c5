"""Budget reservations with an expiry: a chat whose settlement never reached the database (an
outage mid-chat, a crash) leaks its reservation only until `expires_at`; `budgets.reconcile` then
gives it back.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    users = sa.inspect(op.get_bind()).has_table("users")
    op.create_table(
        "llm_budget_reservations",
        # INTEGER on SQLite, where only INTEGER PRIMARY KEY auto-increments.
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False,
                  autoincrement=True),
        sa.Column("user_id", sa.BigInteger(), nullable=False),
        sa.Column("month", sa.String(7), nullable=False),  # YYYY-MM, UTC
        sa.Column("tokens", sa.BigInteger(), nullable=False),
        sa.Column("cost_usd", sa.Numeric(14, 6), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_llm_budget_reservations"),
        *([sa.ForeignKeyConstraint(["user_id"], ["users.id"],
                                   name="fk_llm_budget_reservations_user",
                                   ondelete="CASCADE")] if users else []),
    )
    op.create_index("ix_llm_budget_reservations_user_expires", "llm_budget_reservations",
                    ["user_id", "expires_at"])


def downgrade() -> None:
    op.drop_index("ix_llm_budget_reservations_user_expires",
                  table_name="llm_budget_reservations")
    op.drop_table("llm_budget_reservations")
