"""What the loop brake knows about one mailbox, asked once per transaction, not once per mail.

Before any automatic mail, :mod:`daemon.replies.notify` asks two questions about the primary
recipient: is the address held after a permanent bounce, and how many automatic mails went to
its mailbox in the last hour? Draining a backlog of a thousand mails asks them thousands of
times, inside a few large transactions (one per IMAP batch). So the answers are remembered for
the rest of the transaction (``session.info``), and kept right as the transaction goes on.
Intake knows at the start of a batch whom its automatic mails can go to (the senders, the
people they copy, the handlers), so it calls :func:`prime` once: one grouped query for the
counts and one for the holds of all of them; :func:`look` answers an address that was not
primed with its own query, as before. As the transaction goes on: :func:`queued` counts an
automatic row the moment the outbox adds it, :func:`forget` drops everything when intake adds
a suppression, and any rollback (a message's savepoint included) drops everything too (the
next question asks again, for every primed address at once), so a rolled-back mail is never
counted. The next transaction asks the database again: other processes may have sent meanwhile.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import event, func, select
from sqlalchemy.orm import Session, SessionTransaction

from daemon.addresses import normalize
from daemon.models import OutboxMail, Suppression

_KEY = "ticketd.brake"
_PRIMED = "ticketd.brake.primed"
# Addresses asked about in one IN (...) list: a batch of 50 messages names far fewer.
MAX_PRIMED = 2000
WINDOW = timedelta(hours=1)


@dataclass(frozen=True)
class Hold:
    """A permanent bounce that holds automatic mail to an address."""

    reason: str
    until: datetime


@dataclass
class _Memory:
    transaction: SessionTransaction | None
    holds: dict[str, Hold | None] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=dict)


def _memory(session: Session) -> _Memory:
    """This transaction's memory (a new one when the session began another transaction)."""
    current = session.get_transaction()
    memory: _Memory | None = session.info.get(_KEY)
    if memory is None or memory.transaction is not current:
        memory = _Memory(current)
        session.info[_KEY] = memory
    return memory


def look(session: Session, address: str, mailbox: str, now: datetime) -> tuple[Hold | None, int]:
    """(the hold on ``address``, automatic mails to ``mailbox`` in the last hour)."""
    memory = _memory(session)
    if address in memory.holds and mailbox in memory.counts:
        return memory.holds[address], memory.counts[mailbox]
    primed: tuple[SessionTransaction | None, frozenset[str]] | None = session.info.get(_PRIMED)
    if primed is not None and primed[0] is session.get_transaction() and address in primed[1]:
        # forgotten (a rollback, a new suppression) since the batch began: ask again for all
        _load(session, memory, primed[1], now)
        if address in memory.holds and mailbox in memory.counts:
            return memory.holds[address], memory.counts[mailbox]
    hold, count = ask(session, address, mailbox, now)
    memory.holds[address] = hold
    memory.counts[mailbox] = count
    return hold, count


def ask(session: Session, address: str, mailbox: str, now: datetime
        ) -> tuple[Hold | None, int]:
    """The database's answer for one address, now (what :func:`look` remembers)."""
    held = (Suppression.address == address, Suppression.until > now)
    row = session.execute(select(
        select(func.count()).select_from(OutboxMail).where(
            OutboxMail.primary_recipient == mailbox, OutboxMail.automatic.is_(True),
            OutboxMail.created_at > now - WINDOW).scalar_subquery(),
        select(Suppression.reason).where(*held).order_by(Suppression.id).limit(1)
        .scalar_subquery(),
        select(Suppression.until).where(*held).order_by(Suppression.id).limit(1)
        .scalar_subquery())).one()
    hold = Hold(row[1], row[2]) if row[1] is not None and row[2] is not None else None
    return hold, int(row[0] or 0)


def prime(session: Session, addresses: Iterable[str], now: datetime) -> None:
    """Answer :func:`look` for all of ``addresses`` (lower case) at once, for the rest of the
    transaction: the same answers as one query per address at ``now`` would give."""
    wanted = frozenset(list(dict.fromkeys(a.lower() for a in addresses if a))[:MAX_PRIMED])
    if not wanted:
        return
    session.info[_PRIMED] = (session.get_transaction(), wanted)
    _load(session, _memory(session), wanted, now)


def _load(session: Session, memory: _Memory, addresses: frozenset[str], now: datetime) -> None:
    """One grouped, indexed count of the recent automatic mails per mailbox (``outbox`` by
    ``primary_recipient``) and one indexed query for the holds on the addresses."""
    mailboxes = {normalize(a) for a in addresses}
    counts = dict.fromkeys(mailboxes, 0)
    for mailbox, count in session.execute(
            select(OutboxMail.primary_recipient, func.count())
            .where(OutboxMail.primary_recipient.in_(sorted(mailboxes)),
                   OutboxMail.automatic.is_(True), OutboxMail.created_at > now - WINDOW)
            .group_by(OutboxMail.primary_recipient)):
        counts[mailbox] = int(count)
    holds: dict[str, Hold | None] = dict.fromkeys(addresses)
    for address, reason, until in session.execute(
            select(Suppression.address, Suppression.reason, Suppression.until)
            .where(Suppression.address.in_(sorted(addresses)), Suppression.until > now)
            .order_by(Suppression.id)):
        if holds.get(address) is None:
            holds[address] = Hold(reason, until)
    # an address or mailbox already answered in this transaction keeps its (counted) answer
    for address, hold in holds.items():
        memory.holds.setdefault(address, hold)
    for mailbox, count in counts.items():
        memory.counts.setdefault(mailbox, count)


def queued(session: Session, mailbox: str) -> None:
    """The outbox added an automatic mail to ``mailbox`` in this transaction."""
    memory = _memory(session)
    if mailbox in memory.counts:
        memory.counts[mailbox] += 1


def forget(session: Session, *, primed: bool = False) -> None:
    """Something the brake depends on changed in this transaction (a new suppression);
    ``primed``: also forget which addresses the batch primed (they are asked one by one)."""
    session.info.pop(_KEY, None)
    if primed:
        session.info.pop(_PRIMED, None)


@event.listens_for(Session, "after_soft_rollback")
def _after_rollback(session: Session, _previous: Any) -> None:
    forget(session)
