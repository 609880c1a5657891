"""an index on tickets.created_at: the per-sender budget of new tickets counts the last hour

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-30
"""

from __future__ import annotations

from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_tickets_created_at", "tickets", ["created_at"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_tickets_created_at", table_name="tickets")
