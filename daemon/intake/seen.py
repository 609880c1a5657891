"""Has intake seen this Message-ID before? Answered for a whole batch by two queries.

Deduplication asks, for every message, whether an intake record has its Message-ID as key
(fetched twice, or from two folders) and whether it is the id of one of our own outgoing
mails: one query per message (:data:`SEEN_OR_OURS`). A batch knows its Message-IDs before it
begins, so :func:`prime` reads the records and our mails for all of them at once and keeps
them in the transaction's ``session.info``; :func:`recorded` adds each record the batch
writes, so a Message-ID that comes twice in one batch is seen the second time. :func:`ask`
then answers what :data:`SEEN_OR_OURS` would. Any rollback (one message's savepoint
included) makes the answers stale: the next question reads them again, in one query, from
what the transaction holds. A Message-ID that was not primed is asked with its own query.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from sqlalchemy import bindparam, select
from sqlalchemy.orm import Session

from daemon.db import BatchMemory, drop, keep, kept
from daemon.models import IntakeRecord, Message

_KEY = "ticketd.seen"
MAX_PRIMED = 1000  # Message-IDs asked about in one query (a batch holds at most batch_size)

# Both questions about one Message-ID in one statement, built once (its compiled form is
# cached): the answer for a Message-ID the batch did not prime.
SEEN_OR_OURS = select(
    select(IntakeRecord.id).where(IntakeRecord.dedup_key == bindparam("key"))
    .limit(1).scalar_subquery(),
    select(Message.id).where(Message.dedup_key == bindparam("key"), Message.direction == "out")
    .limit(1).scalar_subquery())


@dataclass
class _Seen(BatchMemory):
    keys: frozenset[str]                                       # the primed Message-IDs
    records: dict[str, IntakeRecord | int] = field(default_factory=dict)
    ours: dict[str, int] = field(default_factory=dict)         # our outgoing mail's row id


def prime(session: Session, message_ids: Iterable[str | None]) -> None:
    """Read, in two queries, what :func:`ask` will be asked about ``message_ids``."""
    keys = frozenset(list(dict.fromkeys(k for k in message_ids if k))[:MAX_PRIMED])
    if not keys:
        drop(session, _KEY)
        return
    seen = _Seen(session.get_transaction(), keys)
    keep(session, _KEY, seen)
    _load(session, seen)


def _load(session: Session, seen: _Seen) -> None:
    wanted = sorted(seen.keys)
    seen.records = {key: row_id for key, row_id in session.execute(
        select(IntakeRecord.dedup_key, IntakeRecord.id)
        .where(IntakeRecord.dedup_key.in_(wanted)))}
    seen.ours = {}
    for key, row_id in session.execute(
            select(Message.dedup_key, Message.id)
            .where(Message.dedup_key.in_(wanted), Message.direction == "out")):
        if key is not None:
            seen.ours.setdefault(key, row_id)
    seen.stale = False


def ask(session: Session, message_id: str) -> tuple[IntakeRecord | None, bool]:
    """(the intake record keyed by ``message_id``, is it the id of one of our mails?)"""
    seen = kept(session, _KEY, _Seen)
    if seen is None or message_id not in seen.keys:
        record_id, ours = session.execute(SEEN_OR_OURS, {"key": message_id}).one()
        record = session.get(IntakeRecord, record_id) if record_id is not None else None
        return record, ours is not None
    if seen.stale:
        _load(session, seen)
    found = seen.records.get(message_id)
    if isinstance(found, int):
        found = session.get(IntakeRecord, found)
    return found, message_id in seen.ours


def recorded(session: Session, record: IntakeRecord) -> None:
    """The batch wrote ``record`` (keyed by its ``dedup_key``)."""
    seen = kept(session, _KEY, _Seen)
    if seen is not None and not seen.stale and record.dedup_key in seen.keys:
        seen.records.setdefault(record.dedup_key, record)


def forget(session: Session) -> None:
    """Drop the batch's answers: every question is asked with its own query."""
    drop(session, _KEY)
