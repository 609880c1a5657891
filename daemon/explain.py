"""Explain one mail: how ticketd reads it and what intake would do with it, changing nothing.

Why this module exists: when a mail ends up somewhere unexpected (ignored as an auto-reply,
appended to the wrong ticket, quarantined, its Chinese subject garbled) an admin must be able to
see why without reading our code or touching the database. ``ticketd inspect PATH | -`` calls
:func:`explain` and prints :func:`render` (or :meth:`Explanation.as_dict` with ``--json``).

The contract: the explanation comes from the very code intake runs, not from a copy of it:
:func:`~daemon.intake.parse.parse`, then :func:`~daemon.intake.pipeline.decide` (deduplication,
the rules, the threader), which writes nothing. Nothing intake does *after* the verdict runs
here, and each store is left as it was:

* **Database.** Never created, migrated or written. A missing SQLite file (or its folder) is
  not created: the mail is explained without a database. An existing SQLite file is opened
  read-only through a URI of our own: ``immutable=1`` when no ``-wal`` file exists (so nothing
  can be in a write-ahead log, and no ``-wal``/``-shm`` file is created), else
  ``mode=ro&readonly_shm=1`` (the write-ahead log is read, the shared-memory index is mapped
  read-only, no ``BEGIN IMMEDIATE``). PostgreSQL (and any other server) is read in a
  ``READ ONLY`` transaction that is rolled back. Without a database, or with an empty one, or
  one that cannot be reached, :func:`decide` runs against an empty in-memory schema: nothing can
  be a follow-up or a duplicate, and the explanation says so. One limit: a *second* connection
  to the same SQLite file inside one process shares that process's shared-memory mapping, so a
  reader may update a read mark in ``-shm``; the ``ticketd inspect`` process holds no other.
* **Attachment store.** Never opened. Which attachments intake would skip comes from
  :func:`attachment_skips`, the same limits as ``Intake._store_attachments``.
* **Outbox.** No notifier is involved, so no mail is queued or written.
* **IMAP mailbox.** Never touched: explain takes bytes (a file or standard input), never a
  mailbox connection, so no flag is set and nothing is moved.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, tzinfo
from pathlib import Path
from typing import Any
from urllib.parse import quote

from sqlalchemy import Engine, create_engine, inspect, select, text
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session
from sqlalchemy.pool import NullPool, StaticPool

from daemon import classify, commands, desk
from daemon import db as dbmod
from daemon.app import App
from daemon.clock import format_time, iso_time
from daemon.errors import ConfigError, Quarantine
from daemon.intake.parse import parse
from daemon.intake.parsed import Address, CharsetNote, ParsedMail, is_signature
from daemon.intake.pipeline import Decision, decide, judge_trust
from daemon.intake.prepare import content_hash
from daemon.intake.spill import reading_for
from daemon.models import Base, IntakeRecord, Ticket

__all__ = [
    "AS_INTAKE",
    "VERDICTS",
    "AttachmentView",
    "Explanation",
    "TicketView",
    "Verdict",
    "attachment_skips",
    "explain",
    "render",
]

VERDICTS = ("new", "follow-up", "duplicate", "ignored", "bounce", "quarantined")
# Our verdict -> the IntakeResult.action `ticketd ingest` reports for the same mail.
AS_INTAKE: dict[str, str] = {
    "new": "created", "follow-up": "appended", "duplicate": "duplicate", "ignored": "ignored",
    "bounce": "bounce", "quarantined": "quarantined",
}
NO_DATABASE = "no database: follow-ups cannot be recognised"
_REQUIRED_TABLES = ("tickets", "alembic_version")
_NOT_STORED = {
    "duplicate": "not stored again: the mail was already processed",
    "ignored": "not stored: an ignored mail opens no ticket",
    "bounce": "not stored: a bounce opens no ticket",
    "quarantined": "not stored: the whole mail is quarantined",
}
_RULE_WORDS = {"subject": "the ticket number in the subject", "in-reply-to": "In-Reply-To",
               "references": "References", "none": "no rule matched"}


# ------------------------------------------------------------------------------ values


@dataclass(frozen=True)
class Verdict:
    """What intake would do; ``action`` is one of :data:`VERDICTS`.

    ``number`` is the ticket concerned (follow-up; the related ticket of an ignored mail or a
    bounce); a new ticket has none, since no number is allocated. ``rule`` is the threader's rule
    (``subject``, ``in-reply-to``, ``references``, ``none``) or the name of the intake rule that
    matched; ``header`` the header that decided an ignored mail or a bounce.
    """

    action: str
    number: str | None = None
    rule: str | None = None
    reason: str = ""
    header: str | None = None
    kind: str | None = None
    participant: bool | None = None
    trusted: bool | None = None
    linked_number: str | None = None
    bounced_message_id: str | None = None
    forged: str | None = None   # a trusted server says the From is forged (dmarc=fail)
    verp: str | None = None     # a bounce to a VERP address: what its tag proves, and why

    def __post_init__(self) -> None:
        if self.action not in VERDICTS:
            raise ValueError(f"action must be one of {VERDICTS}, got {self.action!r}")

    @property
    def intake_action(self) -> str:
        """The ``IntakeResult.action`` that ``ticketd ingest`` reports for this verdict."""
        return AS_INTAKE[self.action]

    def line(self) -> str:
        """One sentence for a person."""
        if self.action == "new":
            text_ = "new ticket (its number is allocated only when intake creates it)"
            if self.linked_number:
                text_ += f", linked to {self.linked_number}"
        elif self.action == "follow-up":
            who = "a participant" if self.participant else "not a participant"
            text_ = (f"follow-up on {self.number} by {_RULE_WORDS.get(self.rule or '', self.rule)}"
                     f"; the sender is {who} of that ticket"
                     f"; {'trusted' if self.trusted else 'untrusted (flagged)'}")
        elif self.action == "duplicate":
            text_ = f"duplicate: {self.reason}"
        elif self.action == "ignored":
            text_ = (f"ignored ({self.kind}) by rule {self.rule}, decided by header "
                     f"{self.header or '-'}: {self.reason}")
            if self.number:
                text_ += f"; concerns ticket {self.number}"
        elif self.action == "bounce":
            ours = self.bounced_message_id
            text_ = (f"bounce of our outgoing message <{ours}>" if ours else
                     "bounce (the outgoing message it concerns is not named)")
            text_ += f" of ticket {self.number}" if self.number else " (no ticket found)"
            text_ += f", by rule {self.rule}: {self.reason}"
            if self.verp:
                text_ += f"; VERP: {self.verp}"
        else:
            text_ = f"quarantined: {self.reason}"
        if self.forged:
            text_ += (f"; FORGED From ({self.forged}): the mail changes nothing and no mail "
                      "goes to that address")
        return text_

    def as_dict(self) -> dict[str, Any]:
        return {"action": self.action, "number": self.number, "rule": self.rule,
                "reason": self.reason, "header": self.header, "kind": self.kind,
                "participant": self.participant, "trusted": self.trusted,
                "linked_number": self.linked_number,
                "bounced_message_id": self.bounced_message_id, "forged": self.forged,
                "verp": self.verp, "intake_action": self.intake_action}


@dataclass(frozen=True)
class AttachmentView:
    """One attachment as intake would record it; ``skipped`` says why it would not be stored."""

    filename: str
    safe_filename: str
    content_type: str
    size: int
    sha256: str
    inline: bool
    origin: str
    skipped: str | None

    @property
    def signature(self) -> bool:
        """A signature part (S/MIME, PGP): stored, never relayed to others."""
        return is_signature(self.content_type)

    def as_dict(self) -> dict[str, Any]:
        return {"filename": self.filename, "safe_filename": self.safe_filename,
                "content_type": self.content_type, "size": self.size, "sha256": self.sha256,
                "inline": self.inline, "origin": self.origin, "signature": self.signature,
                "skipped": self.skipped}


@dataclass(frozen=True)
class TicketView:
    """The classification of the ticket the mail would open or join.

    For a new ticket: what :func:`daemon.classify.classify` gives it. For a follow-up: the
    existing ticket's, with the details a trusted participant's reply supplies merged in (as
    intake merges them). ``missing`` are the required details still absent.
    """

    category: str | None
    team: str | None
    priority: str
    fields: dict[str, str]
    missing: tuple[classify.RequiredField, ...]
    why: str
    supplied: dict[str, str] = field(default_factory=dict)
    status: str | None = None
    scores: dict[str, int] = field(default_factory=dict)   # every category's score (new)
    priority_why: str = ""

    def as_dict(self) -> dict[str, Any]:
        return {"category": self.category, "team": self.team, "priority": self.priority,
                "fields": dict(self.fields), "why": self.why, "supplied": dict(self.supplied),
                "status": self.status, "scores": dict(self.scores),
                "priority_why": self.priority_why,
                "missing": [{"name": f.name, "label_zh": f.label_zh, "label_en": f.label_en}
                            for f in self.missing]}


@dataclass(frozen=True)
class HandlerView:
    """A mail from a handler on a ticket: is it proven, and what its commands would do."""

    proven: bool
    proof: str                 # "token" | "auth-results" | "none"
    reason: str
    commands: tuple[tuple[str, bool, str], ...] = ()   # (line, would apply, what / why not)

    def as_dict(self) -> dict[str, Any]:
        return {"handler": True, "proven": self.proven, "proof": self.proof,
                "reason": self.reason,
                "commands": [{"line": line, "applies": ok, "detail": detail}
                             for line, ok, detail in self.commands]}


@dataclass(frozen=True)
class Explanation:
    """Everything ``ticketd inspect`` shows about one message.

    ``readable`` is False only when :func:`parse` refused the bytes (not a mail); ``mail`` is
    then None and the verdict is ``quarantined`` (or ``duplicate``, already quarantined).
    """

    origin: str
    readable: bool
    verdict: Verdict
    zone: tzinfo
    database: str
    database_used: bool
    mail: ParsedMail | None = None
    attachments: tuple[AttachmentView, ...] = ()
    ticket: TicketView | None = None
    raw_size: int = 0
    notes: tuple[str, ...] = ()
    handler: HandlerView | None = None

    def as_dict(self) -> dict[str, Any]:
        """JSON-safe; dates are ISO 8601 with the offset of the configured time zone."""
        mail = self.mail
        data: dict[str, Any] = {
            "origin": self.origin,
            "readable": self.readable,
            "error": None if self.readable else self.verdict.reason,
            "from": _address(mail.from_) if mail else None,
            "to": [_address(a) for a in mail.to] if mail else [],
            "cc": [_address(a) for a in mail.cc] if mail else [],
            "reply_to": _address(mail.reply_to[0]) if mail and mail.reply_to else None,
            "subject": mail.subject if mail else None,
            "date": _iso(mail.date, self.zone) if mail else None,
            "message_id": mail.message_id if mail else None,
            "in_reply_to": mail.in_reply_to[0] if mail and mail.in_reply_to else None,
            "references": list(mail.references) if mail else [],
            "language": mail.language if mail else None,
            "content_type": mail.content_type if mail else None,
            "body_text": mail.new_text if mail else None,
            "full_text": mail.body_text if mail else None,
            "body_html": mail.body_html if mail else None,
            "quoted_text": mail.quoted_text if mail else None,
            "attachments": [a.as_dict() for a in self.attachments],
            "charsets": [_charset(n) for n in mail.charsets] if mail else [],
            "defects": list(mail.defects) if mail else [],
            "raw_size": self.raw_size,
            "verdict": self.verdict.as_dict(),
            "classification": self.ticket.as_dict() if self.ticket else None,
            "handler": self.handler.as_dict() if self.handler else {"handler": False},
            "database": {"used": self.database_used, "detail": self.database},
            "notes": list(self.notes),
        }
        return data


def _address(address: Address | None) -> dict[str, str] | None:
    return {"name": address.name, "email": address.email} if address else None


def _charset(note: CharsetNote) -> dict[str, str | None]:
    return {"where": note.where, "declared": note.declared, "used": note.used,
            "repair": note.repair}


def _iso(at: datetime | None, zone: tzinfo) -> str | None:
    return iso_time(at, zone) if at else None


# ------------------------------------------------------------------------------ attachments


def attachment_skips(sizes: Sequence[int], max_bytes: int,
                     max_message_bytes: int) -> list[str | None]:
    """Why each attachment (by size, in order) would not be stored; None: it would be.

    The rule of ``Intake._store_attachments``: one part over ``max_bytes`` is skipped, and a part
    that would take the message's stored total over ``max_message_bytes`` is skipped; skipped
    parts do not count towards the total. Pure, so the pipeline could share it.
    """
    reasons: list[str | None] = []
    total = 0
    for size in sizes:
        if size > max_bytes:
            reasons.append(f"larger than [attachments] max_bytes ({size} > {max_bytes})")
        elif total + size > max_message_bytes:
            reasons.append(f"message total over [attachments] max_message_bytes "
                           f"({total + size} > {max_message_bytes})")
        else:
            reasons.append(None)
            total += size
    return reasons


def _attachments(app: App, mail: ParsedMail, verdict: Verdict) -> tuple[AttachmentView, ...]:
    limits = app.config.attachments
    if verdict.action in ("new", "follow-up"):
        skips = attachment_skips([a.size for a in mail.attachments], limits.max_bytes,
                                 limits.max_message_bytes)
    else:
        skips = [_NOT_STORED[verdict.action]] * len(mail.attachments)
    return tuple(AttachmentView(a.filename, a.safe_filename, a.content_type, a.size, a.sha256,
                                a.inline, a.origin, skip)
                 for a, skip in zip(mail.attachments, skips, strict=True))


# ------------------------------------------------------------------------------ database


@dataclass(frozen=True)
class _Source:
    """Where the verdict's database reads go: an engine, and a sentence saying what it is."""

    engine: Engine
    detail: str
    used: bool            # False: the empty in-memory schema
    read_only_sql: str | None = None   # first statement of the transaction (PostgreSQL)


def _empty_source(why: str) -> _Source:
    """An empty schema in memory: decide() runs the same code and finds no ticket."""
    engine = create_engine("sqlite://", poolclass=StaticPool)
    Base.metadata.create_all(engine)
    return _Source(engine, f"{NO_DATABASE} ({why})", used=False)


def _sqlite_uri(path: Path) -> str:
    """A read-only SQLite URI that creates no file and takes no write lock."""
    wal = path.with_name(path.name + "-wal")
    flags = "mode=ro&readonly_shm=1" if wal.exists() else "immutable=1"
    return f"file:{quote(str(path))}?{flags}"


def _sqlite_engine(path: Path) -> Engine:
    uri = _sqlite_uri(path)

    def connect() -> sqlite3.Connection:
        # isolation_level None: the driver never issues BEGIN; we only read.
        return sqlite3.connect(uri, uri=True, isolation_level=None, check_same_thread=False)

    return create_engine("sqlite://", creator=connect, poolclass=NullPool)


def _open_source(app: App) -> _Source:
    """The configured database, opened so that nothing can be written; or the empty schema."""
    try:
        url = dbmod.parse_url(app.config.database.url, app.config.base_dir)
    except ConfigError as exc:
        return _empty_source(str(exc))
    if url.get_backend_name() == "sqlite":
        path = dbmod.sqlite_path(url)
        if path is None:
            return _empty_source("an in-memory SQLite database holds no tickets")
        if not path.is_file():
            return _empty_source(f"{path} does not exist")
        engine = _sqlite_engine(path)
        detail = f"SQLite {path}, opened read-only"
        read_only_sql = None
    else:
        args: dict[str, Any] = ({"connect_timeout": 10}
                                if url.get_backend_name() == "postgresql" else {})
        engine = create_engine(url, poolclass=NullPool, connect_args=args)
        detail = (f"{url.get_backend_name()} {url.render_as_string(hide_password=True)}, "
                  "read in a READ ONLY transaction that is rolled back")
        read_only_sql = "SET TRANSACTION READ ONLY"
    try:
        with engine.connect() as conn:
            names = set(inspect(conn).get_table_names())
            conn.rollback()
    except SQLAlchemyError as exc:
        engine.dispose()
        return _empty_source(f"cannot read the database: {_one_line(exc)}")
    missing = [t for t in _REQUIRED_TABLES if t not in names]
    if missing:
        engine.dispose()
        return _empty_source(f"the database has no ticketd schema (no {', '.join(missing)})")
    return _Source(engine, detail, used=True, read_only_sql=read_only_sql)


@contextmanager
def _session(source: _Source) -> Iterator[Session]:
    """A session whose transaction is always rolled back."""
    with source.engine.connect() as conn:
        try:
            if source.read_only_sql:
                conn.execute(text(source.read_only_sql))
            with Session(bind=conn, autoflush=False) as session:
                yield session
        finally:
            conn.rollback()


def _one_line(exc: BaseException) -> str:
    orig = getattr(exc, "orig", None)
    return " ".join(str(orig if orig is not None else exc).split())[:300]


# ------------------------------------------------------------------------------ judging


@dataclass(frozen=True)
class _Judgement:
    verdict: Verdict
    ticket: TicketView | None = None
    handler: HandlerView | None = None


def _quarantine_verdict(session: Session, raw: bytes, reason: str) -> Verdict:
    """As ``Intake._quarantine``: the same bytes quarantined before are a duplicate."""
    key = f"sha256:{content_hash(raw)}"
    if session.scalars(select(IntakeRecord.id).where(
            IntakeRecord.dedup_key == key)).first() is not None:
        return Verdict("duplicate", reason="already quarantined")
    return Verdict("quarantined", reason=reason)


def _judge(session: Session, app: App, mail: ParsedMail, raw: bytes) -> _Judgement:
    try:
        decision = decide(session, app, mail, raw)
    except SQLAlchemyError:
        raise
    except Quarantine as exc:
        return _Judgement(_quarantine_verdict(session, raw, exc.reason))
    except Exception as exc:  # intake's safety net quarantines whatever decide() raises
        reason = f"decide failed: {type(exc).__name__}: {exc}"
        return _Judgement(_quarantine_verdict(session, raw, reason))
    return _from_decision(session, app, mail, decision)


def _from_decision(session: Session, app: App, mail: ParsedMail,
                   decision: Decision) -> _Judgement:
    if decision.action == "duplicate":
        return _Judgement(Verdict("duplicate", number=decision.related_number,
                                  reason=decision.reason))
    if decision.action in ("ignored", "bounce"):
        hit = decision.hit
        assert hit is not None
        return _Judgement(Verdict(
            decision.action, number=decision.related_number, rule=hit.rule, reason=hit.reason,
            header=hit.header, kind=hit.kind,
            bounced_message_id=decision.bounced_message_id if decision.action == "bounce"
            else None, verp=decision.verp.reason if decision.verp else None))
    thread = decision.verdict
    assert thread is not None
    if decision.action == "follow-up" and thread.ticket_id is not None:
        ticket = session.get(Ticket, thread.ticket_id)
        assert ticket is not None
        trusted, why = judge_trust(decision, thread)
        verdict = Verdict("follow-up", number=thread.number, rule=thread.rule,
                          reason=why or thread.note, participant=thread.participant,
                          trusted=trusted, forged=decision.forged)
        return _Judgement(verdict, _existing_ticket(app.reader, ticket, mail, verdict),
                          _handler_view(session, app, ticket, mail, decision))
    linked = session.get(Ticket, thread.linked_ticket_id) if thread.linked_ticket_id else None
    verdict = Verdict("new", rule=thread.rule, reason=thread.note,
                      participant=thread.participant,
                      linked_number=linked.number if linked else None)
    return _Judgement(verdict, _new_ticket(app.reader, mail, app.clock.now()))


def _handler_view(session: Session, app: App, ticket: Ticket, mail: ParsedMail,
                  decision: Decision) -> HandlerView | None:
    """For a handler's mail: the proof, and each command as intake would apply it (tried in a
    savepoint that is rolled back, never flushed)."""
    if not decision.handler or decision.proof is None:
        return None
    proof = decision.proof
    outcomes: tuple[tuple[str, bool, str], ...] = ()
    lines, rest = commands.parse(mail.new_text)
    if lines and proof.proven:
        ctx = commands.Context(desk.process_for(app), session, mail.from_.email
                               if mail.from_ else "")
        outcomes = tuple((o.line, o.applied, o.message)
                         for o in commands.preview(ctx, ticket, lines, rest))
    elif lines:
        outcomes = tuple((line.text, False, "not run: the mail proves nothing")
                         for line in lines)
    return HandlerView(proof.proven, proof.how, proof.reason, outcomes)


def _new_ticket(reader: classify.Reader, mail: ParsedMail, now: datetime) -> TicketView:
    """As ``Intake._new_ticket`` classifies (a mailbox's own team would win over ``team``)."""
    found = reader.classify(mail.subject, mail.new_text or mail.body_text,
                            now=mail.date or now)
    return TicketView(found.category, found.team, found.priority, dict(found.fields),
                      reader.missing(found.category, found.fields), found.why,
                      scores=dict(found.scores), priority_why=found.priority_why)


def _existing_ticket(reader: classify.Reader, ticket: Ticket, mail: ParsedMail,
                     verdict: Verdict) -> TicketView:
    """As ``Intake._merge_fields``: only a trusted participant's reply supplies details."""
    supplied = reader.supplement(ticket.fields, mail.new_text, now=mail.date) if (
        verdict.trusted and verdict.participant) else {}
    fields = {**{str(k): str(v) for k, v in ticket.fields.items()}, **supplied}
    return TicketView(ticket.category, ticket.team, ticket.priority, fields,
                      reader.missing(ticket.category, fields),
                      f"the existing ticket {ticket.number}", supplied, ticket.status)


def _run(app: App, work: Callable[[Session], _Judgement]) -> tuple[_Judgement, _Source]:
    """Judge against the configured database, or the empty schema when it cannot be read."""
    source = _open_source(app)
    try:
        with _session(source) as session:
            return work(session), source
    except SQLAlchemyError as exc:
        if not source.used:
            raise
        fallback = _empty_source(f"reading the database failed: {_one_line(exc)}")
        try:
            with _session(fallback) as session:
                return work(session), fallback
        finally:
            fallback.engine.dispose()
    finally:
        source.engine.dispose()


# ------------------------------------------------------------------------------ entry point


def explain(app: App, raw: bytes, *, origin: str) -> Explanation:
    """Read ``raw`` as intake would and say what intake would do with it; writes nothing."""
    zone = app.config.support.zone
    mail: ParsedMail | None = None
    reason = ""
    try:
        mail = parse(raw, reading_for(app.config))  # as intake reads it; stores nothing
    except Quarantine as exc:
        reason = exc.reason
    except Exception as exc:  # as intake: a parser crash quarantines the mail
        reason = f"parser error: {type(exc).__name__}: {exc}"
    def work(session: Session) -> _Judgement:
        if mail is None:  # only the quarantine's own deduplication can apply
            return _Judgement(_quarantine_verdict(session, raw, reason))
        return _judge(session, app, mail, raw)

    judgement, source = _run(app, work)
    notes: list[str] = []
    if not source.used:
        notes.append(NO_DATABASE)
    if mail is None:
        return Explanation(origin, False, judgement.verdict, zone, source.detail, source.used,
                           raw_size=len(raw), notes=tuple(notes))
    ticket = judgement.ticket if judgement.verdict.action in ("new", "follow-up") else None
    return Explanation(origin, True, judgement.verdict, zone, source.detail, source.used,
                       mail=mail, attachments=_attachments(app, mail, judgement.verdict),
                       ticket=ticket, raw_size=len(raw), notes=tuple(notes),
                       handler=judgement.handler)


# ------------------------------------------------------------------------------ rendering


def _indent(text_: str, prefix: str = "  | ") -> list[str]:
    lines = text_.rstrip("\n").splitlines() or [""]
    return [f"{prefix}{line}".rstrip() for line in lines]


def _ids(values: Sequence[str]) -> str:
    return " ".join(f"<{v}>" for v in values) or "-"


def _addresses(values: Sequence[Address]) -> str:
    return ", ".join(str(a) for a in values) or "-"


def _size(n: int) -> str:
    return f"{n:,} bytes"


def render(expl: Explanation) -> str:
    """The report for a person: envelope, charsets, body, attachments, verdict."""
    out: list[str] = [f"Message: {expl.origin} ({_size(expl.raw_size)})"]
    mail = expl.mail
    if mail is None:
        out += ["", "Could not be read as a mail.", f"  reason: {expl.verdict.reason}", "",
                "Verdict", f"  Verdict: {expl.verdict.line()}",
                "", "Database", f"  {expl.database}"]
        return "\n".join(out)

    zone_name = getattr(expl.zone, "key", str(expl.zone))
    date = "-"
    if mail.date is not None:
        date = (f"{format_time(mail.date, expl.zone)} ({zone_name}); "
                f"sent as {format_time(mail.date, mail.date.tzinfo or expl.zone)}")
    out += ["", "Envelope / headers",
            f"  From:         {mail.from_ or '- (no sender address)'}",
            f"  To:           {_addresses(mail.to)}",
            f"  Cc:           {_addresses(mail.cc)}",
            f"  Reply-To:     {_addresses(mail.reply_to)}",
            f"  Subject:      {mail.subject or '-'}",
            f"  Date:         {date}",
            f"  Message-ID:   {_ids([mail.message_id] if mail.message_id else [])}",
            f"  In-Reply-To:  {_ids(mail.in_reply_to)}",
            f"  References:   {_ids(mail.references)}",
            f"  Content-Type: {mail.content_type}; language {mail.language}"]

    out += ["", "Charsets"]
    declared = sorted({n.declared for n in mail.charsets if n.declared})
    used = sorted({n.used for n in mail.charsets})
    out.append(f"  declared: {', '.join(declared) or '(none)'}; used: {', '.join(used) or '-'}")
    for note in mail.charsets:
        out.append(f"  {note.where}: repair: {note.repair}" if note.repair else
                   f"  {note.where}: declared {note.declared or '(none)'}, "
                   f"decoded as {note.used}")
    if not any(n.repair for n in mail.charsets):
        out.append("  no repair was needed")

    out += ["", "Body (new text, as the ticket shows it)", *_indent(mail.new_text or "(empty)")]
    out += ["", "Quoted history (folded away)",
            *(_indent(mail.quoted_text) if mail.quoted_text.strip() else ["  (none)"])]
    if mail.body_html:
        out.append(f"  (an HTML part of {len(mail.body_html):,} characters is kept as well)")

    out += ["", "Attachments"]
    if not expl.attachments:
        out.append("  (none)")
    for i, att in enumerate(expl.attachments, 1):
        extra = ", inline" if att.inline else ""
        extra += f", from {att.origin}" if att.origin != "mime" else ""
        extra += ", signature (never relayed)" if att.signature else ""
        out.append(f"  {i}. {att.filename}  {att.content_type}  {_size(att.size)}{extra}")
        out.append(f"     sha256 {att.sha256}")
        out.append(f"     {'skipped: ' + att.skipped if att.skipped else 'stored'}")

    verdict = expl.verdict
    out += ["", "Verdict", f"  Verdict: {verdict.line()}"]
    if verdict.reason and verdict.action in ("new", "follow-up"):
        out.append(f"  why: {verdict.reason}")
    if verdict.action == "new" and verdict.rule == "none":
        out.append("  threading: no subject number, In-Reply-To or References names a ticket")

    if expl.ticket is not None:
        t = expl.ticket
        title = "Classification (the new ticket)" if verdict.action == "new" else \
            f"Classification (ticket {verdict.number}, status {t.status})"
        out += ["", title,
                f"  category {t.category or '-'} ({t.why}), team {t.team or '-'}, "
                f"priority {t.priority}",
                "  fields: " + (", ".join(f"{k}={v}" for k, v in t.fields.items()) or "(none)")]
        if t.scores:
            out.append("  scores: " + ", ".join(f"{name} {score}" for name, score in sorted(
                t.scores.items(), key=lambda item: -item[1])))
        if t.priority_why:
            out.append(f"  priority {t.priority}: {t.priority_why}")
        if t.supplied:
            out.append("  supplied by this reply: " + ", ".join(sorted(t.supplied)))
        out.append("  missing required details: " + (", ".join(
            f"{f.name} ({f.label_zh} / {f.label_en})" for f in t.missing) or "none"))

    if expl.handler is not None:
        h = expl.handler
        out += ["", "Handler mail",
                f"  handler: yes; proof: {h.proof} ({h.reason})"]
        for line, ok, detail in h.commands:
            out.append(f"  {'would apply' if ok else 'would refuse'}: {line}: {detail}")
        if h.proven and not h.commands:
            out.append("  no commands: the text would be relayed to the requester")
    elif verdict.action == "follow-up":
        out += ["", "Handler mail", "  handler: no (commands in the text are just text)"]

    if mail.defects:
        out += ["", "Parser notes", *(f"  {d}" for d in mail.defects)]
    out += ["", "Database", f"  {expl.database}"]
    out += [f"  note: {n}" for n in expl.notes if n != NO_DATABASE]
    return "\n".join(out)
