"""`ticketd status`: the state of a site at a glance, for a human or (``--json``) a script.

Why a module of its own: the same numbers answer "is it working?" on the command line, in
``/healthz`` and in a monitoring script, and they must mean the same everywhere. Everything
comes from the shared database (so any instance, or an operator's shell, sees the whole site),
except the number of messages waiting in each IMAP folder, which is asked of the server with a
short timeout; a server that does not answer is shown as text, never raised.

SLA breach here means: a ticket still open, with no handler, past its assign deadline
(:func:`daemon.sla.assign_deadline`).

Problems an admin must fix (a password a server refuses) are listed first, in ``status`` and in
``/healthz`` alike: an IMAP login refused when status asks the server, and outgoing mail held
untried (``queued`` with no attempt and the reason in ``last_error``, which the outbox writes
when the SMTP server cannot be reached or refuses the login).

:func:`health` is what ``/healthz`` of ``ticketd run`` answers: the same database, plus what
only the running instance knows (its leases, its IDLE connections, its last polls).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from imapclient.exceptions import IMAPClientError
from sqlalchemy import func, literal_column, select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from daemon import sla
from daemon.app import App
from daemon.errors import ConfigError, TicketdError
from daemon.intake import imap
from daemon.models import Lease, MailboxCursor, OutboxMail, Ticket
from daemon.replies import templates

CLOSED_STATUSES = sla.CLOSED_STATUSES
IMAP_STATUS_TIMEOUT = 5  # seconds: status must answer quickly even when a server hangs


sla_breaches = sla.breaches  # the query lives with the deadlines it checks
Breach = sla.Breach


def _iso(at: datetime | None) -> str | None:
    return at.isoformat() if at else None


def _waiting(spec: imap.MailboxSpec) -> tuple[int | None, str | None, bool]:
    """Messages in the folder (move mode) or unseen ones (flag mode); or the error as text,
    and whether it is one an admin must fix (a refused login, a missing password)."""
    item = b"MESSAGES" if spec.after_processing == "move" else b"UNSEEN"
    try:
        with imap.session_for(dataclasses.replace(spec, timeout=IMAP_STATUS_TIMEOUT)) as client:
            answer = client.folder_status(spec.folder, [item])
        return int(answer[item]), None, False
    except (TicketdError, OSError, IMAPClientError) as exc:
        return None, str(exc) or type(exc).__name__, isinstance(exc, ConfigError)


def collect(app: App, *, ask_imap: bool = True) -> dict[str, Any]:
    """Everything `ticketd status` shows, JSON-safe (datetimes as ISO strings)."""
    now = app.clock.now()
    specs = imap.mailboxes(app.config.imap)
    with app.ready_db().transaction() as session:
        cursors = {c.mailbox: c for c in session.scalars(select(MailboxCursor))}
        leases = {lease.name: lease for lease in session.scalars(select(Lease))}
        # The literal 0: a bound parameter would differ between SELECT and GROUP BY, and
        # PostgreSQL would refuse the two as different expressions.
        tried = OutboxMail.attempts > literal_column("0")
        noted = OutboxMail.last_error.is_not(None)
        outbox_rows = session.execute(
            select(OutboxMail.status, tried, noted, func.count())
            .group_by(OutboxMail.status, tried, noted)).all()
        held_because = session.scalars(
            select(OutboxMail.last_error).where(
                OutboxMail.status == "queued", OutboxMail.attempts == 0,
                OutboxMail.last_error.is_not(None))
            .order_by(OutboxMail.id.desc()).limit(1)).first()
        ticket_rows = session.execute(
            select(Ticket.status, Ticket.priority, func.count())
            .where(Ticket.status.not_in(CLOSED_STATUSES))
            .group_by(Ticket.status, Ticket.priority)).all()
        breaches = sla_breaches(session, now)
        ratings = ratings_by_team(session)

    mailboxes = []
    problems: list[str] = []
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
            entry["waiting"], entry["waiting_error"], must_fix = _waiting(spec)
            if must_fix:
                problems.append(entry["waiting_error"])
        mailboxes.append(entry)

    # queued: waiting for its first try; retrying: tried and failed for now; held: never
    # tried, given back because the server could not be reached or refused the login.
    outbox = {"queued": 0, "retrying": 0, "held": 0, "sending": 0, "failed": 0, "sent": 0}
    for status, tried_before, has_error, count in outbox_rows:
        key = status
        if status == "queued":
            key = "retrying" if tried_before else "held" if has_error else "queued"
        outbox[key] = outbox.get(key, 0) + int(count)
    if outbox["held"] and held_because:
        problems.append(f"outbox: {outbox['held']} mail(s) held: "
                        f"{held_because.removeprefix('not sent: ')}")

    by_status: dict[str, int] = {}
    by_priority: dict[str, int] = {}
    matrix: dict[str, dict[str, int]] = {}
    for status, priority, count in ticket_rows:
        by_status[status] = by_status.get(status, 0) + int(count)
        by_priority[priority] = by_priority.get(priority, 0) + int(count)
        matrix.setdefault(status, {})[priority] = int(count)

    broken_templates = [b.as_dict() for b in templates.store(app).problems()]
    return {
        "at": now.isoformat(),
        "problems": problems,
        "templates": broken_templates,
        "mailboxes": mailboxes,
        "outbox": outbox,
        "tickets": {"open": sum(by_status.values()), "by_status": dict(sorted(by_status.items())),
                    "by_priority": dict(sorted(by_priority.items())),
                    "by_status_and_priority": matrix},
        "sla": {"breaches": len(breaches),
                "by_team_and_priority": breach_counts(breaches),
                "tickets": [
            {"number": b.number, "priority": b.priority, "team": b.team,
             "created_at": b.created_at.isoformat(), "assign_by": b.deadline.isoformat(),
             "minutes_overdue": int((now - b.deadline).total_seconds() // 60),
             "lead_told": b.notified}
            for b in breaches]},
        "ratings": ratings,
    }


def breach_counts(breaches: Sequence[sla.Breach]) -> dict[str, dict[str, int]]:
    """Open breaches as {team: {priority: count}} (the /metrics gauge reads the same)."""
    counts: dict[str, dict[str, int]] = {}
    for b in breaches:
        team = counts.setdefault(b.team or "-", {})
        team[b.priority] = team.get(b.priority, 0) + 1
    return counts


def ratings_by_team(session: Session) -> dict[str, dict[str, int]]:
    """The requesters' 1-5 ratings as {team: {"1".."5": count}}."""
    rows = session.execute(select(Ticket.team, Ticket.rating, func.count())
                           .where(Ticket.rating.is_not(None))
                           .group_by(Ticket.team, Ticket.rating)).all()
    found: dict[str, dict[str, int]] = {}
    for team, score, count in rows:
        found.setdefault(team or "-", {})[str(score)] = int(count)
    return found


def process_gauges(app: App) -> tuple[dict[str, dict[str, int]], dict[str, dict[str, int]]]:
    """(open SLA breaches by team and priority, ratings by team) for /metrics."""
    with app.ready_db().transaction() as session:
        return breach_counts(sla_breaches(session, app.clock.now())), ratings_by_team(session)


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
    lines = [f"PROBLEM: {problem}" for problem in data["problems"]]
    lines.append("mailboxes:" if data["mailboxes"] else "mailboxes: none configured ([imap] host)")
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
    held = f"{out['held']} held, " if out["held"] else ""
    lines.append(f"outbox: {out['queued']} queued, {out['retrying']} retrying, {held}"
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
    for team, scores in sorted(data.get("ratings", {}).items()):
        total = sum(scores.values())
        mean = sum(int(k) * v for k, v in scores.items()) / total
        lines.append(f"ratings {team}: {total} rated, average {mean:.1f}/5")
    broken = data["templates"]
    lines.append(f"mail templates: {len(broken)} broken" if broken else "mail templates: ok")
    lines.extend(f"  {item['problem']}; {item['kind']} mails use {item['fallback']}"
                 for item in broken)
    return "\n".join(lines)


# ------------------------------------------------------------------ /healthz of `ticketd run`


@dataclass(frozen=True)
class MailboxState:
    """What a running instance knows about a mailbox it serves."""

    key: str
    label: str
    lease_held: bool
    idling: bool
    last_poll_here: datetime | None = None
    problem: str | None = None   # a refused login, logged once by the instance


def health(app: App, *, instance: str, started_at: datetime, stopping: bool,
           mailboxes: Sequence[MailboxState], smtp_problem: str | None = None) -> dict[str, Any]:
    """What ``/healthz`` answers: ok unless the database is down, a mailbox went stale, a
    server refuses our login, or the SMTP server cannot be reached.

    Stale: no poll by any instance for three poll intervals (or two lease periods, when that
    is longer: a takeover after a dead instance takes that long).
    """
    now = app.clock.now()
    cfg = app.config.imap
    stale = timedelta(seconds=max(3 * cfg.poll_interval, 2 * cfg.lease_seconds))
    problems: list[str] = []
    cursors: dict[str, datetime | None] = {}
    try:
        with app.db.transaction() as session:
            cursors = {c.mailbox: c.last_poll_at for c in session.scalars(select(MailboxCursor))}
    except SQLAlchemyError as exc:
        problems.append(f"database: {str(exc).splitlines()[0]}")
    boxes: dict[str, Any] = {}
    for box in mailboxes:
        last = cursors.get(box.key)
        if box.problem:
            problems.append(box.problem)
        elif not problems:
            if last is None and now - started_at > stale:
                problems.append(f"{box.label}: never polled")
            elif last is not None and now - last > stale:
                problems.append(f"{box.label}: last poll {int((now - last).total_seconds())}"
                                " s ago")
        boxes[box.label] = {
            "last_poll_at": _iso(last),
            "last_poll_here_at": _iso(box.last_poll_here),
            "lease_held": box.lease_held,
            "idle": box.idling,
            "problem": box.problem,
        }
    if smtp_problem:
        problems.append(smtp_problem)
    problems += [f"mail template broken: {broken}" for broken in templates.store(app).problems()]
    return {"ok": not problems and not stopping, "problems": problems, "instance": instance,
            "started_at": started_at.isoformat(), "stopping": stopping, "mailboxes": boxes}
