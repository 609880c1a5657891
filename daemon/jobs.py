"""The periodic jobs over the whole site: SLA breaches, auto-close (reminders come next).

Why one module: every such job has the same shape (look at the tickets as of ``now``, change
some, queue the mail that implies, say which tickets it touched), the same schedule and the
same lease, so they are one tuple of functions with one signature (Mailman's
``pipelines/builtin.py`` shape) run by one :func:`sweep`::

    def job(app: App, now: datetime) -> list[str]     # the ticket numbers it acted on

Adding a job is writing that function and naming it in :data:`JOBS`. Each job runs in its own
transaction: one that fails is logged and reported, and the others still run. Time is the
``now`` handed in (the app's injected clock), so tests move a clock instead of waiting.

:func:`sweep` takes no lease: ``ticketd run`` calls it every ``SWEEP_INTERVAL`` seconds while
it holds the ``job:sweep`` lease (one instance of a site sweeps), and a one-shot command may
call it directly. Running it twice is harmless: a breach is recorded once, a ticket is closed
once.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import ColumnElement, exists, func, select
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

from daemon import sla, tickets
from daemon.app import App
from daemon.errors import TransientError
from daemon.intake.parsed import Address
from daemon.models import Event, Message, Ticket
from daemon.replies import kinds
from daemon.replies.notify import Notify, requester_locale

log = logging.getLogger("ticketd.jobs")

SWEEP_INTERVAL = 60        # seconds between sweeps in `ticketd run`
SWEEP_LEASE = "job:sla-sweep"  # the lease name predates the other jobs; kept for running sites
SLA_EVENT = "sla-breach"

Job = Callable[[App, datetime], list[str]]


@dataclass(frozen=True)
class JobReport:
    """What one job did: the tickets it acted on, or the error that stopped it."""

    name: str
    tickets: tuple[str, ...] = ()
    error: str | None = None


@dataclass(frozen=True)
class SweepReport:
    at: datetime
    jobs: tuple[JobReport, ...] = ()

    def done(self, name: str) -> tuple[str, ...]:
        """The tickets job ``name`` acted on (KeyError for a job that did not run)."""
        for job in self.jobs:
            if job.name == name:
                return job.tickets
        raise KeyError(name)

    @property
    def changed(self) -> bool:
        """Some job acted (and may have queued mail)."""
        return any(job.tickets for job in self.jobs)

    @property
    def failed(self) -> tuple[JobReport, ...]:
        return tuple(job for job in self.jobs if job.error is not None)


# ------------------------------------------------------------------ SLA breaches


def record_sla_breaches(app: App, now: datetime) -> list[str]:
    """Record an ``sla-breach`` event (once) on every open ticket past its assign deadline
    without a handler; returns their numbers."""
    zone = app.config.support.zone
    marked: list[str] = []
    with app.ready_db().transaction() as session:
        found = sla.breaches(session, now)
        if not found:
            return []
        done = set(session.scalars(select(Event.ticket_id).where(
            Event.action == SLA_EVENT, Event.ticket_id.in_([b.ticket_id for b in found]))))
        for breach in found:
            if breach.ticket_id in done:
                continue
            ticket = session.get(Ticket, breach.ticket_id)
            assert ticket is not None
            within = sla.assign_within(breach.priority)
            tickets.record(
                session, ticket, at=now, actor=tickets.SYSTEM, action=SLA_EVENT,
                detail=f"{breach.priority} ticket not assigned within "
                       f"{int(within.total_seconds() // 60)} min (deadline "
                       f"{breach.deadline.astimezone(zone):%Y-%m-%d %H:%M %Z})")
            marked.append(breach.number)
    for number in marked:
        log.warning("SLA breach: %s has no handler past its assign deadline", number)
    return marked


# ------------------------------------------------------------------ auto-close
#
# A resolved ticket nobody answered for ``[tickets] auto_close_days`` is closed. The
# resolution mail tells the requester that a reply reopens the ticket and that silence closes
# it after that many days; this keeps the promise. Each closed ticket gets a ``status`` event
# (before/after) and a ``closed`` mail (``auto_closed = True``) through the outbox.


def resolved_at() -> ColumnElement[datetime]:
    """SQL for when a ticket last became resolved: its last event that set the status to
    ``resolved``, else (no such event) its last update. Correlated to :class:`Ticket`."""
    last_resolution = (
        select(func.max(Event.at))
        .where(Event.ticket_id == Ticket.id,
               Event.after["status"].as_string() == "resolved")
        .correlate(Ticket).scalar_subquery())
    return func.coalesce(last_resolution, Ticket.updated_at)


def due_for_close(session: Session, now: datetime, days: int) -> list[Ticket]:
    """Resolved for ``days`` with no incoming mail since (even an untrusted one: a person
    should look at it before the ticket closes). One query, whatever the number of tickets."""
    limit = now - timedelta(days=days)
    since = resolved_at()
    answered = exists().where(Message.ticket_id == Ticket.id, Message.direction == "in",
                              Message.created_at > since)
    return list(session.scalars(
        select(Ticket).where(Ticket.status == "resolved", since <= limit, ~answered)
        .order_by(Ticket.id)))


def _resolution_text(session: Session, ticket: Ticket) -> str:
    last = session.scalars(select(Message).where(
        Message.ticket_id == ticket.id, Message.direction == "out",
        Message.kind == "resolution").order_by(Message.id.desc())).first()
    return last.body_text if last else ""


def _thread(session: Session, ticket: Ticket) -> tuple[str | None, list[str]]:
    """Reply to the requester's first mail, so the closing lands in the same conversation."""
    first = session.scalars(select(Message).where(
        Message.ticket_id == ticket.id, Message.direction == "in")
        .order_by(Message.id)).first()
    if first is None or not first.message_id:
        return None, []
    return first.message_id, [*first.references, first.message_id]


def close_resolved(app: App, now: datetime) -> list[str]:
    """Close every resolved ticket past the limit; returns their numbers."""
    days = app.config.tickets.auto_close_days
    notify = Notify(app)
    closed: list[str] = []
    with app.ready_db().transaction() as session:
        for ticket in due_for_close(session, now, days):
            tickets.change(session, ticket, at=now, actor=tickets.SYSTEM, action="status",
                           detail=f"closed automatically: no reply within {days} days of "
                                  "the resolution", status="closed")
            to = Address(ticket.requester_name, ticket.requester_email)
            if notify.may_auto_send(session, ticket, to.email):
                locale = requester_locale(ticket)
                notify.send(session, ticket, kinds.Closed(
                    number=ticket.number, subject=ticket.subject,
                    support_name=app.config.support.name,
                    support_address=app.config.support.address, locale=locale,
                    requester_name=ticket.requester_name, handler_name=ticket.handler or "",
                    resolution=_resolution_text(session, ticket), auto_closed=True,
                ), [to], *_thread(session, ticket))
            closed.append(ticket.number)
    for number in closed:
        log.info("closed %s automatically after %d days resolved", number, days)
    return closed


# ------------------------------------------------------------------ the sweep

JOBS: tuple[tuple[str, Job], ...] = (
    ("sla-breach", record_sla_breaches),
    ("auto-close", close_resolved),
)


def sweep(app: App, now: datetime | None = None,
          jobs: tuple[tuple[str, Job], ...] = JOBS) -> SweepReport:
    """Run every job once as of ``now`` (default: the app's clock), each in its own
    transaction; a job that fails is logged and reported, and the next one runs."""
    at = now or app.clock.now()
    reports: list[JobReport] = []
    for name, job in jobs:
        try:
            done = job(app, at)
        except (TransientError, OperationalError) as exc:
            # The database went away: one line, no traceback; the pool reconnects next time.
            why = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            log.warning("job %s: %s (next try at the next sweep)", name, why)
            reports.append(JobReport(name, error=why))
        except Exception as exc:
            log.exception("job %s failed (the other jobs still ran)", name)
            reports.append(JobReport(name, error=f"{type(exc).__name__}: {exc}"))
        else:
            reports.append(JobReport(name, tuple(done)))
    return SweepReport(at, tuple(reports))
