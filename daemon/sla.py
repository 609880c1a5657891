"""Service levels: how soon a ticket must be assigned, and which tickets are past it.

The standard process: P0 within 15 minutes, P1 30 minutes, P2 1 hour, P3 2 hours (``[sla]``
``assign_p0`` .. ``assign_p3``). The deadline is stored on the ticket (``assign_by``, indexed)
when it opens and recomputed when its priority changes, so finding breaches is one indexed
query. Time always comes from the injected clock, never from the wall.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from daemon.models import Ticket
from daemon.states import Status

CLOSED_STATUSES = (Status.RESOLVED.value, Status.CLOSED.value)

ASSIGN_WITHIN: dict[str, timedelta] = {
    "P0": timedelta(minutes=15),
    "P1": timedelta(minutes=30),
    "P2": timedelta(hours=1),
    "P3": timedelta(hours=2),
}

# Waiting for a main handler: a ticket held for the requester's details (need_info) is not.
UNASSIGNED_STATES = (Status.NEW.value, Status.REOPENED.value)


def assign_within(priority: str) -> timedelta:
    return ASSIGN_WITHIN.get(priority, ASSIGN_WITHIN["P2"])


def assign_deadline(priority: str, opened_at: datetime) -> datetime:
    return opened_at + assign_within(priority)


@dataclass(frozen=True)
class Breach:
    ticket_id: int
    number: str
    priority: str
    team: str | None
    created_at: datetime
    deadline: datetime
    notified: bool      # the sla_breach mail for this deadline has gone


def breaches(session: Session, now: datetime) -> list[Breach]:
    """Tickets without a main handler whose assignment deadline has passed, oldest first."""
    rows = session.execute(
        select(Ticket.id, Ticket.number, Ticket.priority, Ticket.team, Ticket.created_at,
               Ticket.assign_by, Ticket.breach_notified_at)
        .where(Ticket.status.in_(UNASSIGNED_STATES), Ticket.handler.is_(None),
               Ticket.assign_by.is_not(None), Ticket.assign_by <= now)
        .order_by(Ticket.assign_by))
    return [Breach(tid, number, priority, team, created, deadline, notified is not None)
            for tid, number, priority, team, created, deadline, notified in rows
            if deadline is not None]
