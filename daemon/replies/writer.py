"""Writes the mail of a queued outbox row at send time: its kind's template, then MIME bytes.

Why at send time: rendering and composing inside the intake transaction cost a third of
intake (issue 15). The row holds what the mail is written from (:mod:`daemon.replies.outbox`
``enqueue``): the kind's variables as of queue time, locale, sender name, To/Cc, thread,
attachment ids and the Message-ID chosen then. :func:`job_of` reads that into a :class:`Job`,
a plain picklable value, and :func:`write` turns a job into bytes with no database at all, so
it can run in another process (:mod:`daemon.replies.composers`). The outbox stores the bytes
(``outbox_bytes``) before sending them: a crash after that resends the identical mail.

A job that cannot be written (a template that fails even from its packaged fallback, variables
that no longer fit the kind, an address compose refuses, a mail over the size cap) is an
:class:`Unwritable` with the reason; the outbox marks the row failed and records
``mail-failed`` on the ticket. A site template that is broken but has a fallback writes the
mail from it; :attr:`Written.fallback` says so for the ticket's ``mail-template-fallback``.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, tzinfo
from email.errors import MessageError
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from daemon.addresses import Address
from daemon.app import App
from daemon.blobs import BlobStore
from daemon.errors import TemplateError
from daemon.models import Attachment, OutboxMail
from daemon.replies import kinds
from daemon.replies.compose import OutgoingAttachment, compose, subject_line, to_bytes
from daemon.replies.templates import TemplateStore

log = logging.getLogger("ticketd.outbox")

__all__ = ["FileRef", "Job", "Unwritable", "Written", "job_of", "write"]


@dataclass(frozen=True)
class FileRef:
    """A stored attachment to embed, by its blob."""

    filename: str
    content_type: str
    sha256: str


@dataclass(frozen=True)
class Job:
    """Everything needed to write one row's mail (picklable: it may cross to a worker)."""

    row_id: int
    kind: str
    locale: str
    variables: dict[str, Any]
    zone: tzinfo
    sender: Address
    to: tuple[Address, ...]
    cc: tuple[Address, ...]
    message_id: str
    in_reply_to: str | None
    references: tuple[str, ...]
    date: datetime
    automatic: bool
    loop_header: tuple[str, str]
    files: tuple[FileRef, ...]
    attachments_dir: str
    max_bytes: int
    templates_dir: str  # the site templates and default locale as configured now (a worker
    default_locale: str  # builds one template store per pair, so a SIGHUP reload applies)


@dataclass(frozen=True)
class Written:
    """A row's mail, written: the bytes to store and send, and what the ticket shows."""

    row_id: int
    raw: bytes
    subject: str
    text: str
    html: str | None
    fallback: str | None  # why a broken site template was not used, else None


@dataclass(frozen=True)
class Unwritable:
    """A row whose mail cannot be written, and why (one line)."""

    row_id: int
    reason: str


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


def write(job: Job, store: TemplateStore) -> Written | Unwritable:
    """Render and compose ``job``'s mail; never raises for a problem of the mail itself."""
    try:
        obj = kinds.from_json(job.kind, job.variables, job.zone)
        rendered = store.render(job.kind, job.locale, obj)
    except (TemplateError, ValueError) as exc:
        return Unwritable(job.row_id, f"{job.kind} mail not written: {exc}")
    try:
        msg = compose(rendered, sender=job.sender, to=job.to, cc=job.cc,
                      message_id=job.message_id, in_reply_to=job.in_reply_to,
                      references=job.references, date=job.date, auto_submitted=job.automatic,
                      loop_header=job.loop_header, attachments=_payloads(job),
                      max_bytes=job.max_bytes)
        raw = to_bytes(msg)
    except (ValueError, MessageError, OSError, UnicodeError) as exc:
        # e.g. a non-ASCII address: the ticket stands, the mail is recorded as not sent.
        return Unwritable(job.row_id, f"{job.kind} mail not composed: {exc}")
    return Written(job.row_id, raw, subject_line(rendered), rendered.text, rendered.html,
                   rendered.fallback)


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


def _payloads(job: Job) -> list[OutgoingAttachment]:
    """The files' bytes from the blob store; a blob that is gone is left out, as before."""
    blobs = BlobStore(Path(job.attachments_dir))
    return [OutgoingAttachment(f.filename, f.content_type, blobs.get(f.sha256))
            for f in job.files if f.sha256 in blobs]
