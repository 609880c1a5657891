"""messages.insert_sentinel, outbox.insert_sentinel: let SQLite batch a flush's INSERTs

An intake flush writes several rows of each of these tables (a new ticket's message and the
copies of its mails; its acceptance and assigned mails). The ORM needs to match the ids that
INSERT ... RETURNING hands back to its rows; PostgreSQL guarantees their order, SQLite does
not, so without a column to match them by SQLAlchemy sends SQLite one INSERT per row. The
column holds a per-statement counter while a row is inserted and nothing else reads it.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-09
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

TABLES = ("messages", "outbox")


def upgrade() -> None:
    # Nullable, no default: a plain ALTER TABLE ADD COLUMN on both databases, no table copy.
    for table in TABLES:
        op.add_column(table, sa.Column("insert_sentinel", sa.Integer(), nullable=True))


def downgrade() -> None:
    for table in TABLES:
        with op.batch_alter_table(table, naming_convention=CONVENTION) as batch:
            batch.drop_column("insert_sentinel")
