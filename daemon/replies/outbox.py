"""The transactional outbox: mail is queued with the change that causes it, sent afterwards.

:func:`enqueue` adds the composed bytes in the caller's transaction: if that rolls back there
is no mail, if it commits the mail will go. :func:`flush` delivers what is due:

1. claim due rows in a short transaction (``FOR UPDATE SKIP LOCKED`` on PostgreSQL, so several
   instances never take the same row; SQLite serialises writers anyway), marking them
   ``sending`` with a lease;
2. send them over one transport connection;
3. record each outcome in its own transaction: ``sent``; a temporary failure goes back to
   ``queued`` with exponential backoff until ``max_attempts``; a permanent failure (5xx) is
   ``failed`` at once and logged on the ticket.

A process killed between 2 and 3 leaves the row ``sending`` with an expired lease: the next
flush sends the same bytes again, with the same Message-ID, so a recipient's mail client shows
one message, never a new one.
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from email.message import EmailMessage

from sqlalchemy import ColumnElement, and_, or_, select
from sqlalchemy.orm import Session

from daemon import tickets
from daemon.addresses import normalize
from daemon.app import App
from daemon.errors import TransportPermanent, TransportTemporary
from daemon.models import Message, OutboxMail, Ticket
from daemon.replies.compose import to_bytes
from daemon.replies.transports import Transport, from_config

log = logging.getLogger("ticketd.outbox")

MAX_BACKOFF = timedelta(hours=6)
STATUSES = ("queued", "sending", "sent", "failed")


@dataclass
class FlushReport:
    attempted: int = 0
    sent: int = 0
    retrying: int = 0
    failed: int = 0


def _pid_namespace() -> str:
    """This process's PID namespace (containers sharing a hostname have different ones)."""
    try:
        return os.readlink("/proc/self/ns/pid").removeprefix("pid:").strip("[]")
    except OSError:
        return "-"


def worker_id() -> str:
    """host:pid-namespace:pid: enough to tell, on the same host, whether a claimer is gone."""
    return f"{socket.gethostname()}:{_pid_namespace()}:{os.getpid()}"


def enqueue(session: Session, *, ticket: Ticket | None, kind: str, msg: EmailMessage,
            recipients: list[str], text: str, html: str | None, at: datetime,
            automatic: bool = True) -> OutboxMail:
    """Queue a composed mail and record it on the ticket as an outgoing message."""
    message_id = str(msg["Message-ID"]).strip().strip("<>")
    raw = to_bytes(msg)
    row = OutboxMail(ticket_id=ticket.id if ticket else None, kind=kind,
                     message_id=message_id, sender=_addr_spec(str(msg["From"])),
                     recipients=recipients, primary_recipient=normalize(recipients[0]),
                     subject=str(msg["Subject"]), raw=raw,
                     automatic=automatic, status="queued", attempts=0, next_attempt_at=at,
                     created_at=at)
    session.add(row)
    if ticket is not None:
        session.add(Message(
            ticket=ticket, direction="out", kind=kind, message_id=message_id,
            dedup_key=message_id, in_reply_to=str(msg["In-Reply-To"] or "").strip("<> ") or None,
            references=str(msg["References"] or "").replace("<", "").replace(">", "").split(),
            from_name=msg["From"].addresses[0].display_name if msg["From"].addresses else "",
            from_email=row.sender, to=[{"name": "", "email": r} for r in recipients], cc=[],
            subject=str(msg["Subject"]), date=at, body_text=text, body_html=html, new_text=text,
            quoted_text="", raw=None, raw_sha256=None, origin=f"outbox:{kind}", trusted=True,
            created_at=at))
    return row


def _addr_spec(header: str) -> str:
    from email.utils import parseaddr

    return parseaddr(header)[1]


def _due(now: datetime, force: bool) -> ColumnElement[bool]:
    queued = OutboxMail.status == "queued"
    return or_(
        queued if force else and_(queued, OutboxMail.next_attempt_at <= now),
        and_(OutboxMail.status == "sending", OutboxMail.claimed_until < now),
    )


def _claimer_is_dead(claimed_by: str | None) -> bool:
    """A claim by a process of this host and PID namespace that no longer exists (killed
    mid-send). Claims from anywhere else are left to expire after [smtp] claim_seconds."""
    where, _, pid = (claimed_by or "").rpartition(":")
    if where != f"{socket.gethostname()}:{_pid_namespace()}" or not pid.isdigit() \
            or int(pid) == os.getpid():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


def _claim(app: App, worker: str, limit: int,
           force: bool = False) -> list[tuple[int, str, list[str], bytes]]:
    now = app.clock.now()
    with app.ready_db().transaction() as session:
        stmt = select(OutboxMail).where(_due(now, force)).order_by(OutboxMail.id).limit(limit)
        if not app.db.is_sqlite:
            stmt = stmt.with_for_update(skip_locked=True)
        rows = list(session.scalars(stmt))
        if len(rows) < limit:
            orphans = select(OutboxMail).where(
                OutboxMail.status == "sending", OutboxMail.claimed_until >= now)
            if not app.db.is_sqlite:
                orphans = orphans.with_for_update(skip_locked=True)
            rows += [r for r in session.scalars(orphans) if _claimer_is_dead(r.claimed_by)]
        for row in list(rows):
            if row.status == "sending" and row.attempts >= app.config.smtp.max_attempts:
                # Crashed mid-send every time: stop trying rather than crash forever.
                row.status, row.claimed_by, row.claimed_until = "failed", None, None
                row.last_error = f"claim expired mid-send {row.attempts} times; gave up"
                log.error("outbox %s (%s): %s", row.id, row.message_id, row.last_error)
                rows.remove(row)
                continue
            if row.status == "sending":
                log.warning("outbox %s: claim by %s expired mid-send; sending again with the "
                            "same Message-ID %s", row.id, row.claimed_by, row.message_id)
            row.status = "sending"
            row.claimed_by = worker
            row.claimed_until = now + timedelta(seconds=app.config.smtp.claim_seconds)
            row.attempts += 1
        return [(r.id, r.sender, list(r.recipients), r.raw) for r in rows]


def _finish(app: App, row_id: int, *, error: Exception | None = None,
            refused: dict[str, str] | None = None, release: bool = False) -> str:
    """Record one outcome; returns the row's new status."""
    now = app.clock.now()
    cfg = app.config.smtp
    with app.db.transaction() as session:
        row = session.get(OutboxMail, row_id)
        assert row is not None
        row.claimed_by = None
        row.claimed_until = None
        ticket = session.get(Ticket, row.ticket_id) if row.ticket_id else None
        if release:  # never tried: the connection failed before this one's turn
            row.status, row.attempts = "queued", max(0, row.attempts - 1)
            return row.status
        if error is None:
            row.status, row.sent_at, row.last_error = "sent", now, None
            log.info("sent %s %s to %s", row.kind, row.message_id, ", ".join(row.recipients))
            if refused and ticket is not None:
                tickets.record(session, ticket, at=now, actor=tickets.SYSTEM,
                               action="delivery-failed",
                               detail=f"{row.kind} mail refused for " + "; ".join(
                                   f"{k}: {v}" for k, v in refused.items()))
            return row.status
        row.last_error = str(error)
        if isinstance(error, TransportTemporary) and row.attempts < cfg.max_attempts:
            delay = min(timedelta(seconds=cfg.retry_base * 2 ** (row.attempts - 1)), MAX_BACKOFF)
            row.status, row.next_attempt_at = "queued", now + delay
            log.warning("outbox %s (%s): attempt %d failed, retry in %s: %s", row.id,
                        row.message_id, row.attempts, delay, error)
            return row.status
        row.status = "failed"
        why = "permanent failure" if isinstance(error, TransportPermanent) else (
            f"gave up after {row.attempts} attempts")
        log.error("outbox %s (%s) failed: %s: %s", row.id, row.message_id, why, error)
        if ticket is not None:
            tickets.record(session, ticket, at=now, actor=tickets.SYSTEM,
                           action="delivery-failed",
                           detail=f"{row.kind} mail to {', '.join(row.recipients)}: {why}: "
                                  f"{error}")
        return row.status


def flush(app: App, transport: Transport | None = None, *, limit: int | None = None,
          force: bool = False, stop: Callable[[], bool] | None = None) -> FlushReport:
    """Send every due mail now (``force``: ignore retry backoff); stops early when the server
    cannot be reached, or between batches when ``stop()`` says so."""
    report = FlushReport()
    worker = worker_id()
    batch_size = limit or app.config.smtp.batch_size
    transport = transport or from_config(app.config.smtp)
    while True:
        claimed = _claim(app, worker, batch_size, force)
        if not claimed:
            return report
        unreachable = False
        with transport:
            for index, (row_id, sender, recipients, raw) in enumerate(claimed):
                report.attempted += 1
                try:
                    refused = transport.send(sender, recipients, raw)
                except (TransportTemporary, TransportPermanent) as exc:
                    status = _finish(app, row_id, error=exc)
                except Exception as exc:  # one unsendable mail must never block the queue
                    log.exception("outbox %s: unexpected error while sending", row_id)
                    status = _finish(app, row_id, error=TransportPermanent(
                        f"cannot send: {type(exc).__name__}: {exc}"))
                    if isinstance(exc, TransportTemporary):
                        # The server is down or busy: give the rest of the batch back untried.
                        for rest in claimed[index + 1:]:
                            _finish(app, rest[0], release=True)
                        unreachable = True
                else:
                    status = _finish(app, row_id, refused=refused)
                report.sent += status == "sent"
                report.retrying += status == "queued"
                report.failed += status == "failed"
                if unreachable:
                    break
        if unreachable or len(claimed) < batch_size or (stop is not None and stop()):
            return report


@dataclass(frozen=True)
class OutboxEntry:
    id: int
    kind: str
    number: str | None
    message_id: str
    recipients: list[str]
    subject: str
    status: str
    attempts: int
    next_attempt_at: datetime
    last_error: str | None
    created_at: datetime
    sent_at: datetime | None


def entries(app: App, statuses: tuple[str, ...] = ("queued", "sending", "failed")
            ) -> list[OutboxEntry]:
    with app.ready_db().transaction() as session:
        rows = session.execute(
            select(OutboxMail, Ticket.number).outerjoin(Ticket, Ticket.id == OutboxMail.ticket_id)
            .where(OutboxMail.status.in_(statuses)).order_by(OutboxMail.id))
        return [OutboxEntry(r.id, r.kind, number, r.message_id, list(r.recipients), r.subject,
                            r.status, r.attempts, r.next_attempt_at, r.last_error, r.created_at,
                            r.sent_at) for r, number in rows]
