"""outbox.verp_key: the random key of each outgoing mail's VERP tags ([mail] verp)

Rows queued before this migration keep NULL: they are sent with the plain support address
as their envelope sender, as before.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def upgrade() -> None:
    # A nullable column: a plain ALTER TABLE ADD COLUMN on both databases, no table copy.
    op.add_column("outbox", sa.Column("verp_key", sa.String(length=32), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("outbox", naming_convention=CONVENTION) as batch:
        batch.drop_column("verp_key")
