"""The periodic jobs over the whole site: SLA breaches, need_info reminders and closes,
auto-close of resolved tickets.

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

from sqlalchemy import exists, select
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

from daemon import sla, tickets
from daemon.app import App
from daemon.errors import TransientError
from daemon.models import Message, Ticket
from daemon.replies.notify import Notify
from daemon.states import Status
from daemon.workflow import Process

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


# ------------------------------------------------------------------ the process clock
#
# Each job asks the workflow what a passing deadline implies (Process.breach, remind, close)
# and hands the mails to notify in the same transaction, as intake and commands do.


def _process(app: App, now: datetime) -> Process:
    return Process(app.config, app.directory, app.reader, now,
                   dialect=app.db.engine.dialect.name)


def sla_breaches(app: App, now: datetime) -> list[str]:
    """A ticket still without a main handler past ``assign_by``: one ``sla_breach`` mail to
    its team's lead (or the support desk) and an event, once per deadline."""
    notify = Notify(app)
    process = _process(app, now)
    marked: list[str] = []
    with app.ready_db().transaction() as session:
        for breach in sla.breaches(session, now):
            if breach.notified:
                continue
            ticket = session.get(Ticket, breach.ticket_id)
            assert ticket is not None
            notify.deliver(session, ticket, process.breach(session, ticket))
            marked.append(breach.number)
    for number in marked:
        log.warning("SLA breach: %s has no handler past its assignment deadline", number)
    return marked


def _waiting_for_info(session: Session, now: datetime, hours: int) -> list[Ticket]:
    return list(session.scalars(select(Ticket).where(
        Ticket.status == Status.NEED_INFO.value,
        Ticket.status_changed_at <= now - timedelta(hours=hours)).order_by(Ticket.id)))


def need_info_reminders(app: App, now: datetime) -> list[str]:
    """A need_info ticket unanswered for ``[sla] need_info_reply_hours``: one reminder."""
    notify = Notify(app)
    process = _process(app, now)
    hours = app.config.sla.need_info_reply_hours
    reminded: list[str] = []
    with app.ready_db().transaction() as session:
        for ticket in _waiting_for_info(session, now, hours):
            if ticket.reminded_at is None:
                notify.deliver(session, ticket, process.remind(session, ticket))
                reminded.append(ticket.number)
    return reminded


def need_info_close(app: App, now: datetime) -> list[str]:
    """Still unanswered at twice the wait, after the reminder: closed, with a closed mail."""
    notify = Notify(app)
    process = _process(app, now)
    hours = app.config.sla.need_info_reply_hours * 2
    closed: list[str] = []
    with app.ready_db().transaction() as session:
        for ticket in _waiting_for_info(session, now, hours):
            if ticket.reminded_at is None:
                continue  # the reminder comes first, whatever the clock says
            notify.deliver(session, ticket, process.close(
                session, ticket, actor=tickets.SYSTEM, auto=True,
                why=f"closed: no answer to the request for information within {hours} h"))
            closed.append(ticket.number)
    return closed


# ------------------------------------------------------------------ auto-close
#
# A resolved ticket nobody answered for ``[tickets] auto_close_days`` is closed. The
# resolution mail tells the requester that a reply reopens the ticket and that silence closes
# it after that many days; this keeps the promise.


def due_for_close(session: Session, now: datetime, days: int) -> list[Ticket]:
    """Resolved for ``days`` with no incoming mail since (even an untrusted one: a person
    should look at it before the ticket closes). One query, whatever the number of tickets."""
    limit = now - timedelta(days=days)
    answered = exists().where(Message.ticket_id == Ticket.id, Message.direction == "in",
                              Message.created_at > Ticket.resolved_at)
    return list(session.scalars(
        select(Ticket).where(Ticket.status == Status.RESOLVED.value,
                             Ticket.resolved_at <= limit, ~answered)
        .order_by(Ticket.id)))


def close_resolved(app: App, now: datetime) -> list[str]:
    """Close every resolved ticket past the limit; returns their numbers."""
    days = app.config.tickets.auto_close_days
    notify = Notify(app)
    process = _process(app, now)
    closed: list[str] = []
    with app.ready_db().transaction() as session:
        for ticket in due_for_close(session, now, days):
            notify.deliver(session, ticket, process.close(
                session, ticket, actor=tickets.SYSTEM, auto=True,
                why=f"closed automatically: no reply within {days} days of the resolution"))
            closed.append(ticket.number)
    for number in closed:
        log.info("closed %s automatically after %d days resolved", number, days)
    return closed


# ------------------------------------------------------------------ the sweep

JOBS: tuple[tuple[str, Job], ...] = (
    ("sla-breach", sla_breaches),
    ("need-info-reminder", need_info_reminders),
    ("need-info-close", need_info_close),
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
