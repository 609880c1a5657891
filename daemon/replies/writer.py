"""Writes the mail of a queued outbox row at send time: its kind's template, then MIME bytes.

Why at send time: rendering and composing inside the intake transaction cost a third of
intake (issue 15). The row holds what the mail is written from (:mod:`daemon.replies.outbox`
``enqueue``): the kind's variables as of queue time, locale, sender name, To/Cc, thread,
attachment ids and the Message-ID chosen then. ``outbox.job_of`` reads that into a :class:`Job`,
a plain picklable value, and :func:`write` turns a job into bytes with no database at all, so
it can run in another process (:mod:`daemon.replies.composers`), which imports neither the
database layer nor SQLAlchemy. The outbox stores the bytes
(``outbox_bytes``) before sending them: a crash after that resends the identical mail.

A job that cannot be written (a template that fails even from its packaged fallback, variables
that no longer fit the kind, an address compose refuses, a mail over the size cap) is an
:class:`Unwritable` with the reason; the outbox marks the row failed and records
``mail-failed`` on the ticket. A site template that is broken but has a fallback writes the
mail from it; :attr:`Written.fallback` says so for the ticket's ``mail-template-fallback``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, tzinfo
from email.errors import MessageError
from pathlib import Path
from typing import Any

from daemon.addresses import Address
from daemon.blobs import BlobStore
from daemon.errors import TemplateError
from daemon.replies import kinds
from daemon.replies.compose import OutgoingAttachment, compose, subject_line, to_bytes
from daemon.replies.templates import TemplateStore

log = logging.getLogger("ticketd.outbox")

__all__ = ["FileRef", "Job", "Unwritable", "Written", "write"]


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


def _payloads(job: Job) -> list[OutgoingAttachment]:
    """The files' bytes from the blob store; a blob that is gone is left out, as before."""
    blobs = BlobStore(Path(job.attachments_dir))
    return [OutgoingAttachment(f.filename, f.content_type, blobs.get(f.sha256))
            for f in job.files if f.sha256 in blobs]
