"""Which ticket a message belongs to: the subject number first, then the reply headers.

Deciding only (reads the database, never writes): :func:`thread` returns a
:class:`ThreadVerdict` naming the rule that decided it, so `ticketd inspect` can explain it and
the pipeline can act on it.

Trust: a subject number is easy to guess, so it counts only when the sender takes part in that
ticket (requester, a copied address, the handler) or the mail references one of the ticket's
Message-IDs (ours carry an unguessable token). From anyone else the configured policy applies:
``link`` opens a new ticket that points to the old one, ``append`` appends and flags it. A
number that names no ticket never creates a ghost: the mail becomes a new ticket, and the
verdict says why.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from daemon.intake.parsed import ParsedMail
from daemon.models import Message, Ticket
from daemon.ticket_numbers import NumberFormat
from daemon.tickets import participants


@dataclass(frozen=True)
class ThreadVerdict:
    action: str                 # "new" | "follow-up"
    rule: str                   # "subject" | "in-reply-to" | "references" | "none"
    ticket_id: int | None = None
    number: str | None = None
    participant: bool | None = None   # is the sender a participant of that ticket?
    trusted: bool = True
    linked_ticket_id: int | None = None
    note: str = ""


def _ticket_by_number(session: Session, number: str) -> Ticket | None:
    return session.scalars(select(Ticket).where(Ticket.number == number)).first()


def _tickets_by_message_ids(session: Session, ids: tuple[str, ...]) -> dict[str, int]:
    if not ids:
        return {}
    rows = session.execute(
        select(Message.message_id, Message.ticket_id).where(
            Message.message_id.in_(ids), Message.ticket_id.is_not(None))
    )
    return {mid: tid for mid, tid in rows if mid and tid is not None}


def thread(session: Session, mail: ParsedMail, numbers: NumberFormat,
           stranger_policy: str = "link") -> ThreadVerdict:
    sender = mail.from_.email if mail.from_ else ""
    referenced = tuple(dict.fromkeys((*mail.in_reply_to, *mail.references)))
    by_header = _tickets_by_message_ids(session, referenced)

    missing: list[str] = []
    for number in numbers.find(mail.subject):
        ticket = _ticket_by_number(session, number)
        if ticket is None:
            missing.append(number)
            continue
        is_participant = sender in participants(ticket)
        references_ticket = ticket.id in by_header.values()
        if is_participant or references_ticket:
            return ThreadVerdict("follow-up", "subject", ticket.id, ticket.number,
                                 participant=is_participant)
        if stranger_policy == "append":
            return ThreadVerdict(
                "follow-up", "subject", ticket.id, ticket.number, participant=False,
                trusted=False, note=f"{sender or 'unknown sender'} is not a participant of "
                f"{ticket.number}: appended and flagged as untrusted")
        return ThreadVerdict(
            "new", "subject", None, None, participant=False, linked_ticket_id=ticket.id,
            note=f"subject names {ticket.number} but {sender or 'the sender'} is not a "
            f"participant: new ticket linked to it")

    for rule, ids in (("in-reply-to", mail.in_reply_to), ("references", mail.references)):
        for mid in reversed(ids):  # the most recent reference first
            ticket_id = by_header.get(mid)
            if ticket_id is not None:
                ticket = session.get(Ticket, ticket_id)
                assert ticket is not None
                return ThreadVerdict("follow-up", rule, ticket.id, ticket.number,
                                     participant=sender in participants(ticket),
                                     note=f"{rule} names {mid}")
    note = ""
    if missing:
        note = f"subject names {', '.join(missing)}, which does not exist: new ticket"
    return ThreadVerdict("new", "none", note=note)
