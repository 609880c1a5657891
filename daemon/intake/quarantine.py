"""Quarantined mail: list it, and release it back into intake once the cause is fixed.

The pipeline writes quarantine rows (raw bytes + reason); this module is what an operator uses
afterwards (Mailman's ``unshunt``). Releasing forgets the quarantine's dedup record and runs the
raw bytes through intake again; if it fails again it is quarantined again, with the new reason.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import delete, select

from daemon.app import App
from daemon.errors import NotFound
from daemon.intake.pipeline import Intake
from daemon.intake.sources import RawMail
from daemon.models import IntakeRecord, Quarantined
from daemon.outcomes import IntakeResult


@dataclass(frozen=True)
class QuarantineEntry:
    id: int
    at: datetime
    reason: str
    origin: str
    message_id: str | None
    size: int
    released_at: datetime | None


def entries(app: App, include_released: bool = False) -> list[QuarantineEntry]:
    with app.ready_db().transaction() as session:
        stmt = select(Quarantined).order_by(Quarantined.id)
        if not include_released:
            stmt = stmt.where(Quarantined.released_at.is_(None))
        return [QuarantineEntry(q.id, q.at, q.reason, q.origin, q.message_id, len(q.raw),
                                q.released_at) for q in session.scalars(stmt)]


def raw_of(app: App, entry_id: int) -> bytes:
    with app.ready_db().transaction() as session:
        row = session.get(Quarantined, entry_id)
        if row is None:
            raise NotFound(f"quarantine entry {entry_id}: no such entry")
        return row.raw


def release(app: App, entry_id: int, intake: Intake) -> IntakeResult:
    """Run a quarantined message through intake again."""
    with app.ready_db().transaction() as session:
        row = session.get(Quarantined, entry_id)
        if row is None or row.released_at is not None:
            raise NotFound(f"quarantine entry {entry_id}: no such entry awaiting release")
        raw = RawMail(row.raw, f"quarantine:{row.id} ({row.origin})")
        forgotten = list(session.scalars(select(IntakeRecord).where(
            IntakeRecord.dedup_key == f"sha256:{row.raw_sha256}",
            IntakeRecord.action == "quarantined")))
        kept = [_copy_record(r) for r in forgotten]
        session.execute(delete(IntakeRecord).where(
            IntakeRecord.id.in_([r.id for r in forgotten])))
        row.released_at = app.clock.now()
    try:
        return intake.ingest(raw)
    except BaseException:
        # Intake could not even quarantine it again (database gone): undo the release, so the
        # entry stays listed and can be released later.
        with app.ready_db().transaction() as session:
            again = session.get(Quarantined, entry_id)
            if again is not None:
                again.released_at = None
            session.add_all(kept)
        raise


def _copy_record(record: IntakeRecord) -> IntakeRecord:
    return IntakeRecord(dedup_key=record.dedup_key, message_id=record.message_id,
                        raw_sha256=record.raw_sha256, body_sha256=record.body_sha256,
                        action=record.action, reason=record.reason, ticket_id=record.ticket_id,
                        origin=record.origin, at=record.at)
