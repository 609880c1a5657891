"""The operator's desk: ticket commands given from the command line, and the process sweeps.

Each function is one transaction: find the ticket, run the command object (the same one a
handler's ``#command`` runs), queue the mails it implies, commit. A refused command raises
:class:`~daemon.errors.Refused` before anything is written.

:func:`sweep_process` is the process's periodic work: SLA-breach mails to team leads, the
need_info reminder and the close after twice the wait. ``ticketd sweep`` runs it once;
``ticketd run`` schedules it (under the sweep lease, one instance at a time).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from daemon import commands, sla, tickets
from daemon.app import App
from daemon.commands.base import Context
from daemon.errors import NotFound, Refused
from daemon.intents import MailIntent
from daemon.models import Ticket
from daemon.replies.notify import Notify
from daemon.states import Status
from daemon.workflow import Process

log = logging.getLogger("ticketd.desk")


def process_for(app: App, now: datetime | None = None) -> Process:
    return Process(app.config, app.directory, app.reader, now or app.clock.now(),
                   dialect=app.db.engine.dialect.name)


def actor_of(app: App, given: str | None) -> str:
    """``--as ADDR``: a handler, or (the default) the support address."""
    actor = (given or app.config.support.address).strip().lower()
    if actor in app.config.own_addresses or app.directory.is_handler(actor):
        return actor
    raise Refused(f"--as {actor}: not a handler (a member or lead of a [[teams]] entry) nor "
                  "the support address")


@dataclass(frozen=True)
class Done:
    """What an operator command did: the ticket afterwards and the mails it queued."""

    ticket: dict[str, Any]
    mails: list[str]


def run(app: App, number: str, steps: list[tuple[str, str]], *, actor: str | None) -> Done:
    """Apply ``steps`` (command name, argument) to ticket ``number``, all or nothing."""
    who = actor_of(app, actor)
    notify = Notify(app)
    zone = app.config.support.zone
    with app.ready_db().transaction() as session:
        ticket = _ticket(session, number)
        ctx = Context(process_for(app), session, who)
        intents: list[MailIntent] = []
        for name, arg in steps:
            intents += commands.apply_one(ctx, ticket, name, arg)
        rows = notify.deliver(session, ticket, intents)
        session.flush()
        shown = tickets.to_dict(ticket, full=False, zone=zone)
        return Done(shown, [f"{r.kind} to {', '.join(r.recipients)}" for r in rows])


def _ticket(session: Session, number: str) -> Ticket:
    try:
        return tickets.get(session, number)
    except NotFound as exc:
        raise Refused(str(exc)) from None


# ---------------------------------------------------------------------- the sweeps


@dataclass
class SweepReport:
    breaches: list[str] = field(default_factory=list)      # sla_breach mails sent
    reminders: list[str] = field(default_factory=list)     # need_info reminders
    closed: list[str] = field(default_factory=list)        # need_info tickets closed

    def as_dict(self) -> dict[str, list[str]]:
        return {"sla_breaches": self.breaches, "need_info_reminders": self.reminders,
                "need_info_closed": self.closed}


def sweep_process(app: App) -> SweepReport:
    """One pass of the process clock (idempotent: each mail goes once)."""
    now = app.clock.now()
    report = SweepReport()
    notify = Notify(app)
    process = process_for(app, now)
    wait = timedelta(hours=app.config.sla.need_info_reply_hours)
    with app.ready_db().transaction() as session:
        for breach in sla.breaches(session, now):
            if breach.notified:
                continue
            ticket = session.get(Ticket, breach.ticket_id)
            assert ticket is not None
            notify.deliver(session, ticket, process.breach(session, ticket))
            report.breaches.append(ticket.number)
        waiting = session.scalars(select(Ticket).where(
            Ticket.status == Status.NEED_INFO.value,
            Ticket.status_changed_at <= now - wait).order_by(Ticket.id))
        for ticket in waiting:
            since = ticket.status_changed_at
            assert since is not None
            if since <= now - 2 * wait and ticket.reminded_at is not None:
                hours = app.config.sla.need_info_reply_hours * 2
                notify.deliver(session, ticket, process.close(
                    session, ticket, actor=tickets.SYSTEM, auto=True,
                    why=f"closed: no answer to the request for information within {hours} h"))
                report.closed.append(ticket.number)
            elif ticket.reminded_at is None:
                notify.deliver(session, ticket, process.remind(session, ticket))
                report.reminders.append(ticket.number)
    for number in report.breaches:
        log.warning("SLA breach: %s has no handler past its assignment deadline", number)
    return report
