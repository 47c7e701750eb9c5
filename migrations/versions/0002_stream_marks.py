"""Streaming marks on history rows: `interrupted` (a reply cut short by a disconnect or a vendor
error mid-stream) and `tokens_estimated` (the vendor's stream gave no token counts).

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-25
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("llm_chat_history") as batch:
        batch.add_column(
            sa.Column("interrupted", sa.Boolean(), nullable=False, server_default=sa.false())
        )
        batch.add_column(
            sa.Column("tokens_estimated", sa.Boolean(), nullable=False, server_default=sa.false())
        )


def downgrade() -> None:
    with op.batch_alter_table("llm_chat_history") as batch:
        batch.drop_column("tokens_estimated")
        batch.drop_column("interrupted")
