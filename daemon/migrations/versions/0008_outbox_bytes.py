"""outbox_bytes: a written mail's bytes live apart from its outbox row

SQLite rewrites a whole row on every UPDATE, blobs included: with the MIME bytes in
``outbox.raw`` each status change of a row (stored, claimed, sent, a retry) wrote them into the
WAL again (an UPDATE of a row holding 340 KB cost 4 ms, against 0.03 ms without; issue 15).
The bytes now go to ``outbox_bytes`` once, and the row keeps their ``size`` (NULL: not
written), which the claim budgets its reads with. Existing bytes are moved here, a chunk of
rows per statement and inside the database (no mail passes through Python); the downgrade
moves them back.

SQLite drops ``outbox.raw`` with its own ``ALTER TABLE ... DROP COLUMN`` (3.35+): a batch
migration would copy ``outbox`` and drop the original, which the foreign key from
``outbox_bytes`` forbids while ``PRAGMA foreign_keys`` is on.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

CHUNK = 200  # outbox rows per statement while moving bytes

_outbox = sa.table("outbox", sa.column("id", sa.Integer), sa.column("raw", sa.LargeBinary),
                   sa.column("size", sa.Integer))
_bytes = sa.table("outbox_bytes", sa.column("outbox_id", sa.Integer),
                  sa.column("raw", sa.LargeBinary))


def _chunks(bind: sa.Connection, written: sa.ColumnElement[bool]) -> list[tuple[int, int]]:
    """(after, last) id ranges of at most CHUNK outbox rows matching ``written``."""
    ranges: list[tuple[int, int]] = []
    after = 0
    while True:
        ids = bind.execute(sa.select(_outbox.c.id).where(written, _outbox.c.id > after)
                           .order_by(_outbox.c.id).limit(CHUNK)).scalars().all()
        if not ids:
            return ranges
        ranges.append((after, ids[-1]))
        after = ids[-1]


def upgrade() -> None:
    op.create_table(
        "outbox_bytes",
        sa.Column("outbox_id", sa.Integer(), nullable=False),
        sa.Column("raw", sa.LargeBinary(), nullable=False),
        sa.ForeignKeyConstraint(["outbox_id"], ["outbox.id"],
                                name=op.f("fk_outbox_bytes_outbox_id_outbox")),
        sa.PrimaryKeyConstraint("outbox_id", name=op.f("pk_outbox_bytes")),
    )
    with op.batch_alter_table("outbox") as batch:  # ADD COLUMN: no copy on SQLite either
        batch.add_column(sa.Column("size", sa.Integer(), nullable=True))
    bind = op.get_bind()
    for after, last in _chunks(bind, _outbox.c.raw.is_not(None)):
        in_chunk = sa.and_(_outbox.c.id > after, _outbox.c.id <= last,
                           _outbox.c.raw.is_not(None))
        bind.execute(_bytes.insert().from_select(
            ["outbox_id", "raw"], sa.select(_outbox.c.id, _outbox.c.raw).where(in_chunk)))
        bind.execute(_outbox.update().where(in_chunk)
                     .values(size=sa.func.length(_outbox.c.raw)))
    if bind.dialect.name == "sqlite":
        op.execute("ALTER TABLE outbox DROP COLUMN raw")
    else:
        op.drop_column("outbox", "raw")


def downgrade() -> None:
    with op.batch_alter_table("outbox") as batch:
        batch.add_column(sa.Column("raw", sa.LargeBinary(), nullable=True))
    bind = op.get_bind()
    for after, last in _chunks(bind, _outbox.c.size.is_not(None)):
        bind.execute(_outbox.update().where(
            _outbox.c.id > after, _outbox.c.id <= last, _outbox.c.size.is_not(None))
            .values(raw=sa.select(_bytes.c.raw).where(_bytes.c.outbox_id == _outbox.c.id)
                    .scalar_subquery()))
    op.drop_table("outbox_bytes")
    with op.batch_alter_table("outbox") as batch:
        batch.drop_column("size")
