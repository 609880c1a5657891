"""Service levels: how soon a ticket of each priority must be assigned to a handler.

The standard process: P0 within 15 minutes, P1 30 minutes, P2 1 hour, P3 2 hours. Time always
comes from the injected clock, never from the wall.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from daemon.models import Ticket

CLOSED_STATUSES = ("resolved", "closed")

ASSIGN_WITHIN: dict[str, timedelta] = {
    "P0": timedelta(minutes=15),
    "P1": timedelta(minutes=30),
    "P2": timedelta(hours=1),
    "P3": timedelta(hours=2),
}


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


def breaches(session: Session, now: datetime) -> list[Breach]:
    """Open tickets without a handler whose assign deadline has passed, oldest first."""
    rows = session.execute(
        select(Ticket.id, Ticket.number, Ticket.priority, Ticket.team, Ticket.created_at)
        .where(Ticket.status.not_in(CLOSED_STATUSES), Ticket.handler.is_(None))
        .order_by(Ticket.created_at))
    found = []
    for ticket_id, number, priority, team, created in rows:
        deadline = assign_deadline(priority, created)
        if deadline < now:
            found.append(Breach(ticket_id, number, priority, team, created, deadline))
    return found
