"""The configuration's default system prompt (issue 15): `llm_configs.system_prompt`, sent to the
vendor when neither the conversation nor its template has one; null: none.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("llm_configs") as batch:
        batch.add_column(sa.Column("system_prompt", sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("llm_configs") as batch:
        batch.drop_column("system_prompt")
