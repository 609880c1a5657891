"""ingest_batch(raws) -> [IntakeResult]: one transaction per batch, one savepoint per message.

The steps, in order: parse -> deduplicate -> rules (auto-reply, bounce, list, loop) ->
threader -> act (new ticket or follow-up, attachments, events, outgoing mail). :func:`decide`
runs everything up to the verdict and writes nothing (``ticketd inspect`` uses it alone);
:meth:`Intake.ingest` then acts on the verdict in the same transaction.

The safety net: any error while parsing or storing one message rolls back that message's
SAVEPOINT (and nothing else of the batch) and quarantines its raw bytes with the reason, in the
same transaction; intake goes on with the next message. Only when the database
itself is unreachable (so not even the quarantine can be written) does the batch raise
:class:`~daemon.errors.TransientError`, keeping nothing of it: the caller then leaves every
message where it is (in the IMAP folder, in the file) to be tried again, so nothing is ever
lost. One commit per batch instead of several per message is what lets a backlog drain fast.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Protocol

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError, OperationalError, SQLAlchemyError
from sqlalchemy.orm import Session

from daemon import commands, tickets
from daemon.addresses import normalize
from daemon.app import App
from daemon.blobs import BlobStore
from daemon.classify import Classification
from daemon.commands import Context
from daemon.commands import mail as handler_mail
from daemon.db import is_transient
from daemon.errors import Quarantine, TransientError
from daemon.intake import budget, envelope, rules, threads, trust
from daemon.intake import seen as seen_ids
from daemon.intake.parse import Reading
from daemon.intake.parsed import Address, ParsedMail
from daemon.intake.prepare import (
    Prepared,
    Preparing,
    body_hash,
    content_hash,
    hashes,
    prepare,
)
from daemon.intake.sources import RawMail
from daemon.intake.spill import reading_for
from daemon.intake.threader import ThreadVerdict, bounded, thread
from daemon.intake.trust import Proof
from daemon.intents import MailIntent
from daemon.models import (
    Attachment,
    IntakeRecord,
    Message,
    OutboxMail,
    Quarantined,
    Suppression,
    Ticket,
)
from daemon.outcomes import IntakeResult
from daemon.replies import brake
from daemon.replies.notify import Trigger
from daemon.states import Status
from daemon.ticket_numbers import allocate
from daemon.workflow import Process

log = logging.getLogger("ticketd.intake")

WRITE_TOGETHER = True  # a batch's messages written together first (tests switch it off)


@dataclass(frozen=True)
class Decision:
    """The verdict on one parsed message, before anything is written."""

    action: str                       # "new" | "follow-up" | "duplicate" | "ignored" | "bounce"
    dedup_key: str
    content_hash: str
    body_hash: str
    reason: str = ""
    hit: rules.RuleHit | None = None
    verdict: ThreadVerdict | None = None
    related_ticket_id: int | None = None   # the ticket an auto-reply or bounce concerns
    related_number: str | None = None
    bounced_message_id: str | None = None
    verp: envelope.VerpVerdict | None = None  # a bounce delivered to a VERP address of ours
    handler: bool = False                 # the sender is a handler (an address in [[teams]])
    proof: Proof | None = None            # for a handler's follow-up: is it really them?
    commands: tuple[str, ...] = ()        # the command lines a proven handler's mail gives
    forged: str | None = None             # a trusted server says the From is forged
    found: Classification | None = None   # a new ticket's classification, drawn ahead


class Notifier(Protocol):
    """What intake hands the outgoing-mail side (replies.notify implements it)."""

    def deliver(self, session: Session, ticket: Ticket, intents: Sequence[MailIntent],
                trigger: Trigger | None = None) -> Sequence[object]: ...


_RULE_CONTEXTS: dict[int, tuple[object, rules.RuleContext]] = {}


def rule_context(app: App) -> rules.RuleContext:
    """The rules' view of the config, built once per config object (a reload makes a new
    one), not once per message."""
    cfg = app.config
    cached = _RULE_CONTEXTS.get(id(cfg))
    if cached is not None and cached[0] is cfg:
        return cached[1]
    context = rules.RuleContext(own_addresses=cfg.own_addresses,
                                loop_header=cfg.mail.loop_header,
                                loop_value=cfg.support.address)
    _RULE_CONTEXTS.clear()
    _RULE_CONTEXTS[id(cfg)] = (cfg, context)
    return context


def _dedup(session: Session, mail: ParsedMail, digest: str,
           body: str) -> tuple[str, IntakeRecord | None]:
    """(dedup key, the record of the earlier sighting if this mail was seen before).

    The key is the Message-ID. The same Message-ID with the same bytes or the same body is the
    same mail (fetched twice, or from two folders with other trace headers); with a different
    body it is an unrelated mail reusing the ID, keyed by the hash of its bytes instead.
    """
    hash_key = f"sha256:{digest}"
    if mail.message_id:
        seen, ours = seen_ids.ask(session, mail.message_id)  # answered for the batch
        if seen is None and not ours:
            return mail.message_id, None
        if seen is not None and (digest == seen.raw_sha256 or body == seen.body_sha256):
            return mail.message_id, seen
    else:
        # No Message-ID: the same mail seen in two folders differs in its trace headers
        # only, so key it by author, date, subject and body rather than by every byte.
        sender = mail.from_.email if mail.from_ else ""
        date = mail.date.isoformat() if mail.date else ""
        hash_key = "content:" + hashlib.sha256(
            "\n".join((sender, date, mail.subject, body)).encode()).hexdigest()
    return hash_key, session.scalars(select(IntakeRecord).where(
        IntakeRecord.dedup_key == hash_key)).first()


def _our_ticket(session: Session, ids: tuple[str, ...]) -> tuple[Ticket, OutboxMail] | None:
    """The ticket of one of OUR outgoing mails named in ``ids`` (their ids carry a secret
    token, so naming one proves the report or reply really concerns that mail)."""
    if not ids:
        return None
    out = session.scalars(select(OutboxMail).where(
        OutboxMail.message_id.in_(ids), OutboxMail.ticket_id.is_not(None))).first()
    if out is None:
        return None
    ticket = session.get(Ticket, out.ticket_id)
    return (ticket, out) if ticket is not None else None


def _related_ticket(session: Session, mail: ParsedMail, numbers_find: Callable[[str], list[str]],
                    ids: tuple[str, ...], bounce: bool) -> Ticket | None:
    """The ticket an auto-reply or bounce is about. A bounce only counts when it names one of
    our outgoing mails; an auto-reply also by subject number when its sender takes part in
    that ticket. Nobody else can write on a ticket this way."""
    ours = _our_ticket(session, ids)
    if ours is not None or bounce:
        return ours[0] if ours else None
    sender = mail.from_.email if mail.from_ else ""
    for number in numbers_find(mail.subject):
        ticket = session.scalars(select(Ticket).where(Ticket.number == number)).first()
        if ticket is not None and sender in tickets.participants(ticket):
            return ticket
    return None


def decide(session: Session, app: App, mail: ParsedMail, raw: bytes,
           envelope_to: Sequence[str] = (), prepared: Prepared | None = None) -> Decision:
    """Everything intake concludes about a message, without writing anything.

    ``envelope_to``: the recipients the server was given (LMTP), where a bounce's VERP
    address shows best. ``prepared``: the pure conclusions, drawn ahead by the parse worker
    (:mod:`daemon.intake.prepare`); without them they are drawn here.
    """
    if prepared is None:
        digest, body = hashes(raw)
        hit = rules.first_match(mail, rule_context(app))
    else:
        digest, body, hit = prepared.content_hash, prepared.body_hash, prepared.hit
    key, seen = _dedup(session, mail, digest, body)
    if seen is not None:
        earlier = seen.ticket  # (a record of this batch may not be written yet)
        return Decision("duplicate", key, digest, body,
                        reason=f"already processed ({seen.action}"
                               f"{' ' + earlier.number if earlier else ''})",
                        related_ticket_id=earlier.id if earlier else None,
                        related_number=earlier.number if earlier else None)
    if hit is not None:
        ids = bounded((*mail.in_reply_to, *mail.references))
        original = mail.report.original_message_id if mail.report else None
        action = "bounce" if hit.kind == "bounce" else "ignored"
        if original:
            ids = (original,) if action == "bounce" else (original, *ids)
        tag = envelope.judge(session, mail, envelope_to, app.config.own_mailboxes) if (
            action == "bounce") else None
        if tag is not None and tag.proven:
            # It came back to the address only our mail to that recipient carried.
            related = session.get(Ticket, tag.ticket_id) if tag.ticket_id else None
        else:
            related = _related_ticket(session, mail, app.numbers.find, ids, action == "bounce")
        return Decision(action, key, digest, body, reason=hit.kind if action == "ignored" else
                        hit.reason, hit=hit, related_ticket_id=related.id if related else None,
                        related_number=related.number if related else None,
                        bounced_message_id=original, verp=tag)
    if mail.from_ is None or not mail.from_.email:
        raise Quarantine("no sender address (From, Reply-To and Sender are all missing)")
    sender = mail.from_.email
    handler = app.directory.is_handler(sender)
    verdict = _closed_long_ago(session, app, thread(
        session, mail, app.numbers, app.config.tickets.stranger_number,
        handlers=app.directory.handlers))
    if verdict.action == "new":
        _within_budget(session, app, sender)
    proof: Proof | None = None
    lines: tuple[str, ...] = ()
    if verdict.action == "follow-up" and verdict.ticket_id is not None and handler:
        proof = trust.judge(session, mail, verdict.ticket_id,
                            app.config.mail.trusted_authserv_ids)
        lines = tuple(line.text for line in commands.parse(mail.new_text)[0])
    forged = trust.failing_dmarc(mail, app.config.mail.trusted_authserv_ids)
    return Decision(verdict.action, key, digest, body, reason=verdict.note, verdict=verdict,
                    handler=handler, proof=proof, commands=lines, forged=forged,
                    found=prepared.found if prepared is not None else None)


def _within_budget(session: Session, app: App, sender: str) -> None:
    """A sender over its hourly budget of new tickets: the mail is quarantined, not lost."""
    cfg = app.config.mail
    over = budget.over_budget(session, normalize(sender), app.clock.now(),
                              cfg.max_new_tickets_per_hour, cfg.max_new_tickets_per_domain_hour)
    if over is not None:
        raise Quarantine(over.reason)


def judge_trust(decision: Decision, verdict: ThreadVerdict) -> tuple[bool, str]:
    """May this follow-up change the ticket or reach anybody? (and why not)."""
    if decision.forged:
        return False, f"the From address is forged ({decision.forged})"
    if decision.handler:
        if decision.proof is not None and decision.proof.proven:
            return True, ""
        reason = decision.proof.reason if decision.proof else "no proof"
        return False, f"claims to be a handler but proves nothing: {reason}"
    return verdict.trusted, verdict.note


def _closed_long_ago(session: Session, app: App, verdict: ThreadVerdict) -> ThreadVerdict:
    """A mail to a ticket closed more than [sla] reopen_days ago opens a new, linked one."""
    if verdict.action != "follow-up" or verdict.ticket_id is None:
        return verdict
    ticket = verdict.ticket or session.get(Ticket, verdict.ticket_id)
    days = app.config.sla.reopen_days
    if ticket is None or ticket.status != Status.CLOSED or ticket.closed_at is None or \
            ticket.closed_at > app.clock.now() - timedelta(days=days):
        return verdict
    return ThreadVerdict("new", verdict.rule, linked_ticket_id=ticket.id,
                         note=f"{ticket.number} was closed more than {days} days ago "
                              "([sla] reopen_days): a new ticket linked to it")


@dataclass
class Intake:
    """Turns raw mail into tickets; one instance per process, reused for every message."""

    app: App
    notifier: Notifier | None = None
    origin_mailbox: str | None = None
    default_team: str | None = None   # a mailbox's own team wins over the classifier's
    _blobs: BlobStore = field(init=False)

    def __post_init__(self) -> None:
        self._blobs = BlobStore(self.app.attachments_dir)

    # ------------------------------------------------------------------ entry point

    def ingest(self, raw: RawMail) -> IntakeResult:
        """One message: :meth:`ingest_batch` of one."""
        return self.ingest_batch([raw])[0]

    def parse_all(self, raws: Sequence[RawMail]) -> list[Prepared | ParsedMail | str]:
        """Parse each message and draw its pure conclusions; a message that cannot be parsed
        gives the quarantine reason.

        Pure (it reads and writes nothing), so a worker process may run it
        (:mod:`daemon.intake.parsing`) while this process writes the previous batch.
        """
        how = self.preparing()
        return [prepare(raw, how) for raw in raws]

    def preparing(self) -> Preparing:
        """What the pure steps need: the reading, the rules' view of us, the classifier."""
        return Preparing(self.reading(), rule_context(self.app), self.app.reader)

    def reading(self) -> Reading:
        """How this intake reads a mail: large parts streamed into its attachment store."""
        return reading_for(self.app.config, self._blobs)

    def ingest_batch(self, raws: Sequence[RawMail],
                     parsed: Sequence[Prepared | ParsedMail | str] | None = None
                     ) -> list[IntakeResult]:
        """Many messages in ONE transaction, each inside its own SAVEPOINT.

        A message that fails rolls back only its savepoint and is quarantined inside the
        same transaction; the others go on. Nothing is visible (and so nothing may be moved
        on the IMAP server) before the whole batch commits. When the database is unreachable
        the batch raises :class:`TransientError` and nothing of it is kept: every message
        stays where it was, to be tried again. ``parsed``: :meth:`parse_all` already done.
        """
        db = self.app.ready_db()
        mails = list(parsed) if parsed is not None else self.parse_all(raws)
        results: list[IntakeResult] = []
        try:
            with db.transaction() as session:
                results = self._write(session, raws, mails)
        except OperationalError as exc:  # the commit itself failed
            raise TransientError(f"database unavailable: {exc.orig}") from exc
        for raw, result in zip(raws, results, strict=True):
            if result.action == "quarantined":
                log.warning("quarantined %s (%s): %s", result.message_id or "-", raw.origin,
                            result.reason)
            else:
                log.info("%s %s %s (%s)", result.action, result.number or "-",
                         result.message_id or "-", raw.origin,
                         extra={"fields": result.as_dict()})
        return results

    def _write(self, session: Session, raws: Sequence[RawMail],
               items: Sequence[Prepared | ParsedMail | str]) -> list[IntakeResult]:
        """The batch's messages, written together when nothing goes wrong.

        First try: every message without a savepoint of its own, so the batch's rows are
        written in a few flushes (at its end, and when a lookup needs what is not written
        yet) rather than one per message. Any error in that try (a message that fails, a
        flush the database refuses) rolls all of it back and the batch is written again one
        savepoint per message, where the safety net quarantines only the message at fault:
        the outcome is the same, the common case costs less."""
        mails = [m.mail if isinstance(m, Prepared) else m for m in items if not isinstance(m, str)]
        self._prime(session, mails)
        if len(raws) > 1 and WRITE_TOGETHER:
            try:
                with session.begin_nested():
                    return [self._one_of_many(session, raw, item)
                            for raw, item in zip(raws, items, strict=True)]
            except TransientError:
                raise
            except Exception as exc:
                if isinstance(exc, OperationalError) and (
                        is_transient(exc) or not self._database_answers()):
                    raise TransientError(f"database unavailable: {exc.orig}") from exc
                log.info("batch of %d written message by message: %s", len(raws), exc)
                self._prime(session, mails)  # the rollback dropped the batch's answers
        return [self._one(session, raw, item) for raw, item in zip(raws, items, strict=True)]

    def _one_of_many(self, session: Session, raw: RawMail,
                     item: Prepared | ParsedMail | str) -> IntakeResult:
        """One message of a batch written together: no savepoint of its own, so any error
        but a verdict of quarantine is the whole try's (see :meth:`_write`)."""
        if isinstance(item, str):
            return self._quarantine_here(session, raw, item, None)
        prepared, mail = (item, item.mail) if isinstance(item, Prepared) else (None, item)
        try:
            decision = decide(session, self.app, mail, raw.data, raw.envelope_to, prepared)
        except Quarantine as exc:   # decided before anything of this message was written
            return self._quarantine_here(session, raw, exc.reason, mail.message_id)
        return self._act(session, decision, mail, raw)

    def _quarantine_here(self, session: Session, raw: RawMail, reason: str,
                         message_id: str | None) -> IntakeResult:
        session.flush()  # the batch's rows so far: an error there is not this message's
        return self._write_quarantine(session, raw, reason, message_id)

    def _prime(self, session: Session, mails: Sequence[ParsedMail]) -> None:
        """Answer the batch's per-address questions (the loop brake, the new-ticket budget)
        with one grouped query each, instead of one query per message. In its own savepoint:
        if the database refuses those queries, the batch goes on unprimed (one query per
        message, as before); only a lost connection or a lock stops it."""
        if not mails:
            return
        try:
            with session.begin_nested():
                self._ask_batch(session, mails)
        except OperationalError as exc:
            if is_transient(exc):   # a lost connection: the batch is tried again later
                raise TransientError(f"database unavailable: {exc.orig}") from exc
            self._unprimed(session, exc)
        except SQLAlchemyError as exc:
            self._unprimed(session, exc)

    @staticmethod
    def _unprimed(session: Session, exc: SQLAlchemyError) -> None:
        seen_ids.forget(session)
        threads.forget(session)
        budget.forget(session)
        brake.forget(session, primed=True)
        log.warning("batch answers not primed, asking per message: %s", exc)

    def _ask_batch(self, session: Session, mails: Sequence[ParsedMail]) -> None:
        now = self.app.clock.now()
        cfg = self.app.config.mail
        seen_ids.prime(session, (m.message_id for m in mails))
        threads.prime(session, (i for m in mails for i in bounded((*m.in_reply_to,
                                                                   *m.references))),
                      (n for m in mails for n in self.app.numbers.find(m.subject)))
        senders = [m.from_.email for m in mails if m.from_ is not None and m.from_.email]
        budget.prime(session, senders, now, mailboxes=bool(cfg.max_new_tickets_per_hour),
                     domains=bool(cfg.max_new_tickets_per_domain_hour))
        if self.notifier is None:
            return
        # whom the batch's automatic mail can go to: the senders (or their Reply-To), the
        # people they copy, the handlers and leads who get the assigned mail
        recipients: list[str] = list(self.app.directory.handlers)
        for mail in mails:
            recipients += (a.email for a in (mail.from_, *mail.reply_to, *mail.to, *mail.cc)
                           if a is not None and a.email)
        brake.prime(session, recipients, now)

    def _one(self, session: Session, raw: RawMail,
             item: Prepared | ParsedMail | str) -> IntakeResult:
        """One message inside the batch transaction: its own savepoint, never lost."""
        if isinstance(item, str):
            return self._quarantine(session, raw, item, None)
        prepared, mail = (item, item.mail) if isinstance(item, Prepared) else (None, item)
        step = "decide"
        decision: Decision | None = None
        try:
            with session.begin_nested():
                decision = decide(session, self.app, mail, raw.data, raw.envelope_to,
                                  prepared)
                step = decision.action
                return self._act(session, decision, mail, raw)
        except IntegrityError as exc:
            if self._seen_meanwhile(session, raw, mail, decision):
                # Another process committed the same message between our check and insert.
                return IntakeResult("duplicate", reason="already processed (concurrently)",
                                    message_id=mail.message_id)
            return self._quarantine(session, raw, f"{step} failed: {exc.orig}",
                                    mail.message_id)
        except OperationalError as exc:
            if is_transient(exc) or not self._database_answers():
                raise TransientError(f"database unavailable: {exc.orig}") from exc
            # The database is up and refused this message's statement: the message is the
            # problem, and it must not block the mailbox forever.
            return self._quarantine(session, raw, f"{step} failed: {exc.orig}",
                                    mail.message_id)
        except Quarantine as exc:
            return self._quarantine(session, raw, exc.reason, mail.message_id)
        except Exception as exc:
            log.exception("intake failed at step %s for %s", step, mail.message_id)
            return self._quarantine(session, raw, f"{step} failed: {type(exc).__name__}: {exc}",
                                    mail.message_id)

    def _seen_meanwhile(self, session: Session, raw: RawMail, mail: ParsedMail,
                        decision: Decision | None) -> bool:
        keys = [f"sha256:{content_hash(raw.data)}"]
        if decision is not None:
            keys.append(decision.dedup_key)
        if mail.message_id:
            keys.append(mail.message_id)
        return session.scalars(select(IntakeRecord.id).where(
            IntakeRecord.dedup_key.in_(keys))).first() is not None

    def _database_answers(self) -> bool:
        try:
            with self.app.db.engine.connect() as conn:
                conn.exec_driver_sql("SELECT 1")
        except SQLAlchemyError:
            return False
        return True

    # ------------------------------------------------------------------ acting

    def _act(self, session: Session, decision: Decision, mail: ParsedMail,
             raw: RawMail) -> IntakeResult:
        now = self.app.clock.now()
        if decision.action == "duplicate":
            return IntakeResult("duplicate", decision.related_number, decision.reason,
                                mail.message_id)
        if decision.action in ("ignored", "bounce"):
            return self._not_a_ticket(session, decision, mail, raw)
        verdict = decision.verdict
        assert verdict is not None
        if decision.action == "follow-up" and verdict.ticket_id is not None:
            ticket = verdict.ticket or session.get(Ticket, verdict.ticket_id)
            assert ticket is not None
            trusted, why = judge_trust(decision, verdict)
            message = self._store_message(session, ticket, mail, raw, decision, "follow-up",
                                          trusted=trusted)
            detail = f"{verdict.rule}: reply from {mail.from_}"
            if decision.handler and decision.proof is not None and decision.proof.proven:
                detail += f" (handler; proof: {decision.proof.how}: {decision.proof.reason})"
            if not trusted:
                detail += f" (untrusted: {why})"
            tickets.record(session, ticket, at=now, actor=message.from_email,
                           action="follow-up" if trusted else "follow-up-untrusted",
                           detail=detail)
            intents: list[MailIntent] = []
            trigger: Trigger | None = self._trigger(mail)
            process = self._process(now)
            if trusted and decision.handler:
                ctx = Context(process, session, message.from_email)
                intents, _ = handler_mail.handle(ctx, ticket, message)
                trigger = None  # answers to the requester thread onto THEIR last mail
            elif trusted and verdict.participant:
                given = self.app.reader.supplement(ticket.fields, mail.new_text,
                                                   now=mail.date or now)
                intents = process.requester_wrote(session, ticket, message, given=given)
            tickets.touch(ticket, now)
            if self.notifier is not None and intents:
                self.notifier.deliver(session, ticket, intents, trigger)
            self._log(session, decision, mail, raw, "appended", ticket, verdict.note)
            return IntakeResult("appended", ticket.number, verdict.note, mail.message_id)
        # The ticket, its message and everything below are written in one flush when the
        # message's savepoint ends, the ticket with its final values (status, handler,
        # deadline): no INSERT then UPDATE. Only a message with attachments is written as
        # soon as a mail needs their ids (Process._attachments).
        ticket, found = self._new_ticket(session, mail, decision)
        message = self._store_message(session, ticket, mail, raw, decision, "new")
        intents = self._process(now).open(session, ticket, found, first=message)
        if self.notifier is not None:
            self.notifier.deliver(session, ticket, intents, self._trigger(mail))
        self._log(session, decision, mail, raw, "created", ticket, decision.reason)
        return IntakeResult("created", ticket.number, decision.reason, mail.message_id)

    def _process(self, now: datetime) -> Process:
        return Process(self.app.config, self.app.directory, self.app.reader, now,
                       dialect=self.app.db.engine.dialect.name)

    def _trigger(self, mail: ParsedMail) -> Trigger:
        reply_to = mail.reply_to[0] if mail.reply_to else mail.from_
        return Trigger(mail.message_id, tuple(bounded(mail.references)), reply_to,
                       rules.is_auto_sender(mail, rule_context(self.app)))

    def _new_ticket(self, session: Session, mail: ParsedMail,
                    decision: Decision) -> tuple[Ticket, Classification]:
        now = self.app.clock.now()
        assert mail.from_ is not None
        verdict = decision.verdict
        found = decision.found or self.app.reader.classify(
            mail.subject, mail.new_text or mail.body_text, now=mail.date or now)
        number = allocate(session, self.app.numbers, now)
        is_own = self.app.config.is_own  # support+anything@ (a VERP address) too
        cc = [a.email for a in (*mail.to, *mail.cc) if a.email and not is_own(a.email)]
        ticket = tickets.create(
            session, number=number, subject=mail.subject.strip() or "(no subject)",
            requester_name=mail.from_.name, requester_email=mail.from_.email, at=now, cc=cc,
            language=mail.language, priority=found.priority, category=found.category,
            team=self.default_team or found.team, fields=found.fields, mailbox=self.origin_mailbox,
            write_now=False,
            detail=f"ticket opened by mail from {mail.from_.email}; category {found.category} "
                   f"({found.why}), priority {found.priority}")
        budget.counted(session, ticket.requester_email, ticket.created_at)
        if verdict is not None and verdict.linked_ticket_id is not None:
            ticket.linked_ticket_id = verdict.linked_ticket_id
            tickets.record(session, ticket, at=now, actor=tickets.SYSTEM, action="linked",
                           detail=verdict.note)
        elif decision.reason:
            tickets.record(session, ticket, at=now, actor=tickets.SYSTEM, action="note",
                           detail=decision.reason)
        return ticket, found

    def _store_message(self, session: Session, ticket: Ticket, mail: ParsedMail, raw: RawMail,
                       decision: Decision, kind: str, trusted: bool = True) -> Message:
        def addr(a: Address) -> dict[str, str]:
            return {"name": a.name, "email": a.email}

        assert mail.from_ is not None
        message = Message(
            ticket=ticket, direction="in", kind=kind, message_id=mail.message_id,
            dedup_key=decision.dedup_key,
            in_reply_to=mail.in_reply_to[0] if mail.in_reply_to else None,
            references=list(mail.references), from_name=mail.from_.name,
            from_email=mail.from_.email, to=[addr(a) for a in mail.to],
            cc=[addr(a) for a in mail.cc], subject=mail.subject, date=mail.date,
            body_text=mail.body_text, body_html=mail.body_html, new_text=mail.new_text,
            quoted_text=mail.quoted_text, raw=raw.data, raw_sha256=mail.raw_sha256,
            origin=raw.origin, trusted=trusted, created_at=self.app.clock.now(),
        )
        session.add(message)
        self._store_attachments(message, mail)
        return message

    def _store_attachments(self, message: Message, mail: ParsedMail) -> None:
        limits = self.app.config.attachments
        total = 0
        stored = message.attachments
        for part in mail.attachments:
            skipped: str | None = None
            if part.size > limits.max_bytes:
                skipped = f"larger than [attachments] max_bytes ({part.size} > {limits.max_bytes})"
            elif total + part.size > limits.max_message_bytes:
                skipped = (f"message total over [attachments] max_message_bytes "
                           f"({total + part.size} > {limits.max_message_bytes})")
            elif part.streamed is None:
                self._blobs.put(part.payload, part.sha256)
                total += part.size
            elif part.streamed.kept and part.sha256 in self._blobs:
                total += part.size  # streamed to the store while the mail was read
            else:
                skipped = "not kept by the attachment store while the mail was read"
            stored.append(Attachment(
                filename=part.filename, safe_filename=part.safe_filename,
                content_type=part.content_type, size=part.size, sha256=part.sha256,
                inline=part.inline, skipped=skipped))

    def _not_a_ticket(self, session: Session, decision: Decision, mail: ParsedMail,
                      raw: RawMail) -> IntakeResult:
        now = self.app.clock.now()
        hit = decision.hit
        assert hit is not None
        ticket = session.get(Ticket, decision.related_ticket_id) if (
            decision.related_ticket_id) else None
        if decision.action == "bounce":
            self._bounce(session, decision, mail, ticket)
        elif ticket is not None:
            tickets.record(session, ticket, at=now, actor=mail.from_.email if mail.from_ else
                           tickets.SYSTEM, action=hit.kind,
                           detail=f"{hit.reason} ({hit.header or hit.rule}); no ticket opened")
        reason = decision.reason
        if ticket is not None:
            reason = f"{reason} ({ticket.number})"
        action = "bounce" if decision.action == "bounce" else "ignored"
        logged = hit.reason
        if decision.verp is not None:
            logged = f"{logged}; VERP: {decision.verp.reason}"
            reason = f"{reason}; VERP: {decision.verp.reason}"
        self._log(session, decision, mail, raw, action, ticket, logged)
        return IntakeResult(action, ticket.number if ticket else None, reason, mail.message_id)

    def _bounce(self, session: Session, decision: Decision, mail: ParsedMail,
                ticket: Ticket | None) -> None:
        """Record a bounce on its ticket and hold the recipient it proves failed, if any.

        Proof, strongest first: it came back to the VERP address of our mail to one
        recipient (that recipient, whatever the report's text says); else it names one of our
        tokened Message-IDs AND a Final-/Original-Recipient field names a recipient of that
        mail. Anything else (an address in the text, a tag that does not verify) holds nobody.
        """
        now = self.app.clock.now()
        hit = decision.hit
        assert hit is not None
        report = mail.report
        permanent = report.permanent if report else True
        what = (f"{(report.status if report else None) or 'no status'} "
                f"{(report.diagnostic if report else None) or hit.reason}").strip()
        tag = decision.verp
        if tag is not None and tag.proven:
            assert tag.recipient is not None
            if ticket is not None:
                tickets.record(session, ticket, at=now, actor=tickets.SYSTEM,
                               action="delivery-failed" if permanent else "delivery-delayed",
                               detail=f"{tag.recipient}: {what} (VERP: {tag.reason})")
            if permanent:
                self._hold(session, [tag.recipient], f"{hit.reason} (VERP)")
            return
        ours = _our_ticket(session, (decision.bounced_message_id,)) if (
            decision.bounced_message_id) else None
        # Only a report about a mail we really sent has effects, and only on the
        # addresses that mail went to: a forged report cannot silence anyone.
        sent_to = {r.lower() for r in ours[1].recipients} if ours else set()
        recipients = [r for r in (report.recipients if report else ()) if r in sent_to]
        # A hold needs the machine-readable proof: our tokened Message-ID AND a
        # Final-/Original-Recipient field naming that mail's recipient. An address merely
        # written in a bounce's text puts nobody on hold.
        held = [r for r in (report.named if report else ()) if r in sent_to]
        if ticket is not None and ours is not None:
            tickets.record(
                session, ticket, at=now, actor=tickets.SYSTEM,
                action="delivery-failed" if permanent else "delivery-delayed",
                detail=f"{', '.join(recipients) or 'recipient unknown'}: {what}"
                       + (f" (our message {decision.bounced_message_id})"
                          if decision.bounced_message_id else ""))
        if ticket is not None and tag is not None:
            tickets.record(session, ticket, at=now, actor=tickets.SYSTEM, action="note",
                           detail=f"the bounce came to a VERP address that proves nothing "
                                  f"({tag.reason})")
        if permanent and ours is not None and ticket is not None and not held:
            tickets.record(session, ticket, at=now, actor=tickets.SYSTEM,
                           action="note", detail="no address held: the bounce came to no "
                           "verified VERP address of ours and names no recipient of our mail "
                           "in a Final-Recipient field")
        if permanent and ours is not None:
            self._hold(session, held, hit.reason)

    def _hold(self, session: Session, addresses: list[str], reason: str) -> None:
        """No automatic mail to ``addresses`` for ``[mail] bounce_hold_hours``."""
        now = self.app.clock.now()
        hold = timedelta(hours=self.app.config.mail.bounce_hold_hours)
        for address in addresses:
            session.add(Suppression(address=address.lower(), reason=reason, at=now,
                                    until=now + hold))
        brake.forget(session)

    def _log(self, session: Session, decision: Decision, mail: ParsedMail, raw: RawMail,
             action: str, ticket: Ticket | None, reason: str) -> None:
        record = IntakeRecord(
            dedup_key=decision.dedup_key, message_id=mail.message_id,
            raw_sha256=decision.content_hash, body_sha256=decision.body_hash, action=action,
            reason=reason,
            ticket=ticket, origin=raw.origin,
            at=self.app.clock.now())
        session.add(record)
        seen_ids.recorded(session, record)

    # ------------------------------------------------------------------ the safety net

    def _quarantine(self, session: Session, raw: RawMail, reason: str,
                    message_id: str | None) -> IntakeResult:
        """Keep the raw bytes with the reason, in the batch transaction (own savepoint)."""
        try:
            return self._write_quarantine(session, raw, reason, message_id)
        except IntegrityError:
            return IntakeResult("duplicate", reason="already quarantined", message_id=message_id)
        except OperationalError as exc:
            raise TransientError(f"database unavailable, cannot quarantine: {exc.orig}") from exc
        except SQLAlchemyError as exc:
            # Something in the metadata itself is unstorable: keep the bytes, drop the rest.
            log.warning("quarantine of %s needed a second try: %s", raw.origin, exc)
            return self._write_quarantine(session, raw, f"{reason} (metadata unstorable)", None)

    def _write_quarantine(self, session: Session, raw: RawMail, reason: str,
                          message_id: str | None) -> IntakeResult:
        digest = content_hash(raw.data)
        key = f"sha256:{digest}"
        now = self.app.clock.now()
        with session.begin_nested():
            if session.scalars(select(IntakeRecord.id).where(
                    IntakeRecord.dedup_key == key)).first() is not None:
                return IntakeResult("duplicate", reason="already quarantined",
                                    message_id=message_id)
            session.add(Quarantined(at=now, reason=reason, origin=raw.origin,
                                    message_id=message_id, raw=raw.data, raw_sha256=digest))
            session.add(IntakeRecord(dedup_key=key, message_id=message_id, raw_sha256=digest,
                                     body_sha256=body_hash(raw.data), action="quarantined",
                                     reason=reason, origin=raw.origin, at=now))
        return IntakeResult("quarantined", reason=reason, message_id=message_id)

