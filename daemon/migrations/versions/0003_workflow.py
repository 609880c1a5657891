"""the support process: handlers, deadlines, resolution, rating, round-robin state

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-30

Statuses become the standard process's (new, need_info, accepted, in_progress, resolved,
closed, reopened): the old "open" becomes "accepted" when a handler is set, else "new".
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}
STATUSES = ("new", "need_info", "accepted", "in_progress", "resolved", "closed", "reopened")


def upgrade() -> None:
    when = sa.DateTime(timezone=True)
    with op.batch_alter_table("tickets", naming_convention=CONVENTION) as batch:
        batch.add_column(sa.Column("co_handlers", sa.JSON(), nullable=False,
                                   server_default=sa.text("'[]'")))
        batch.add_column(sa.Column("assign_by", when, nullable=True))
        batch.add_column(sa.Column("assigned_at", when, nullable=True))
        batch.add_column(sa.Column("breach_notified_at", when, nullable=True))
        batch.add_column(sa.Column("status_changed_at", when, nullable=True))
        batch.add_column(sa.Column("reminded_at", when, nullable=True))
        batch.add_column(sa.Column("resolved_at", when, nullable=True))
        batch.add_column(sa.Column("closed_at", when, nullable=True))
        batch.add_column(sa.Column("resolution", sa.Text(), nullable=True))
        batch.add_column(sa.Column("rating", sa.Integer(), nullable=True))
        batch.create_index("ix_tickets_assign_by", ["assign_by"], unique=False)
    op.execute("UPDATE tickets SET status = CASE WHEN handler IS NULL THEN 'new' "
               "ELSE 'accepted' END WHERE status = 'open'")
    op.execute("UPDATE tickets SET status_changed_at = updated_at")
    op.execute("UPDATE tickets SET resolved_at = updated_at WHERE status = 'resolved'")
    op.execute("UPDATE tickets SET closed_at = updated_at WHERE status = 'closed'")
    with op.batch_alter_table("tickets", naming_convention=CONVENTION) as batch:
        batch.alter_column("co_handlers", server_default=None)
        batch.create_check_constraint(
            "ck_tickets_status", "status IN (" + ", ".join(f"'{s}'" for s in STATUSES) + ")")
    op.create_table(
        "team_rotation",
        sa.Column("team", sa.String(length=100), nullable=False),
        sa.Column("last_handler", sa.Text(), nullable=False),
        sa.Column("at", when, nullable=False),
        sa.PrimaryKeyConstraint("team", name="pk_team_rotation"),
    )


def downgrade() -> None:
    op.drop_table("team_rotation")
    with op.batch_alter_table("tickets", naming_convention=CONVENTION) as batch:
        batch.drop_constraint("ck_tickets_status", type_="check")
        batch.drop_index("ix_tickets_assign_by")
        for column in ("rating", "resolution", "closed_at", "resolved_at", "reminded_at",
                       "status_changed_at", "breach_notified_at", "assigned_at", "assign_by",
                       "co_handlers"):
            batch.drop_column(column)
