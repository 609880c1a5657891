"""Which handler of a team gets a new ticket: ``round_robin`` or ``least_open``.

Deciding only, plus the one row round robin needs (``team_rotation``: who got the team's last
ticket), written in the caller's transaction. On PostgreSQL that row is locked while a choice is
made, so two instances assigning at once still take turns. The lock lasts until the
transaction ends, so within one transaction (an intake batch) the row is read and locked once
and kept (``session.info``); any rollback, a message's savepoint included (which releases locks
taken inside it), forgets it, and the next choice reads and locks it again.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import event, func, select
from sqlalchemy.orm import Session, SessionTransaction

from daemon.addresses import Address
from daemon.directory import Team
from daemon.models import TeamRotation, Ticket
from daemon.states import WORKING_STATES


@dataclass(frozen=True)
class Assignment:
    team: str
    handler: Address | None    # None: the team has no members; the lead assigns by hand
    why: str


def choose(session: Session, team: Team, at: datetime, *, dialect: str) -> Assignment:
    """Pick the main handler for a new ticket of ``team`` and remember the turn."""
    if not team.members:
        return Assignment(team.name, None, f"team {team.name} has no members: waiting for "
                                           "its lead to assign")
    if team.assign == "least_open":
        return _least_open(session, team)
    return _round_robin(session, team, at, dialect)


def _least_open(session: Session, team: Team) -> Assignment:
    emails = [m.email for m in team.members]
    counts = dict(session.execute(
        select(Ticket.handler, func.count()).where(
            Ticket.handler.in_(emails), Ticket.status.in_([s.value for s in WORKING_STATES]))
        .group_by(Ticket.handler)).all())
    best = min(team.members, key=lambda m: (counts.get(m.email, 0), emails.index(m.email)))
    return Assignment(team.name, best, f"least_open: {best.email} holds "
                                       f"{counts.get(best.email, 0)} open tickets")


_KEY = "ticketd.rotation"


def _rotation(session: Session, team: str, dialect: str) -> TeamRotation | None:
    """The team's row, read (and on PostgreSQL locked) once per transaction."""
    current = session.get_transaction()
    kept: tuple[SessionTransaction | None, dict[str, TeamRotation | None]] | None = \
        session.info.get(_KEY)
    if kept is None or kept[0] is not current:
        kept = (current, {})
        session.info[_KEY] = kept
    rows = kept[1]
    if team not in rows:
        stmt = select(TeamRotation).where(TeamRotation.team == team)
        if dialect != "sqlite":
            stmt = stmt.with_for_update()
        rows[team] = session.scalars(stmt).first()
    return rows[team]


@event.listens_for(Session, "after_soft_rollback")
def _after_rollback(session: Session, _previous: Any) -> None:
    session.info.pop(_KEY, None)


def _round_robin(session: Session, team: Team, at: datetime, dialect: str) -> Assignment:
    row = _rotation(session, team.name, dialect)
    emails = [m.email for m in team.members]
    index = 0
    if row is not None and row.last_handler in emails:
        index = (emails.index(row.last_handler) + 1) % len(emails)
    chosen = team.members[index]
    if row is None:
        row = TeamRotation(team=team.name, last_handler=chosen.email, at=at)
        session.add(row)
        session.info[_KEY][1][team.name] = row
    else:
        row.last_handler, row.at = chosen.email, at
    return Assignment(team.name, chosen, f"round_robin: next in {team.name} is {chosen.email}")
