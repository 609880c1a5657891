"""`ticketd status`: the state of a site at a glance, for a human or (``--json``) a script.

Why a module of its own: the same numbers answer "is it working?" on the command line, in
``/healthz`` and in a monitoring script, and they must mean the same everywhere. Everything
comes from the shared database (so any instance, or an operator's shell, sees the whole site),
except the number of messages waiting in each IMAP folder, which is asked of the server with a
short timeout; a server that does not answer is shown as text, never raised.

SLA breach here means: a ticket still open, with no handler, past its assign deadline
(:func:`daemon.sla.assign_deadline`).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from imapclient.exceptions import IMAPClientError
from sqlalchemy import func, literal_column, select
from sqlalchemy.orm import Session

from daemon import sla
from daemon.app import App
from daemon.errors import TicketdError
from daemon.intake import imap
from daemon.models import Lease, MailboxCursor, OutboxMail, Ticket

CLOSED_STATUSES = ("resolved", "closed")
IMAP_STATUS_TIMEOUT = 5  # seconds: status must answer quickly even when a server hangs


@dataclass(frozen=True)
class Breach:
    ticket_id: int
    number: str
    priority: str
    team: str | None
    created_at: datetime
    deadline: datetime


def sla_breaches(session: Session, now: datetime) -> list[Breach]:
    """Open tickets without a handler whose assign deadline has passed, oldest first."""
    rows = session.execute(
        select(Ticket.id, Ticket.number, Ticket.priority, Ticket.team, Ticket.created_at)
        .where(Ticket.status.not_in(CLOSED_STATUSES), Ticket.handler.is_(None))
        .order_by(Ticket.created_at))
    found = []
    for ticket_id, number, priority, team, created in rows:
        deadline = sla.assign_deadline(priority, created)
        if deadline < now:
            found.append(Breach(ticket_id, number, priority, team, created, deadline))
    return found


def _iso(at: datetime | None) -> str | None:
    return at.isoformat() if at else None


def _waiting(spec: imap.MailboxSpec) -> tuple[int | None, str | None]:
    """Messages in the folder (move mode) or unseen ones (flag mode); or the error as text."""
    item = b"MESSAGES" if spec.after_processing == "move" else b"UNSEEN"
    try:
        with imap.session_for(dataclasses.replace(spec, timeout=IMAP_STATUS_TIMEOUT)) as client:
            answer = client.folder_status(spec.folder, [item])
        return int(answer[item]), None
    except (TicketdError, OSError, IMAPClientError) as exc:
        return None, str(exc) or type(exc).__name__


def collect(app: App, *, ask_imap: bool = True) -> dict[str, Any]:
    """Everything `ticketd status` shows, JSON-safe (datetimes as ISO strings)."""
    now = app.clock.now()
    specs = imap.mailboxes(app.config.imap)
    with app.ready_db().transaction() as session:
        cursors = {c.mailbox: c for c in session.scalars(select(MailboxCursor))}
        leases = {lease.name: lease for lease in session.scalars(select(Lease))}
        tried = OutboxMail.attempts > literal_column("0")  # one expression, not two params
        outbox_rows = session.execute(
            select(OutboxMail.status, tried, func.count())
            .group_by(OutboxMail.status, tried)).all()
        ticket_rows = session.execute(
            select(Ticket.status, Ticket.priority, func.count())
            .where(Ticket.status.not_in(CLOSED_STATUSES))
            .group_by(Ticket.status, Ticket.priority)).all()
        breaches = sla_breaches(session, now)

    mailboxes = []
    for spec in specs:
        cursor = cursors.get(spec.key)
        lease = leases.get(f"mailbox:{spec.key}")
        entry: dict[str, Any] = {
            "name": spec.label, "key": spec.key, "team": spec.team,
            "last_poll_at": _iso(cursor.last_poll_at if cursor else None),
            "seconds_since_poll": (round((now - cursor.last_poll_at).total_seconds())
                                   if cursor and cursor.last_poll_at else None),
            "lease": ({"holder": lease.holder, "expires_at": _iso(lease.expires_at),
                       "live": lease.expires_at > now} if lease else None),
            "waiting": None, "waiting_error": None,
        }
        if ask_imap:
            entry["waiting"], entry["waiting_error"] = _waiting(spec)
        mailboxes.append(entry)

    outbox = {"queued": 0, "retrying": 0, "sending": 0, "failed": 0, "sent": 0}
    for status, retried, count in outbox_rows:
        key = "retrying" if status == "queued" and retried else status
        outbox[key] = outbox.get(key, 0) + int(count)

    by_status: dict[str, int] = {}
    by_priority: dict[str, int] = {}
    matrix: dict[str, dict[str, int]] = {}
    for status, priority, count in ticket_rows:
        by_status[status] = by_status.get(status, 0) + int(count)
        by_priority[priority] = by_priority.get(priority, 0) + int(count)
        matrix.setdefault(status, {})[priority] = int(count)

    templates = [broken.as_dict() for broken in app.templates.problems()]
    return {
        "at": now.isoformat(),
        "templates": templates,
        "mailboxes": mailboxes,
        "outbox": outbox,
        "tickets": {"open": sum(by_status.values()), "by_status": dict(sorted(by_status.items())),
                    "by_priority": dict(sorted(by_priority.items())),
                    "by_status_and_priority": matrix},
        "sla": {"breaches": len(breaches), "tickets": [
            {"number": b.number, "priority": b.priority, "team": b.team,
             "created_at": b.created_at.isoformat(), "assign_by": b.deadline.isoformat(),
             "minutes_overdue": int((now - b.deadline).total_seconds() // 60)}
            for b in breaches]},
    }


def _ago(seconds: int | None) -> str:
    if seconds is None:
        return "never"
    if seconds < 120:
        return f"{seconds} s ago"
    if seconds < 7200:
        return f"{seconds // 60} min ago"
    return f"{seconds // 3600} h ago"


def render(data: dict[str, Any]) -> str:
    """The human form of :func:`collect`'s result."""
    lines = ["mailboxes:" if data["mailboxes"] else "mailboxes: none configured ([imap] host)"]
    for box in data["mailboxes"]:
        waiting = (f"{box['waiting']} waiting" if box["waiting"] is not None else
                   f"waiting unknown ({box['waiting_error']})" if box["waiting_error"] else "")
        lease = box["lease"]
        held = (f"polled by {lease['holder']}" if lease and lease["live"] else
                "no live poller")
        team = f" [team {box['team']}]" if box["team"] else ""
        lines.append(f"  {box['name']}{team}: last poll {_ago(box['seconds_since_poll'])}"
                     f"{', ' + waiting if waiting else ''}, {held}")
    out = data["outbox"]
    lines.append(f"outbox: {out['queued']} queued, {out['retrying']} retrying, "
                 f"{out['sending']} sending, {out['failed']} failed")
    tk = data["tickets"]
    statuses = ", ".join(f"{k} {v}" for k, v in tk["by_status"].items()) or "-"
    priorities = ", ".join(f"{k} {v}" for k, v in tk["by_priority"].items()) or "-"
    lines.append(f"open tickets: {tk['open']} (by status: {statuses}; by priority: "
                 f"{priorities})")
    breaches = data["sla"]
    lines.append(f"SLA breaches: {breaches['breaches']}")
    for item in breaches["tickets"][:20]:
        lines.append(f"  {item['number']} {item['priority']} unassigned, "
                     f"{item['minutes_overdue']} min past its assign deadline")
    if breaches["breaches"] > 20:
        lines.append(f"  ... and {breaches['breaches'] - 20} more (--json lists all)")
    broken = data["templates"]
    lines.append(f"mail templates: {len(broken)} broken" if broken else "mail templates: ok")
    lines.extend(f"  {item['problem']}; {item['kind']} mails use {item['fallback']}"
                 for item in broken)
    return "\n".join(lines)
