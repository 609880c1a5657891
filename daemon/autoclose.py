"""Auto-close: a resolved ticket nobody answered for ``[tickets] auto_close_days`` is closed.

The resolution mail tells the requester that a reply reopens the ticket and that silence
closes it after that many days; this keeps the promise. Each closed ticket gets a ``status``
event (before/after) and a ``closed`` mail (``auto_closed = True``) through the same outbox as
every other mail. Time comes from the app's clock, so tests move it instead of waiting.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from sqlalchemy import ColumnElement, exists, func, select
from sqlalchemy.orm import Session

from daemon import tickets
from daemon.app import App
from daemon.intake.parsed import Address
from daemon.models import Event, Message, Ticket
from daemon.replies import kinds
from daemon.replies.notify import Notify, requester_locale

log = logging.getLogger("ticketd.autoclose")


def resolved_at() -> ColumnElement[datetime]:
    """SQL for when a ticket last became resolved: its last event that set the status to
    ``resolved``, else (no such event) its last update. Correlated to :class:`Ticket`."""
    last_resolution = (
        select(func.max(Event.at))
        .where(Event.ticket_id == Ticket.id,
               Event.after["status"].as_string() == "resolved")
        .correlate(Ticket).scalar_subquery())
    return func.coalesce(last_resolution, Ticket.updated_at)


def due(session: Session, now: datetime, days: int) -> list[Ticket]:
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


def close_due(app: App) -> list[str]:
    """Close every resolved ticket past the limit; returns their numbers."""
    days = app.config.tickets.auto_close_days
    now = app.clock.now()
    notify = Notify(app)
    closed: list[str] = []
    with app.ready_db().transaction() as session:
        for ticket in due(session, now, days):
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
