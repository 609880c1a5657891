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

from dataclasses import dataclass, field

from sqlalchemy import inspect, select
from sqlalchemy.orm import Session

from daemon import row_ids
from daemon.db import unflushed
from daemon.intake import threads
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
    # The ticket as loaded: holding it keeps it in the session's (weak) identity map, so the
    # steps after the threader get it without another SELECT.
    ticket: Ticket | None = field(default=None, compare=False, repr=False)


def _ticket_by_number(session: Session, number: str) -> Ticket | None:
    for obj in session.new:  # opened earlier in this batch, not written yet
        if isinstance(obj, Ticket) and obj.number == number:
            return _numbered(session, obj)
    primed, ticket = threads.by_number(session, number)
    if primed:
        return ticket
    with session.no_autoflush:  # a number never changes: nothing pending alters the answer
        return session.scalars(select(Ticket).where(Ticket.number == number)).first()


def _numbered(session: Session, ticket: Ticket) -> Ticket:
    """A ticket not written yet, given its row id now: the verdict names it by id."""
    if inspect(ticket).identity is None and ticket.__dict__.get("id") is None:
        row_ids.hand_out(session, [ticket])
    return ticket


MAX_LOOKUP_IDS = 50  # references looked up per mail: the first and the most recent ones


def bounded(ids: tuple[str, ...]) -> tuple[str, ...]:
    """At most MAX_LOOKUP_IDS ids (the first and the latest), so a crafted header with
    thousands of ids cannot turn into a query the database refuses."""
    unique = tuple(dict.fromkeys(ids))
    if len(unique) <= MAX_LOOKUP_IDS:
        return unique
    return unique[:1] + unique[-(MAX_LOOKUP_IDS - 1):]


def _tickets_by_message_ids(session: Session, ids: tuple[str, ...],
                            known: dict[int, Ticket]) -> dict[str, tuple[int, bool]]:
    """Message-ID -> (ticket id, is it one of ours, i.e. outgoing with a secret token).

    Messages this batch has not written yet are answered from the session (their tickets
    put in ``known`` by id); the database is asked about the rest without writing the batch
    first, unless a message it holds was changed and not written."""
    if not ids:
        return {}
    wanted = set(ids)
    found: dict[str, tuple[int, bool]] = {}

    def take(mid: str | None, tid: int | None, direction: str) -> None:
        if mid and tid is not None:
            ours = direction == "out" or found.get(mid, (0, False))[1]
            found[mid] = (tid, ours)

    with unflushed(session, lambda o: isinstance(o, Message) and o.message_id in wanted):
        primed = threads.messages(session, ids)  # answered for the batch
        if primed is None:
            for mid, tid, direction in session.execute(
                    select(Message.message_id, Message.ticket_id, Message.direction).where(
                        Message.message_id.in_(ids), Message.ticket_id.is_not(None))):
                take(mid, tid, direction)
        else:
            for mid, tid, direction in primed:
                take(mid, tid, direction)
        for obj in sorted((o for o in session.new if isinstance(o, Message) and
                           o.message_id in wanted), key=lambda m: inspect(m).insert_order or 0):
            ticket = obj.ticket
            if ticket is not None:
                known[_numbered(session, ticket).id] = ticket
                take(obj.message_id, ticket.id, obj.direction)
    return found


def _stranger(ticket: Ticket, rule: str, sender: str, policy: str) -> ThreadVerdict:
    who = sender or "the sender"
    if policy == "append":
        return ThreadVerdict(
            "follow-up", rule, ticket.id, ticket.number, participant=False, trusted=False,
            note=f"{who} is not a participant of {ticket.number}: appended and flagged as "
                 "untrusted", ticket=ticket)
    return ThreadVerdict(
        "new", rule, None, None, participant=False, linked_ticket_id=ticket.id,
        note=f"{rule} names {ticket.number} but {who} is not a participant and did not "
             "reply to one of our mails: new ticket linked to it")


def thread(session: Session, mail: ParsedMail, numbers: NumberFormat,
           stranger_policy: str = "link", *,
           handlers: frozenset[str] = frozenset()) -> ThreadVerdict:
    """Which ticket ``mail`` belongs to. A handler (an address in ``handlers``) threads like a
    participant: whether it may act is the trust step's question, not the threader's."""
    sender = mail.from_.email if mail.from_ else ""
    referenced = bounded((*mail.in_reply_to, *mail.references))
    known: dict[int, Ticket] = {}
    by_header = _tickets_by_message_ids(session, referenced, known)
    # Tickets whose OUR (outgoing, tokened) mails this one replies to: proof of a real reply.
    answered = {tid for tid, ours in by_header.values() if ours}

    missing: list[str] = []
    for number in numbers.find(mail.subject):
        ticket = _ticket_by_number(session, number)
        if ticket is None:
            missing.append(number)
            continue
        is_participant = sender in participants(ticket)
        if is_participant or ticket.id in answered or sender in handlers:
            return ThreadVerdict("follow-up", "subject", ticket.id, ticket.number,
                                 participant=is_participant, trusted=is_participant,
                                 note="" if is_participant else
                                 f"{sender} is not a participant of {ticket.number}",
                                 ticket=ticket)
        return _stranger(ticket, "subject", sender, stranger_policy)

    for rule, ids in (("in-reply-to", mail.in_reply_to), ("references", mail.references)):
        for mid in reversed(bounded(ids)):  # the most recent reference first
            if mid not in by_header:
                continue
            ticket = known.get(by_header[mid][0]) or threads.ticket(session, by_header[mid][0])
            if ticket is None:
                with session.no_autoflush:  # written before: nothing pending changes it
                    ticket = session.get(Ticket, by_header[mid][0])
            assert ticket is not None
            is_participant = sender in participants(ticket)
            if is_participant or ticket.id in answered or sender in handlers:
                return ThreadVerdict("follow-up", rule, ticket.id, ticket.number,
                                     participant=is_participant, trusted=is_participant,
                                     note=f"{rule} names {mid}" if is_participant else
                                     f"{rule} names {mid}, but {sender} is not a participant "
                                     f"of {ticket.number}", ticket=ticket)
            return _stranger(ticket, rule, sender, stranger_policy)
    note = ""
    if missing:
        note = f"subject names {', '.join(missing)}, which does not exist: new ticket"
    return ThreadVerdict("new", "none", note=note)
