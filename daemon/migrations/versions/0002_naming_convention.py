"""naming convention on every constraint; CHECK constraints on priority, direction, outbox status

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-30

0001 left constraints with the database's own names (PostgreSQL: ``tickets_number_key``;
SQLite: none at all), which SQLite batch migrations cannot address. From here on every
constraint follows ``daemon.models.NAMING_CONVENTION``. This revision renames the existing ones
(PostgreSQL: RENAME CONSTRAINT; SQLite: each table is rebuilt with its constraints named) and
adds the first CHECK constraints.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

# The convention as it stood at this revision (a copy: models may change, this may not).
CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}
TABLES = ("leases", "mailbox_cursors", "quarantine", "suppressions", "ticket_counters",
          "tickets", "events", "intake_log", "messages", "outbox", "attachments")
CHECKS = {
    "tickets": [("priority", "priority IN ('P0', 'P1', 'P2', 'P3')")],
    "messages": [("direction", "direction IN ('in', 'out')")],
    "outbox": [("status", "status IN ('queued', 'sending', 'sent', 'failed')")],
}

_PG_CONSTRAINTS = """
SELECT c.conname, c.contype, t.relname, a.attname, rt.relname
FROM pg_constraint c
JOIN pg_class t ON t.oid = c.conrelid
JOIN pg_namespace n ON n.oid = t.relnamespace AND n.nspname = current_schema()
JOIN pg_attribute a ON a.attrelid = t.oid AND a.attnum = c.conkey[1]
LEFT JOIN pg_class rt ON rt.oid = c.confrelid
WHERE c.contype IN ('p', 'u', 'f')
"""


def _conventional(kind: str, table: str, column: str, referred: str | None) -> str:
    if kind == "p":
        return f"pk_{table}"
    if kind == "u":
        return f"uq_{table}_{column}"
    return f"fk_{table}_{column}_{referred}"


def upgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name == "postgresql":
        for name, kind, table, column, referred in bind.execute(sa.text(_PG_CONSTRAINTS)):
            if table not in TABLES:
                continue
            new = _conventional(kind, table, column, referred)
            if new != name:
                op.execute(f'ALTER TABLE "{table}" RENAME CONSTRAINT "{name}" TO "{new}"')
        for table, checks in CHECKS.items():
            for name, condition in checks:
                op.create_check_constraint(f"ck_{table}_{name}", table, condition)
        return
    # SQLite: rebuild each table, naming its (reflected, unnamed) constraints.
    for table in TABLES:
        with op.batch_alter_table(table, recreate="always",
                                  naming_convention=CONVENTION) as batch:
            for name, condition in CHECKS.get(table, ()):
                batch.create_check_constraint(f"ck_{table}_{name}", condition)


def downgrade() -> None:
    for table, checks in CHECKS.items():
        with op.batch_alter_table(table, naming_convention=CONVENTION) as batch:
            for name, _ in checks:
                batch.drop_constraint(f"ck_{table}_{name}", type_="check")
