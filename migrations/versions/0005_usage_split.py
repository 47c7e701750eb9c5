"""The usage split on reply rows (issue 12): `cached_input_tokens` (the part of input_tokens read
from the vendor's cache, priced at the cached rate) and `finish_reason` ("length" when the vendor
cut the reply at maxTokens; null for a reply that finished, and on rows from before); and the
configuration's `region` (from the catalogue's list for the vendor; null: the default endpoint).

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("llm_configs") as batch:
        batch.add_column(sa.Column("region", sa.String(32), nullable=True))
    with op.batch_alter_table("llm_chat_history") as batch:
        batch.add_column(sa.Column("cached_input_tokens", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("finish_reason", sa.String(16), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("llm_chat_history") as batch:
        batch.drop_column("finish_reason")
        batch.drop_column("cached_input_tokens")
    with op.batch_alter_table("llm_configs") as batch:
        batch.drop_column("region")
