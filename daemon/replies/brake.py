"""What the loop brake knows about one mailbox, asked once per transaction, not once per mail.

Before any automatic mail, :mod:`daemon.replies.notify` asks two questions about the primary
recipient: is the address held after a permanent bounce, and how many automatic mails went to
its mailbox in the last hour? Draining a backlog of a thousand mails asks them thousands of
times, inside a few large transactions (one per IMAP batch). So the answers are remembered for
the rest of the transaction (``session.info``), in one query per mailbox (:func:`look`), and
kept right as the transaction goes on: :func:`queued` counts an automatic row the moment the
outbox adds it, :func:`forget` drops everything when intake adds a suppression, and any
rollback (a message's savepoint included) drops everything too, so a rolled-back mail is never
counted. The next transaction asks the database again: other processes may have sent meanwhile.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import event, func, select
from sqlalchemy.orm import Session, SessionTransaction

from daemon.models import OutboxMail, Suppression

_KEY = "ticketd.brake"
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
    held = (Suppression.address == address, Suppression.until > now)
    row = session.execute(select(
        select(func.count()).select_from(OutboxMail).where(
            OutboxMail.primary_recipient == mailbox, OutboxMail.automatic.is_(True),
            OutboxMail.created_at > now - WINDOW).scalar_subquery(),
        select(Suppression.reason).where(*held).limit(1).scalar_subquery(),
        select(Suppression.until).where(*held).limit(1).scalar_subquery())).one()
    hold = Hold(row[1], row[2]) if row[1] is not None and row[2] is not None else None
    memory.holds[address] = hold
    memory.counts[mailbox] = int(row[0] or 0)
    return hold, memory.counts[mailbox]


def queued(session: Session, mailbox: str) -> None:
    """The outbox added an automatic mail to ``mailbox`` in this transaction."""
    memory = _memory(session)
    if mailbox in memory.counts:
        memory.counts[mailbox] += 1


def forget(session: Session) -> None:
    """Something the brake depends on changed in this transaction (a new suppression)."""
    session.info.pop(_KEY, None)


@event.listens_for(Session, "after_soft_rollback")
def _after_rollback(session: Session, _previous: Any) -> None:
    forget(session)
