"""What the threader asks the database, answered for a whole batch by two queries.

For a reply the threader asks which tickets the Message-IDs it names belong to, loads those
tickets, and looks up the ticket numbers in its subject: two or three queries a reply. A batch
knows every Message-ID and number its mail names before it begins, so :func:`prime` reads the
messages and tickets for all of them at once and keeps them in the transaction's
``session.info``; rows the batch writes itself are added when they are flushed (rows not
written yet are the threader's own question: it looks at the session first). Any rollback
makes the answers stale: the next question reads them again. A Message-ID or number that was
not primed is asked with its own query.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from sqlalchemy import event, or_, select
from sqlalchemy.orm import Session, UOWTransaction

from daemon.db import BatchMemory, drop, keep, kept
from daemon.models import Message, Ticket

_KEY = "ticketd.threads"
MAX_PRIMED = 2000  # Message-IDs (and numbers) asked about in one query


@dataclass
class _Threads(BatchMemory):
    message_ids: frozenset[str]
    numbers: frozenset[str]
    # Message-ID -> [(ticket id, direction)] of every message with that id on a ticket
    by_message_id: dict[str, list[tuple[int, str]]] = field(default_factory=dict)
    # the tickets those messages belong to and the primed numbers name, held so that the
    # session's (weak) identity map keeps them: the threader gets them without a query
    tickets: dict[int, Ticket] = field(default_factory=dict)
    by_number: dict[str, Ticket] = field(default_factory=dict)


def prime(session: Session, message_ids: Iterable[str], numbers: Iterable[str]) -> None:
    """Read, in two queries, what :func:`messages` and :func:`ticket` will be asked."""
    ids = frozenset(list(dict.fromkeys(i for i in message_ids if i))[:MAX_PRIMED])
    wanted = frozenset(list(dict.fromkeys(numbers))[:MAX_PRIMED])
    if not ids and not wanted:
        drop(session, _KEY)
        return
    threads = _Threads(session.get_transaction(), ids, wanted)
    keep(session, _KEY, threads)
    _load(session, threads)


def _load(session: Session, threads: _Threads) -> None:
    threads.by_message_id = {}
    threads.tickets = {}
    threads.by_number = {}
    with session.no_autoflush:  # what is not written yet is added when it is (_written)
        if threads.message_ids:
            for mid, tid, direction in session.execute(
                    select(Message.message_id, Message.ticket_id, Message.direction).where(
                        Message.message_id.in_(sorted(threads.message_ids)),
                        Message.ticket_id.is_not(None))):
                if mid and tid is not None:
                    threads.by_message_id.setdefault(mid, []).append((tid, direction))
        ticket_ids = {tid for found in threads.by_message_id.values() for tid, _ in found}
        condition = []
        if ticket_ids:
            condition.append(Ticket.id.in_(sorted(ticket_ids)))
        if threads.numbers:
            condition.append(Ticket.number.in_(sorted(threads.numbers)))
        if condition:
            for ticket in session.scalars(select(Ticket).where(or_(*condition))):
                threads.tickets[ticket.id] = ticket
                if ticket.number in threads.numbers:
                    threads.by_number[ticket.number] = ticket
    threads.stale = False


def _current(session: Session) -> _Threads | None:
    threads = kept(session, _KEY, _Threads)
    if threads is not None and threads.stale:
        _load(session, threads)
    return threads


def messages(session: Session, ids: Sequence[str]) -> list[tuple[str, int, str]] | None:
    """(Message-ID, ticket id, direction) of the written messages with one of ``ids`` on a
    ticket, or None when the batch did not prime them all (ask the database)."""
    threads = _current(session)
    if threads is None or not threads.message_ids.issuperset(ids):
        return None
    return [(mid, tid, direction) for mid in ids
            for tid, direction in threads.by_message_id.get(mid, ())]


def ticket(session: Session, ticket_id: int) -> Ticket | None:
    """A ticket the primed messages belong to (None: not primed, ask the database)."""
    threads = _current(session)
    return threads.tickets.get(ticket_id) if threads is not None else None


def by_number(session: Session, number: str) -> tuple[bool, Ticket | None]:
    """(was ``number`` primed, the written ticket with that number)."""
    threads = _current(session)
    if threads is None or number not in threads.numbers:
        return False, None
    return True, threads.by_number.get(number)


def forget(session: Session) -> None:
    """Drop the batch's answers: every question is asked with its own query."""
    drop(session, _KEY)


@event.listens_for(Session, "after_flush")
def _written(session: Session, _flush: UOWTransaction) -> None:
    """Messages and tickets this flush wrote that the batch's questions are about; a message
    or ticket changed or deleted (a merge) makes the answers stale."""
    threads = kept(session, _KEY, _Threads)
    if threads is None or threads.stale:
        return
    for obj in (*session.dirty, *session.deleted):  # (as they were before the flush)
        if isinstance(obj, Message | Ticket) and _concerns(threads, obj):
            threads.stale = True
            return
    for obj in session.new:
        if isinstance(obj, Message | Ticket) and _concerns(threads, obj):
            _add(threads, obj)


def _concerns(threads: _Threads, obj: Message | Ticket) -> bool:
    if isinstance(obj, Message):
        return obj.message_id in threads.message_ids
    return obj.number in threads.numbers or obj.id in threads.tickets


def _add(threads: _Threads, obj: Message | Ticket) -> None:
    if isinstance(obj, Ticket):
        threads.by_number.setdefault(obj.number, obj)
        threads.tickets.setdefault(obj.id, obj)
        return
    if obj.message_id is None or obj.ticket_id is None:
        return
    found = threads.by_message_id.setdefault(obj.message_id, [])
    if (obj.ticket_id, obj.direction) not in found:
        found.append((obj.ticket_id, obj.direction))
    owner = obj.__dict__.get("ticket")  # set when it was made; never loaded here
    if isinstance(owner, Ticket):
        threads.tickets.setdefault(obj.ticket_id, owner)
