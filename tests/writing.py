"""Outgoing mail is written at send time; tests that read a queued mail's bytes write it first.

One helper instead of a flush in every test: it writes (renders and composes) every queued
mail and stores its bytes exactly as a flush does just before sending, and sends nothing, so a
test still sees the row ``queued`` and can then read its bytes (:func:`stored_bytes`: they
live in ``outbox_bytes``, apart from the row).
"""

from __future__ import annotations

from sqlalchemy import select

from daemon.app import App
from daemon.models import OutboxBytes, OutboxMail
from daemon.replies import outbox


def write_queued(app: App) -> int:
    """Write every queued mail not written yet; returns how many were written."""
    return outbox.write_pending(app)


def stored_bytes(app: App) -> dict[int, bytes]:
    """The stored bytes of every written mail by outbox row id (nothing is written here)."""
    with app.db.transaction() as s:
        return {row_id: bytes(raw) for row_id, raw in s.execute(
            select(OutboxBytes.outbox_id, OutboxBytes.raw).order_by(OutboxBytes.outbox_id))}


def raw_mails(app: App, kind: str | None = None) -> list[bytes]:
    """The bytes of every queued or sent mail (of ``kind``), oldest first, written first."""
    write_queued(app)
    with app.db.transaction() as s:
        stmt = select(OutboxBytes.raw).join(
            OutboxMail, OutboxMail.id == OutboxBytes.outbox_id).order_by(OutboxMail.id)
        if kind is not None:
            stmt = stmt.where(OutboxMail.kind == kind)
        return [bytes(raw) for raw in s.scalars(stmt)]
