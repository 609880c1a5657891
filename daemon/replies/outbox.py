"""The transactional outbox: mail is queued with the change that causes it, sent afterwards.

:func:`enqueue` adds a row in the caller's transaction: if that rolls back there is no mail,
if it commits the mail will go. The row holds what the mail is written from (the kind, its
variables as of now, addressing, thread, attachment ids) and the Message-ID chosen now; no
template is rendered and no MIME built inside the caller's transaction. :func:`flush` delivers
what is due:

1. claim due rows in a short transaction (``FOR UPDATE SKIP LOCKED`` on PostgreSQL, so several
   instances never take the same row; SQLite serialises writers anyway), marking them
   ``sending`` with a lease;
2. write each claimed mail not written yet (:mod:`daemon.replies.writer`, through a
   :mod:`~daemon.replies.composers` composer that may run in another process) and store its
   bytes on the row in a short transaction before sending; a mail that cannot be written
   (template or compose error) is ``failed`` with ``mail-failed`` on the ticket, never
   retried (``ticketd outbox resend ID`` writes it again, e.g. after a template fix). The
   bytes go to a table of their own (``outbox_bytes``, inserted once; the row keeps their
   ``size``), so the row's later status changes never rewrite them. Rows queued before
   migration 0006 carry their bytes and are sent as they are;
3. send them over one transport connection; the bytes of mails already written are read a
   group at a time, as many as fit in a byte budget (:mod:`~daemon.replies.readahead`);
4. record each outcome in its own transaction, committed before the next mail is sent:
   ``sent`` (one UPDATE on the connection the batch holds, autocommit on PostgreSQL); a
   temporary failure goes back to ``queued`` with exponential backoff until
   ``max_attempts``; a permanent failure (5xx) is ``failed`` at once and logged on the
   ticket.

A server that cannot be reached, or that refuses our login, is a fact about the server, not
about a mail: the first failed connection ends the flush, every claimed row goes back to
``queued`` untried (no attempt counted, ``last_error`` says why), and the outage is logged
once when it starts and summarised once per flush while it lasts (:class:`~daemon.logs.Outage`
shared across flushes by the caller), never once per mail.

A process killed between 3 and 4 leaves the row ``sending`` with an expired lease: the next
flush sends the same stored bytes again, with the same Message-ID, so a recipient's mail
client shows one message, never a new one.
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Connection,
    Select,
    Table,
    and_,
    bindparam,
    func,
    insert,
    or_,
    select,
    update,
)
from sqlalchemy.orm import Session

from daemon import tickets
from daemon.addresses import Address, normalize
from daemon.app import App
from daemon.errors import (
    ConfigError,
    TransportPermanent,
    TransportTemporary,
    TransportUnavailable,
)
from daemon.logs import Outage
from daemon.models import Attachment, Message, OutboxBytes, OutboxMail, Ticket
from daemon.outcomes import FlushReport
from daemon.replies import brake, envelopes, kinds
from daemon.replies.compose import thread_references
from daemon.replies.composers import Composer, InProcess, WorkerPool
from daemon.replies.readahead import ReadAhead
from daemon.replies.transports import Transport, from_config
from daemon.replies.writer import FileRef, Job, Unwritable, Written

log = logging.getLogger("ticketd.outbox")

MAX_BACKOFF = timedelta(hours=6)
WRITE_AHEAD = 8  # mails a composer may write ahead of the one being sent
STATUSES = ("queued", "sending", "sent", "failed")
_OUTBOX: Table = OutboxMail.metadata.tables[OutboxMail.__tablename__]
_BYTES: Table = OutboxBytes.metadata.tables[OutboxBytes.__tablename__]


def _pid_namespace() -> str:
    """This process's PID namespace (containers sharing a hostname have different ones)."""
    try:
        return os.readlink("/proc/self/ns/pid").removeprefix("pid:").strip("[]")
    except OSError:
        return "-"


def worker_id() -> str:
    """host:pid-namespace:pid: enough to tell, on the same host, whether a claimer is gone."""
    return f"{socket.gethostname()}:{_pid_namespace()}:{os.getpid()}"


def enqueue(session: Session, *, ticket: Ticket | None, mail: kinds.MailKind,
            message_id: str, sender: Address, to: Sequence[Address],
            cc: Sequence[Address] = (), in_reply_to: str | None = None,
            references: Sequence[str] = (), at: datetime, automatic: bool = True,
            attachment_ids: Sequence[int] = ()) -> OutboxMail:
    """Queue a mail as what it is written from, and record it on the ticket as an outgoing
    message. Nothing is rendered or composed here (:mod:`daemon.replies.writer` does that at
    send time); the Message-ID is chosen now, so later mails thread onto it and a resend
    after a crash carries it."""
    parent = thread_references((), in_reply_to)
    chain = thread_references(references, in_reply_to)
    recipients = [a.email for a in (*to, *cc)]
    row = OutboxMail(ticket=ticket, kind=mail.kind,
                     message_id=message_id, sender=sender.email, recipients=recipients,
                     primary_recipient=normalize(recipients[0]), subject=mail.subject,
                     automatic=automatic, status="queued", attempts=0,
                     next_attempt_at=at, created_at=at, locale=mail.locale,
                     variables=kinds.to_json(mail), sender_name=sender.name,
                     to_addresses=[_person(a) for a in to], cc_addresses=[_person(a) for a in cc],
                     in_reply_to=parent[0] if parent else None, thread_references=chain,
                     attachment_ids=list(attachment_ids))
    session.add(row)
    if automatic:
        brake.queued(session, row.primary_recipient)
    if ticket is not None:
        # The ticket's copy of the mail exists from now on (threading, `tickets show`); its
        # subject and text are the written ones once the mail is written (_store_written).
        session.add(Message(
            ticket=ticket, direction="out", kind=mail.kind, message_id=message_id,
            dedup_key=message_id, in_reply_to=row.in_reply_to, references=chain,
            from_name=sender.name, from_email=sender.email,
            to=[{"name": "", "email": r} for r in recipients], cc=[],
            subject=mail.subject, date=at, body_text="", body_html=None, new_text="",
            quoted_text="", raw=None, raw_sha256=None, origin=f"outbox:{mail.kind}",
            trusted=True, created_at=at))
    return row


def _person(address: Address) -> dict[str, str]:
    return {"name": address.name, "email": address.email}


def _due(now: datetime, force: bool) -> ColumnElement[bool]:
    table = _OUTBOX.c
    queued = table.status == "queued"
    return or_(
        queued if force else and_(queued, table.next_attempt_at <= now),
        and_(table.status == "sending", table.claimed_until < now),
    )


def _claimer_is_dead(claimed_by: str | None) -> bool:
    """A claim by a process of this host and PID namespace that no longer exists (killed
    mid-send). Claims from anywhere else are left to expire after [smtp] claim_seconds."""
    where, _, pid = (claimed_by or "").rpartition(":")
    if where != f"{socket.gethostname()}:{_pid_namespace()}" or not pid.isdigit() \
            or int(pid) == os.getpid():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


@dataclass(frozen=True)
class Claim:
    """One claimed row: what to send, and whose expired claim it takes over (if any)."""

    id: int
    kind: str
    message_id: str
    sender: str
    recipients: list[str]
    size: int | None = None              # bytes stored for the row when claimed (None: none)
    taken_from: str | None = None   # a claimer that died mid-send: this is a resend
    taken_until: datetime | None = None  # its claim's end, to restore when given back
    verp_key: str | None = None          # the key of its VERP tags (replies/envelopes.py)


# What a claim needs of a row, never its bytes (another table, read later a group at a time:
# readahead.py) nor its draft (read only for the rows not written yet: _jobs).
_CLAIM_COLUMNS = (_OUTBOX.c.id, _OUTBOX.c.kind, _OUTBOX.c.message_id, _OUTBOX.c.sender,
                  _OUTBOX.c.recipients, _OUTBOX.c.status, _OUTBOX.c.attempts,
                  _OUTBOX.c.claimed_by, _OUTBOX.c.claimed_until, _OUTBOX.c.verp_key,
                  _OUTBOX.c.size)
_TAKE = update(_OUTBOX).where(_OUTBOX.c.id.in_(bindparam("ids", expanding=True))).values(
    status="sending", claimed_by=bindparam("worker"), claimed_until=bindparam("until"),
    attempts=_OUTBOX.c.attempts + 1)
_GIVE_UP = update(_OUTBOX).where(_OUTBOX.c.id == bindparam("row_id")).values(
    status="failed", claimed_by=None, claimed_until=None, last_error=bindparam("why"))
# A mail handed to the transport, recorded in its own transaction (see _sent).
_SENT = update(_OUTBOX).where(_OUTBOX.c.id == bindparam("row_id")).values(
    status="sent", sent_at=bindparam("at"), last_error=None, claimed_by=None,
    claimed_until=None)


def _claim(app: App, worker: str, limit: int, force: bool = False) -> list[Claim]:
    now = app.clock.now()
    db = app.ready_db()
    with db.engine.begin() as conn:
        # The bytes are not read here but a group at a time when sent (readahead.py): a batch
        # of mails with 25 MB attachments must not sit in memory at once. Their size is.
        stmt = select(*_CLAIM_COLUMNS).where(_due(now, force)).order_by(
            _OUTBOX.c.id).limit(limit)
        if not db.is_sqlite:
            stmt = stmt.with_for_update(skip_locked=True)
        rows = list(conn.execute(stmt))
        if len(rows) < limit:
            orphans = select(*_CLAIM_COLUMNS).where(
                _OUTBOX.c.status == "sending", _OUTBOX.c.claimed_until >= now)
            if not db.is_sqlite:
                orphans = orphans.with_for_update(skip_locked=True)
            rows += [r for r in conn.execute(orphans) if _claimer_is_dead(r.claimed_by)]
        claims: list[Claim] = []
        for row in rows:
            if row.status == "sending" and row.attempts >= app.config.smtp.max_attempts:
                # Crashed mid-send every time: stop trying rather than crash forever.
                why = f"claim expired mid-send {row.attempts} times; gave up"
                conn.execute(_GIVE_UP, {"row_id": row.id, "why": why})
                log.error("outbox %s (%s): %s", row.id, row.message_id, why)
                continue
            resend = row.status == "sending"
            claims.append(Claim(
                row.id, row.kind, row.message_id, row.sender, list(row.recipients),
                size=row.size, taken_from=(row.claimed_by or "unknown") if resend else None,
                taken_until=row.claimed_until if resend else None, verp_key=row.verp_key))
        if claims:
            conn.execute(_TAKE, {"ids": [c.id for c in claims], "worker": worker,
                                 "until": now + timedelta(seconds=app.config.smtp.claim_seconds)})
        return claims


def _jobs(app: App, claimed: Sequence[Claim]) -> dict[int, Job]:
    """The claimed rows whose mail is not written yet, as jobs for a composer (only the
    claims that had no bytes are asked about; none, no transaction)."""
    if not claimed:
        return {}
    with app.db.transaction() as session:
        rows = session.scalars(select(OutboxMail).where(
            OutboxMail.id.in_([c.id for c in claimed]), OutboxMail.size.is_(None),
            OutboxMail.variables.is_not(None)))
        return {row.id: job_of(app, session, row) for row in rows}


def job_of(app: App, session: Session, row: OutboxMail) -> Job:
    """The job of a row queued with a draft (``row.variables`` set, not written yet:
    ``row.size`` NULL)."""
    cfg = app.config
    assert row.variables is not None, "a row queued with its bytes needs no writing"
    return Job(
        row_id=row.id, kind=row.kind, locale=row.locale or cfg.support.locale,
        variables=dict(row.variables), zone=cfg.support.zone,
        sender=Address(row.sender_name or cfg.support.name, row.sender),
        to=_addresses(row.to_addresses), cc=_addresses(row.cc_addresses),
        message_id=row.message_id, in_reply_to=row.in_reply_to,
        references=tuple(row.thread_references or ()), date=row.created_at,
        automatic=row.automatic, loop_header=(cfg.mail.loop_header, cfg.support.address),
        files=_files(session, row.attachment_ids or (), cfg.mail.max_outgoing_bytes),
        attachments_dir=str(app.attachments_dir), max_bytes=cfg.mail.max_outgoing_bytes,
        templates_dir=str(cfg.templates.dir), default_locale=cfg.support.locale)


def _addresses(stored: Sequence[Any] | None) -> tuple[Address, ...]:
    return tuple(Address(str(a.get("name", "")), str(a["email"])) for a in stored or ())


def _files(session: Session, ids: Sequence[int], max_bytes: int) -> tuple[FileRef, ...]:
    """The attachments to embed, within the size cap (the mail names the others anyway)."""
    if not ids:
        return ()
    rows = session.scalars(select(Attachment).where(Attachment.id.in_(list(ids)))
                           .order_by(Attachment.id))
    # base64 adds a third; a quarter of the cap is left for the text and the headers
    budget = max_bytes * 3 // 4 * 3 // 4
    files: list[FileRef] = []
    for a in rows:
        if a.skipped is not None:
            continue
        if a.size > budget:
            log.info("attachment %s (%d bytes) left out: over [mail] max_outgoing_bytes",
                     a.safe_filename, a.size)
            continue
        budget -= a.size
        files.append(FileRef(a.safe_filename or a.filename, a.content_type, a.sha256))
    return tuple(files)


def _store(app: App, result: Written | Unwritable) -> bytes | None:
    """Keep a written mail before it is sent (a resend after a crash sends these bytes): the
    bytes in ``outbox_bytes``, their size and the subject on the row, the subject and text on
    the ticket's copy. An unwritable one fails its row
    for good and says why on the ticket: no retry would write it either. Returns the bytes
    to send, or None."""
    with app.db.transaction() as session:
        return _store_in(session, app, result)


def _store_in(session: Session, app: App, result: Written | Unwritable) -> bytes | None:
    now = app.clock.now()
    if isinstance(result, Unwritable):
        row = session.get(OutboxMail, result.row_id)
        assert row is not None
        row.status, row.last_error = "failed", result.reason
        row.claimed_by, row.claimed_until = None, None
        log.error("outbox %s (%s): %s", row.id, row.message_id, result.reason)
        ticket = session.get(Ticket, row.ticket_id) if row.ticket_id else None
        if ticket is not None:
            tickets.record(session, ticket, at=now, actor=tickets.SYSTEM,
                           action="mail-failed", detail=result.reason)
        return None
    # ``size IS NULL`` is the guard: the bytes are stored once, by whoever sets it first.
    stored = session.execute(
        update(OutboxMail).where(OutboxMail.id == result.row_id, OutboxMail.size.is_(None))
        .values(size=len(result.raw), subject=result.subject)
        .returning(OutboxMail.ticket_id, OutboxMail.message_id)
        .execution_options(synchronize_session=False)).one_or_none()
    if stored is None:  # written meanwhile (a claim taken over): those bytes are the mail
        raw = session.scalar(select(_BYTES.c.raw).where(_BYTES.c.outbox_id == result.row_id))
        return None if raw is None else bytes(raw)
    session.execute(insert(_BYTES), {"outbox_id": result.row_id, "raw": result.raw})
    session.execute(
        update(Message).where(Message.dedup_key == stored.message_id,
                              Message.direction == "out")
        .values(subject=result.subject, body_text=result.text, body_html=result.html,
                new_text=result.text)
        .execution_options(synchronize_session=False))
    if result.fallback and stored.ticket_id is not None:
        ticket = session.get(Ticket, stored.ticket_id)
        assert ticket is not None
        tickets.record(session, ticket, at=now, actor=tickets.SYSTEM,
                       action="mail-template-fallback", detail=result.fallback)
    return result.raw


def _store_many(session: Session, app: App, results: Sequence[Written | Unwritable]) -> None:
    """:func:`_store_in` for many mails in a few statements (executemany): a backlog's worth
    of mails written between two intake batches."""
    written = {r.row_id: r for r in results if isinstance(r, Written)}
    for result in results:
        if isinstance(result, Unwritable):
            _store_in(session, app, result)
    if not written:
        return
    # Only rows still without bytes: a flush elsewhere may have written and sent one. Locked
    # (PostgreSQL; SQLite's transaction holds the write lock already), so none is stored
    # elsewhere between this and the INSERT below: its bytes go in once.
    open_rows = session.execute(select(OutboxMail.id, OutboxMail.message_id,
                                       OutboxMail.ticket_id).where(
        OutboxMail.id.in_(list(written)), OutboxMail.size.is_(None))
        .with_for_update()).all()
    if not open_rows:
        return
    # Core statements: the ORM's bulk UPDATE matches by primary key only, and the guard needs
    # ``size IS NULL`` too.
    messages_table = Message.metadata.tables[Message.__tablename__]
    session.execute(
        update(_OUTBOX).where(_OUTBOX.c.id == bindparam("row_id"), _OUTBOX.c.size.is_(None))
        .values(size=bindparam("size"), subject=bindparam("subject")),
        [{"row_id": r.id, "size": len(written[r.id].raw), "subject": written[r.id].subject}
         for r in open_rows])
    session.execute(insert(_BYTES), [{"outbox_id": r.id, "raw": written[r.id].raw}
                                     for r in open_rows])
    session.execute(
        update(messages_table).where(messages_table.c.dedup_key == bindparam("key"),
                                     messages_table.c.direction == "out")
        .values(subject=bindparam("subject"), body_text=bindparam("text"),
                body_html=bindparam("html"), new_text=bindparam("text")),
        [{"key": r.message_id, "subject": written[r.id].subject, "text": written[r.id].text,
          "html": written[r.id].html} for r in open_rows])
    now = app.clock.now()
    for r in open_rows:
        fallback = written[r.id].fallback
        if fallback and r.ticket_id is not None:
            ticket = session.get(Ticket, r.ticket_id)
            assert ticket is not None
            tickets.record(session, ticket, at=now, actor=tickets.SYSTEM,
                           action="mail-template-fallback", detail=fallback)


def _unwritten(after_id: int = 0) -> Select[OutboxMail]:
    return select(OutboxMail).where(
        OutboxMail.id > after_id, OutboxMail.status == "queued", OutboxMail.size.is_(None),
        OutboxMail.variables.is_not(None)).order_by(OutboxMail.id)


WORKER_BACKLOG = 20  # mails waiting to be written before a worker process is worth starting


def unwritten(app: App) -> int:
    """How many queued mails are not written yet."""
    with app.ready_db().transaction() as session:
        return int(session.scalar(select(func.count()).select_from(OutboxMail).where(
            OutboxMail.status == "queued", OutboxMail.size.is_(None),
            OutboxMail.variables.is_not(None))) or 0)


class Prewriter:
    """Writes queued mail while intake goes on, so the flush after it mostly just sends.

    ``poll --once`` calls :meth:`after_batch` after each committed intake batch, in its own
    thread: the mails the worker process has written since are stored (one short transaction,
    so every database write stays in this process and between batches), and the mails queued
    since are handed to the worker. The worker pool starts only once ``threshold`` mails are
    waiting: a poll that brings a few mails does not pay for a process. The final flush is
    given :attr:`composer`, which hands over what is still being written.
    """

    def __init__(self, app: App, threshold: int = WORKER_BACKLOG) -> None:
        self.app = app
        self.threshold = threshold
        self.pool: WorkerPool | None = None
        self._after_id = 0

    @property
    def composer(self) -> Composer | None:
        return self.pool

    def after_batch(self) -> None:
        """Store what was written, hand over what was queued; never raises (a mail not
        written here is written by the flush)."""
        try:
            self._after_batch()
        except Exception:
            log.exception("writing queued mail ahead failed; the flush writes it")

    def _after_batch(self) -> None:
        with self.app.db.transaction() as session:
            if self.pool is not None:
                _store_many(session, self.app, self.pool.take_done())
            rows = list(session.scalars(_unwritten(self._after_id)))
            if self.pool is None and len(rows) < self.threshold:
                return
            jobs = [job_of(self.app, session, row) for row in rows]
        if rows:
            self._after_id = rows[-1].id
        if self.pool is None:
            self.pool = WorkerPool(self.app)
        self.pool.prepare(jobs)

    def close(self) -> None:
        if self.pool is not None:
            self.pool.close()


def write_pending(app: App, composer: Composer | None = None) -> int:
    """Write every queued mail that is not written yet and store its bytes, without sending
    (a flush would do the same just before sending). Returns how many were written; one that
    cannot be written is failed as a flush would fail it."""
    composer = composer or InProcess(app)
    written, after = 0, 0
    while True:
        with app.ready_db().transaction() as session:
            jobs = [job_of(app, session, row)
                    for row in session.scalars(_unwritten(after).limit(100))]
        if not jobs:
            return written
        after = jobs[-1].row_id
        composer.prepare(jobs)
        for job in jobs:
            written += _store(app, composer.write(job)) is not None


def _send(app: App, transport: Transport, claim: Claim, raw: bytes) -> dict[str, str]:
    """Send one mail in its envelopes (one, or one per recipient with ``[mail] verp``)."""
    return envelopes.send(transport, envelopes.envelopes(
        app.config, outbox_id=claim.id, sender=claim.sender, recipients=claim.recipients,
        verp_key=claim.verp_key), raw)


def _batch_connection(app: App) -> Connection:
    """The connection a batch reads bytes and records "sent" on. On PostgreSQL each of those
    is one statement in autocommit: the same transaction per statement, committed as
    durably, in one round trip instead of three (BEGIN, the statement, COMMIT). SQLite's
    ``BEGIN IMMEDIATE`` (db.py) needs its explicit transactions and costs no round trip."""
    conn = app.db.engine.connect()
    if not app.db.is_sqlite:
        conn.execution_options(isolation_level="AUTOCOMMIT")
    return conn


def _sent(app: App, conn: Connection, claim: Claim) -> str:
    """Record a mail the transport accepted for every recipient: the common case, which a
    backlog records thousands of times. One UPDATE, committed on its own before the next
    mail is sent (a crash then resends at most the mail in hand), on the connection the
    flush holds for its batch: no session, no pool checkout, no RETURNING (the claim knows
    what the log line says)."""
    with conn.begin():
        conn.execute(_SENT, {"row_id": claim.id, "at": app.clock.now()})
    log.info("sent %s %s to %s", claim.kind, claim.message_id, ", ".join(claim.recipients))
    return "sent"


def _finish(app: App, row_id: int, *, error: Exception | None = None,
            refused: dict[str, str] | None = None, release: Claim | None = None) -> str:
    """Record any other outcome (:func:`_sent` records a plain "sent"); returns the row's new
    status. ``release``: never tried (``error`` says why): the row is put back as it was
    before the claim, without the attempt it counted (a dead worker's claim stays that
    worker's, so its resend is still noticed)."""
    now = app.clock.now()
    cfg = app.config.smtp
    with app.db.transaction() as session:
        row = session.get(OutboxMail, row_id)
        assert row is not None
        row.claimed_by = None
        row.claimed_until = None
        ticket = session.get(Ticket, row.ticket_id) if row.ticket_id else None
        if release is not None:
            row.attempts = max(0, row.attempts - 1)
            row.last_error = f"not sent: {error}" if error else row.last_error
            if release.taken_from is not None:
                row.status, row.claimed_by = "sending", release.taken_from
                row.claimed_until = release.taken_until
            else:
                row.status = "queued"
            return row.status
        if error is None:
            row.status, row.sent_at, row.last_error = "sent", now, None
            log.info("sent %s %s to %s", row.kind, row.message_id, ", ".join(row.recipients))
            if refused and ticket is not None:
                tickets.record(session, ticket, at=now, actor=tickets.SYSTEM,
                               action="delivery-failed",
                               detail=f"{row.kind} mail refused for " + "; ".join(
                                   f"{k}: {v}" for k, v in refused.items()))
            return row.status
        row.last_error = str(error)
        if isinstance(error, TransportTemporary) and row.attempts < cfg.max_attempts:
            delay = min(timedelta(seconds=cfg.retry_base * 2 ** (row.attempts - 1)), MAX_BACKOFF)
            row.status, row.next_attempt_at = "queued", now + delay
            log.warning("outbox %s (%s): attempt %d failed, retry in %s: %s", row.id,
                        row.message_id, row.attempts, delay, error)
            return row.status
        row.status = "failed"
        why = "permanent failure" if isinstance(error, TransportPermanent) else (
            f"gave up after {row.attempts} attempts")
        log.error("outbox %s (%s) failed: %s: %s", row.id, row.message_id, why, error)
        if ticket is not None:
            tickets.record(session, ticket, at=now, actor=tickets.SYSTEM,
                           action="delivery-failed",
                           detail=f"{row.kind} mail to {', '.join(row.recipients)}: {why}: "
                                  f"{error}")
        return row.status


def flush(app: App, transport: Transport | None = None, *, limit: int | None = None,
          force: bool = False, stop: Callable[[], bool] | None = None,
          outage: Outage | None = None, composer: Composer | None = None) -> FlushReport:
    """Send every due mail now (``force``: ignore retry backoff).

    A mail not written yet is written first (``composer``, by default in this process) and
    its bytes stored on the row before it is sent. Stops at the first connection that fails
    (one try per flush, whatever the queue holds), or between batches when ``stop()`` says
    so. ``outage`` carries the state of an SMTP outage from one flush to the next (the
    daemon keeps one); without it the outage is logged as new.
    """
    report = FlushReport()
    worker = worker_id()
    batch_size = limit or app.config.smtp.batch_size
    transport = transport or from_config(app.config.smtp)
    outage = outage or Outage(log, "smtp")
    composer = composer or InProcess(app)
    while True:
        claimed = _claim(app, worker, batch_size, force)
        if not claimed:
            break
        jobs = _jobs(app, [c for c in claimed if c.size is None])
        # One connection for the batch: the bytes are read on it a group at a time, and
        # each "sent" is committed on it (its own transaction per mail, as ever).
        with _batch_connection(app) as conn, transport:
            stored = ReadAhead(conn, [(c.id, c.size) for c in claimed if c.id not in jobs])
            for index, claim in enumerate(claimed):
                # a few mails ahead: a worker writes them while this one is sent, and a
                # batch of mails with big attachments never sits in memory at once
                composer.prepare(jobs[c.id] for c in claimed[index:index + WRITE_AHEAD]
                                 if c.id in jobs)
                job = jobs.get(claim.id)
                # the database, not this mail, if reading or storing fails
                raw = _store(app, composer.write(job)) if job is not None \
                    else stored.take(claim.id)
                if raw is None:
                    if job is None:  # no bytes and nothing to write them from
                        _store(app, Unwritable(claim.id, "mail has neither bytes nor draft"))
                    report.failed += 1
                    continue
                try:
                    refused = _send(app, transport, claim, raw)
                except (TransportUnavailable, ConfigError) as exc:
                    # The server or our configuration (a refused login, a password that
                    # cannot be read), not this mail: give the batch back untried.
                    for rest in claimed[index:]:
                        _finish(app, rest.id, error=exc, release=rest)
                    report.held += len(claimed) - index
                    report.problem = exc
                    break
                except (TransportTemporary, TransportPermanent) as exc:
                    status = _finish(app, claim.id, error=exc)
                except Exception as exc:  # one unsendable mail must never block the queue
                    log.exception("outbox %s: unexpected error while sending", claim.id)
                    status = _finish(app, claim.id, error=TransportPermanent(
                        f"cannot send: {type(exc).__name__}: {exc}"))
                else:
                    status = _finish(app, claim.id, refused=refused) if refused \
                        else _sent(app, conn, claim)
                report.attempted += 1
                if claim.taken_from is not None:
                    log.warning("outbox %s: claim by %s expired mid-send; sent again with the "
                                "same Message-ID %s (%s)", claim.id, claim.taken_from,
                                claim.message_id, status)
                report.sent += status == "sent"
                report.retrying += status == "queued"
                report.failed += status == "failed"
        if report.problem is not None or len(claimed) < batch_size or (
                stop is not None and stop()):
            break
    _log_outage(app, report, outage)
    return report


def _log_outage(app: App, report: FlushReport, outage: Outage) -> None:
    """One line when an outage starts, one summary per flush while it lasts, one at its end."""
    now = app.clock.now()
    if report.problem is not None:
        config = isinstance(report.problem, ConfigError)
        outage.failed(str(report.problem), now,
                      level=logging.ERROR if config else logging.WARNING,
                      detail=f"{report.held} mail(s) held, no attempt counted; "
                             + ("fix the configuration" if config else "trying again later"))
    elif report.attempted:
        outage.ended(now)


@dataclass(frozen=True)
class OutboxEntry:
    id: int
    kind: str
    number: str | None
    message_id: str
    recipients: list[str]
    subject: str
    status: str
    attempts: int
    next_attempt_at: datetime
    last_error: str | None
    created_at: datetime
    sent_at: datetime | None


def entries(app: App, statuses: tuple[str, ...] = ("queued", "sending", "failed")
            ) -> list[OutboxEntry]:
    with app.ready_db().transaction() as session:
        rows = session.execute(
            select(OutboxMail, Ticket.number).outerjoin(Ticket, Ticket.id == OutboxMail.ticket_id)
            .where(OutboxMail.status.in_(statuses)).order_by(OutboxMail.id))
        return [OutboxEntry(r.id, r.kind, number, r.message_id, list(r.recipients), r.subject,
                            r.status, r.attempts, r.next_attempt_at, r.last_error, r.created_at,
                            r.sent_at) for r, number in rows]
