"""The sole writer of tickets: every change goes through here and leaves an Event.

The support process demands that a ticket be traceable end to end, so nothing else assigns to a
ticket's columns: :func:`create`, :func:`change` and :func:`record` write the row and the event
in the caller's transaction. :func:`to_dict` is the one JSON shape shown by the CLI.

Events are append-only and nothing reads one back as an object, so they are not ORM objects
(one INSERT ... RETURNING each, which SQLite cannot batch): :func:`record` keeps the row in the
session and marks the ticket dirty, and every flush of the session (autoflush before a query,
a savepoint's release, the commit) writes the rows kept so far with one executemany, in the
order they were recorded. A rolled-back savepoint or transaction drops the rows it kept, as
it would drop pending objects: the session flushes when a savepoint begins, so what is kept at
a rollback was recorded inside what is rolled back. A ticket whose ``events`` collection is
loaded gets an ORM object instead, so that collection stays current.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, tzinfo
from typing import Any

from sqlalchemy import event, func, insert, select
from sqlalchemy.orm import Session, SessionTransaction, UOWTransaction, selectinload
from sqlalchemy.orm.attributes import flag_dirty

from daemon.addresses import domain_of, normalize
from daemon.clock import iso_time
from daemon.errors import NotFound
from daemon.models import Event, Message, Ticket
from daemon.states import PRIORITIES, Status

STATUSES = tuple(s.value for s in Status)
__all__ = ["PRIORITIES", "STATUSES"]
SYSTEM = "ticketd"


@dataclass(frozen=True)
class Logged:
    """What one event says (the row written, or about to be written at the next flush)."""

    at: datetime
    actor: str
    action: str
    detail: str
    before: dict[str, Any] | None
    after: dict[str, Any] | None


_KEPT = "ticketd.events"
_INSERT_EVENTS = insert(Event)


def record(
    session: Session,
    ticket: Ticket,
    *,
    at: datetime,
    actor: str,
    action: str,
    detail: str = "",
    before: dict[str, Any] | None = None,
    after: dict[str, Any] | None = None,
) -> Logged:
    """Append one event to a ticket's log (written at the session's next flush)."""
    if "events" in ticket.__dict__:  # loaded: an ORM object keeps the collection current
        session.add(Event(ticket=ticket, at=at, actor=actor, action=action, detail=detail,
                          before=before, after=after))
        return Logged(at, actor, action, detail, before, after)
    kept: list[tuple[Ticket, dict[str, Any]]] | None = session.info.get(_KEPT)
    if kept is None:
        kept = session.info[_KEPT] = []
    kept.append((ticket, {"at": at, "actor": actor, "action": action, "detail": detail,
                          "before": before, "after": after}))
    if ticket not in session:
        session.add(ticket)
    flag_dirty(ticket)  # the session is not clean: its next flush writes the event
    return Logged(at, actor, action, detail, before, after)


@event.listens_for(Session, "after_flush")
def _write_events(session: Session, _flush: UOWTransaction) -> None:
    """The events kept since the last flush, in one statement; their tickets have ids now."""
    kept: list[tuple[Ticket, dict[str, Any]]] | None = session.info.pop(_KEPT, None)
    if kept:
        session.connection().execute(
            _INSERT_EVENTS, [{"ticket_id": ticket.id, **row} for ticket, row in kept])


@event.listens_for(Session, "after_soft_rollback")
def _drop_events(session: Session, _previous: SessionTransaction) -> None:
    """Whatever is kept was recorded inside what was rolled back (a savepoint's start
    flushes): it is dropped with it."""
    session.info.pop(_KEPT, None)


def create(
    session: Session,
    *,
    number: str,
    subject: str,
    requester_name: str,
    requester_email: str,
    at: datetime,
    cc: Sequence[str] = (),
    language: str = "en",
    priority: str = "P2",
    category: str | None = None,
    team: str | None = None,
    fields: dict[str, str] | None = None,
    mailbox: str | None = None,
    actor: str | None = None,
    detail: str = "",
    write_now: bool = True,
) -> Ticket:
    """Open a ticket and log its creation with every initial value.

    ``write_now=False`` leaves the INSERT to the caller's next flush (no id until then):
    intake writes the ticket together with its first message, one flush instead of two."""
    requester_mailbox = normalize(requester_email)  # what the new-ticket budget counts by
    ticket = Ticket(
        number=number, subject=subject, status="new", priority=priority, category=category,
        team=team, requester_name=requester_name, requester_email=requester_email.lower(),
        requester_mailbox=requester_mailbox, requester_domain=domain_of(requester_email),
        cc=sorted({c.lower() for c in cc} - {requester_email.lower()}), fields=fields or {},
        co_handlers=[],  # every column the process reads set now: the INSERT may come later
        language=language, mailbox=mailbox, created_at=at, updated_at=at,
    )
    session.add(ticket)
    if write_now:
        session.flush()
    record(session, ticket, at=at, actor=actor or requester_email.lower(), action="created",
           detail=detail or f"ticket opened by mail from {requester_email.lower()}",
           after={"status": "new", "priority": priority, "category": category, "team": team})
    return ticket


_CHANGEABLE = frozenset({"status", "priority", "category", "team", "handler", "subject",
                         "fields", "cc", "co_handlers", "resolution", "rating"})


def change(session: Session, ticket: Ticket, *, at: datetime, actor: str, action: str,
           detail: str = "", **values: Any) -> Logged | None:
    """Set ticket columns and log before/after; no event when nothing actually changes."""
    unknown = set(values) - _CHANGEABLE
    if unknown:
        raise ValueError(f"not a changeable ticket field: {', '.join(sorted(unknown))}")
    before = {k: getattr(ticket, k) for k, v in values.items() if getattr(ticket, k) != v}
    if not before:
        return None
    after = {k: values[k] for k in before}
    for key, value in after.items():
        setattr(ticket, key, value)
    ticket.updated_at = at
    return record(session, ticket, at=at, actor=actor, action=action, detail=detail,
                  before=before, after=after)


def touch(ticket: Ticket, at: datetime) -> None:
    ticket.updated_at = max(ticket.updated_at, at)


def get(session: Session, number: str) -> Ticket:
    ticket = find(session, number)
    if ticket is None:
        raise NotFound(f"ticket {number}: no such ticket")
    return ticket


def find(session: Session, number: str) -> Ticket | None:
    stmt = (select(Ticket).where(func.upper(Ticket.number) == number.strip().upper())
            .options(selectinload(Ticket.messages).selectinload(Message.attachments),
                     selectinload(Ticket.events)))
    return session.scalars(stmt).first()


def listing(session: Session, status: str | None = None, *, team: str | None = None,
            handler: str | None = None, priority: str | None = None) -> list[Ticket]:
    stmt = select(Ticket).order_by(Ticket.id)
    if status:
        stmt = stmt.where(Ticket.status == status)
    if team:
        stmt = stmt.where(Ticket.team == team)
    if handler:
        stmt = stmt.where(Ticket.handler == handler.strip().lower())
    if priority:
        stmt = stmt.where(Ticket.priority == priority.strip().upper())
    return list(session.scalars(stmt))


def requester_locale(ticket: Ticket) -> str:
    """The language of mail to the requester: zh-CN for a Chinese writer, else en."""
    return "zh-CN" if ticket.language == "zh" else "en"


def participants(ticket: Ticket) -> frozenset[str]:
    """Addresses allowed to speak on a ticket: requester, copied addresses, handlers."""
    people = {ticket.requester_email, *ticket.cc, *ticket.co_handlers}
    if ticket.handler:
        people.add(ticket.handler.lower())
    return frozenset(p.lower() for p in people if p)


def _breached(ticket: Ticket, now: datetime | None) -> bool:
    """Past the assignment deadline without a main handler (at assignment, or now)."""
    if ticket.assign_by is None:
        return False
    if ticket.assigned_at is not None:
        return ticket.assigned_at > ticket.assign_by
    return ticket.breach_notified_at is not None or (now is not None and
                                                     now > ticket.assign_by)


def _iso(at: datetime | None, zone: tzinfo | None = None) -> str | None:
    return iso_time(at, zone or UTC) if at is not None else None


def message_dict(message: Message, zone: tzinfo | None = None) -> dict[str, Any]:
    return {
        "direction": message.direction,
        "kind": message.kind,
        "message_id": message.message_id,
        "in_reply_to": message.in_reply_to,
        "from": {"name": message.from_name, "email": message.from_email},
        "to": list(message.to),
        "cc": list(message.cc),
        "subject": message.subject,
        "date": _iso(message.date, zone),
        "body_text": message.new_text if message.direction == "in" else message.body_text,
        "quoted_text": message.quoted_text,
        "trusted": message.trusted,
        "attachments": [
            {"filename": a.filename, "safe_filename": a.safe_filename,
             "content_type": a.content_type, "size": a.size, "sha256": a.sha256,
             "skipped": a.skipped}
            for a in message.attachments
        ],
    }


def to_dict(ticket: Ticket, *, full: bool = True, zone: tzinfo | None = None,
            now: datetime | None = None, category_en: str | None = None) -> dict[str, Any]:
    """The JSON shape of `tickets show --json` (full) and `tickets list --json`.

    Times are ISO 8601 with the offset of ``zone`` (the configured support time zone).
    """
    data: dict[str, Any] = {
        "number": ticket.number,
        "subject": ticket.subject,
        "status": ticket.status,
        "priority": ticket.priority,
        "category": ticket.category,
        "category_en": category_en if category_en is not None else ticket.category,
        "team": ticket.team,
        "requester": {"name": ticket.requester_name, "email": ticket.requester_email},
        "handler": ticket.handler,
        "co_handlers": list(ticket.co_handlers),
        "cc": list(ticket.cc),
        "fields": dict(ticket.fields),
        "language": ticket.language,
        "created_at": _iso(ticket.created_at, zone),
        "updated_at": _iso(ticket.updated_at, zone),
        "deadlines": {
            "assign_by": _iso(ticket.assign_by, zone),
            "assigned_at": _iso(ticket.assigned_at, zone),
            "breached": _breached(ticket, now),
        },
        "resolution": ticket.resolution,
        "resolved_at": _iso(ticket.resolved_at, zone),
        "closed_at": _iso(ticket.closed_at, zone),
        "rating": ticket.rating,
    }
    if full:
        data["linked_ticket"] = ticket.linked.number if ticket.linked else None
        data["messages"] = [message_dict(m, zone) for m in ticket.messages]
        data["events"] = [
            {"at": _iso(e.at, zone), "actor": e.actor, "action": e.action, "detail": e.detail,
             "before": e.before, "after": e.after}
            for e in ticket.events
        ]
    return data
