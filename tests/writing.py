"""Outgoing mail is written at send time; tests that read a queued mail's bytes write it first.

One helper instead of a flush in every test: it writes (renders and composes) every queued
mail and stores its bytes on the row exactly as a flush does just before sending, and sends
nothing, so a test still sees the row ``queued`` and can then read ``OutboxMail.raw``.
"""

from __future__ import annotations

from sqlalchemy import select

from daemon.app import App
from daemon.models import OutboxMail
from daemon.replies import outbox


def write_queued(app: App) -> int:
    """Write every queued mail not written yet; returns how many were written."""
    return outbox.write_pending(app)


def raw_mails(app: App, kind: str | None = None) -> list[bytes]:
    """The bytes of every queued or sent mail (of ``kind``), oldest first, written first."""
    write_queued(app)
    with app.db.transaction() as s:
        stmt = select(OutboxMail.raw).order_by(OutboxMail.id)
        if kind is not None:
            stmt = stmt.where(OutboxMail.kind == kind)
        return [bytes(raw) for raw in s.scalars(stmt) if raw is not None]
