"""outbox rows hold what their mail is written from; the bytes are written at send time

Issue 15: rendering and composing inside the intake transaction cost a third of intake. A row
now stores the kind's variables, locale, sender name, To/Cc, thread and attachment ids, and
``raw`` is filled when the mail is first sent. Rows queued before this migration keep their
bytes and no draft: they are sent as they are. (0005 is the VERP key, from a parallel branch.)

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

_TEXT = ("sender_name", "in_reply_to")
_JSON = ("variables", "to_addresses", "cc_addresses", "thread_references", "attachment_ids")


def upgrade() -> None:
    with op.batch_alter_table("outbox") as batch:
        batch.alter_column("raw", existing_type=sa.LargeBinary(), nullable=True)
        batch.add_column(sa.Column("locale", sa.String(35), nullable=True))
        for name in _TEXT:
            batch.add_column(sa.Column(name, sa.Text(), nullable=True))
        for name in _JSON:
            batch.add_column(sa.Column(name, sa.JSON(), nullable=True))


def downgrade() -> None:
    # Older code cannot send a row without bytes: refuse rather than drop queued mail.
    waiting = op.get_bind().execute(sa.text("SELECT count(*) FROM outbox WHERE raw IS NULL"))
    if waiting.scalar_one():
        raise RuntimeError("outbox rows are not written yet: run `ticketd outbox flush` "
                           "before downgrading below 0006")
    with op.batch_alter_table("outbox") as batch:
        for name in ("locale", *_TEXT, *_JSON):
            batch.drop_column(name)
        batch.alter_column("raw", existing_type=sa.LargeBinary(), nullable=False)
