"""The database tables, as SQLAlchemy 2 typed mappings.

Only these modules write rows: ``tickets`` (tickets, events), ``intake.pipeline`` (messages,
attachments, intake log), ``intake.quarantine``, ``ticket_numbers`` (counters),
``replies.outbox`` (outbox) and ``intake.imap`` (cursors). The event log is append-only: every
change to a ticket adds a row, so a ticket can be traced end to end.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, ClassVar

from sqlalchemy import (
    JSON,
    BigInteger,
    CheckConstraint,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

from daemon.states import PRIORITIES, Status
from daemon.verp import new_key as new_verp_key

# Every constraint and index gets a predictable name, so migrations (SQLite batch mode
# included) can address them.
NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def _one_of(column: str, values: tuple[str, ...]) -> str:
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


STATUS_VALUES = tuple(s.value for s in Status)
OUTBOX_STATUSES = ("queued", "sending", "sent", "failed")


class UTCDateTime(TypeDecorator[datetime]):
    """Aware datetimes in, aware UTC datetimes out, on SQLite and PostgreSQL alike."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to the database")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map: ClassVar[dict[Any, Any]] = {
        datetime: UTCDateTime,
        dict[str, Any]: JSON,
        list[Any]: JSON,
    }


class Ticket(Base):
    __tablename__ = "tickets"
    __table_args__ = (
        CheckConstraint(_one_of("status", STATUS_VALUES), name="status"),
        CheckConstraint(_one_of("priority", PRIORITIES), name="priority"),
        # the new-ticket budget: a mailbox's / a domain's tickets of the last hour
        Index("ix_tickets_mailbox_created", "requester_mailbox", "created_at"),
        Index("ix_tickets_domain_created", "requester_domain", "created_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    number: Mapped[str] = mapped_column(String(40), unique=True)
    subject: Mapped[str] = mapped_column(Text, default="")
    status: Mapped[str] = mapped_column(String(20), index=True, default="new")
    priority: Mapped[str] = mapped_column(String(4), default="P2")
    category: Mapped[str | None] = mapped_column(Text)
    team: Mapped[str | None] = mapped_column(Text)
    handler: Mapped[str | None] = mapped_column(Text)   # the main handler (lower case)
    co_handlers: Mapped[list[Any]] = mapped_column(default=list)
    requester_name: Mapped[str] = mapped_column(Text, default="")
    requester_email: Mapped[str] = mapped_column(String(998), index=True)
    # requester_email normalised (lower case, +tag dropped: addresses.normalize) and its domain
    requester_mailbox: Mapped[str] = mapped_column(String(998), server_default="")
    requester_domain: Mapped[str] = mapped_column(String(998), server_default="")
    cc: Mapped[list[Any]] = mapped_column(default=list)
    fields: Mapped[dict[str, Any]] = mapped_column(default=dict)
    language: Mapped[str] = mapped_column(String(10), default="en")
    mailbox: Mapped[str | None] = mapped_column(Text)
    linked_ticket_id: Mapped[int | None] = mapped_column(ForeignKey("tickets.id"))
    created_at: Mapped[datetime] = mapped_column(index=True)  # the new-ticket budget's hour
    updated_at: Mapped[datetime]
    # The process clocks: when a main handler must be assigned by, and what became of it.
    assign_by: Mapped[datetime | None] = mapped_column(index=True)
    assigned_at: Mapped[datetime | None]
    breach_notified_at: Mapped[datetime | None]   # the sla_breach mail for this assign_by
    status_changed_at: Mapped[datetime | None]
    reminded_at: Mapped[datetime | None]          # the need_info reminder
    resolved_at: Mapped[datetime | None]
    closed_at: Mapped[datetime | None]
    resolution: Mapped[str | None] = mapped_column(Text)
    rating: Mapped[int | None] = mapped_column(Integer)   # the requester's 1-5 satisfaction

    messages: Mapped[list[Message]] = relationship(
        back_populates="ticket", order_by="Message.id", foreign_keys="Message.ticket_id"
    )
    events: Mapped[list[Event]] = relationship(back_populates="ticket", order_by="Event.id")
    linked: Mapped[Ticket | None] = relationship(remote_side="Ticket.id",
                                                 foreign_keys=[linked_ticket_id])


class Message(Base):
    """One mail in either direction; the raw bytes are kept for incoming mail."""

    __tablename__ = "messages"
    __table_args__ = (CheckConstraint(_one_of("direction", ("in", "out")), name="direction"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    ticket_id: Mapped[int | None] = mapped_column(ForeignKey("tickets.id"), index=True)
    direction: Mapped[str] = mapped_column(String(3))  # "in" | "out"
    kind: Mapped[str] = mapped_column(String(30))  # "new", "follow-up", "acceptance", ...
    message_id: Mapped[str | None] = mapped_column(String(998), index=True)
    # Message-ID, or "sha256:<raw hash>" when it is missing or reused by an unrelated mail.
    dedup_key: Mapped[str] = mapped_column(String(998), unique=True)
    in_reply_to: Mapped[str | None] = mapped_column(Text)
    references: Mapped[list[Any]] = mapped_column(default=list)
    from_name: Mapped[str] = mapped_column(Text, default="")
    from_email: Mapped[str] = mapped_column(Text, default="")
    to: Mapped[list[Any]] = mapped_column(default=list)
    cc: Mapped[list[Any]] = mapped_column(default=list)
    subject: Mapped[str] = mapped_column(Text, default="")
    date: Mapped[datetime | None]
    body_text: Mapped[str] = mapped_column(Text, default="")
    body_html: Mapped[str | None] = mapped_column(Text)
    new_text: Mapped[str] = mapped_column(Text, default="")
    quoted_text: Mapped[str] = mapped_column(Text, default="")
    raw: Mapped[bytes | None] = mapped_column(LargeBinary)
    raw_sha256: Mapped[str | None] = mapped_column(String(64), index=True)
    origin: Mapped[str] = mapped_column(Text, default="")
    trusted: Mapped[bool] = mapped_column(default=True)
    created_at: Mapped[datetime]

    ticket: Mapped[Ticket | None] = relationship(back_populates="messages",
                                                 foreign_keys=[ticket_id])
    attachments: Mapped[list[Attachment]] = relationship(back_populates="message",
                                                         order_by="Attachment.id")


# The signature part of multipart/signed (S/MIME, PGP): kept as an attachment, since nothing
# received is dropped, but marked, so that nothing relays it to others as a file.
class Attachment(Base):
    """An attachment's metadata; the bytes live content-addressed under [attachments] dir."""

    __tablename__ = "attachments"

    id: Mapped[int] = mapped_column(primary_key=True)
    message_id: Mapped[int] = mapped_column(ForeignKey("messages.id"), index=True)
    filename: Mapped[str] = mapped_column(Text)
    safe_filename: Mapped[str] = mapped_column(Text)
    content_type: Mapped[str] = mapped_column(Text)
    size: Mapped[int] = mapped_column(BigInteger)
    sha256: Mapped[str] = mapped_column(String(64), index=True)
    inline: Mapped[bool] = mapped_column(default=False)
    skipped: Mapped[str | None] = mapped_column(Text)  # why it was not stored, if it was not

    message: Mapped[Message] = relationship(back_populates="attachments")


class Event(Base):
    """Append-only log: who did what to which ticket, when, with before/after values."""

    __tablename__ = "events"

    id: Mapped[int] = mapped_column(primary_key=True)
    ticket_id: Mapped[int] = mapped_column(ForeignKey("tickets.id"), index=True)
    at: Mapped[datetime]
    actor: Mapped[str] = mapped_column(Text)
    action: Mapped[str] = mapped_column(String(60))
    detail: Mapped[str] = mapped_column(Text, default="")
    before: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    after: Mapped[dict[str, Any] | None] = mapped_column(JSON)

    ticket: Mapped[Ticket] = relationship(back_populates="events")


class IntakeRecord(Base):
    """Every message intake has seen, whatever became of it: the dedup memory."""

    __tablename__ = "intake_log"

    id: Mapped[int] = mapped_column(primary_key=True)
    dedup_key: Mapped[str] = mapped_column(String(998), unique=True)
    message_id: Mapped[str | None] = mapped_column(String(998), index=True)
    raw_sha256: Mapped[str] = mapped_column(String(64), index=True)  # line endings normalised
    body_sha256: Mapped[str] = mapped_column(String(64), default="")  # body only, same rule
    action: Mapped[str] = mapped_column(String(20))  # created|appended|ignored|bounce|quarantined
    reason: Mapped[str] = mapped_column(Text, default="")
    ticket_id: Mapped[int | None] = mapped_column(ForeignKey("tickets.id"))
    origin: Mapped[str] = mapped_column(Text, default="")
    at: Mapped[datetime]

    # Set instead of ticket_id by intake, for a ticket not written yet: the row and its ticket
    # go in the same flush.
    ticket: Mapped[Ticket | None] = relationship()


class Quarantined(Base):
    """A message that could not be processed, kept whole with the reason."""

    __tablename__ = "quarantine"

    id: Mapped[int] = mapped_column(primary_key=True)
    at: Mapped[datetime]
    reason: Mapped[str] = mapped_column(Text)
    origin: Mapped[str] = mapped_column(Text, default="")
    message_id: Mapped[str | None] = mapped_column(String(998))
    raw: Mapped[bytes] = mapped_column(LargeBinary)
    raw_sha256: Mapped[str] = mapped_column(String(64), index=True)
    released_at: Mapped[datetime | None]


class MailboxCursor(Base):
    """Where polling of one IMAP folder stands."""

    __tablename__ = "mailbox_cursors"

    mailbox: Mapped[str] = mapped_column(String(400), primary_key=True)
    uidvalidity: Mapped[int | None] = mapped_column(BigInteger)
    last_uid: Mapped[int] = mapped_column(BigInteger, default=0)
    last_poll_at: Mapped[datetime | None]


class TicketCounter(Base):
    """The last serial handed out for one prefix on one local day."""

    __tablename__ = "ticket_counters"
    __table_args__ = (UniqueConstraint("prefix", "day"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    prefix: Mapped[str] = mapped_column(String(10))
    day: Mapped[str] = mapped_column(String(8))
    last_serial: Mapped[int] = mapped_column(BigInteger)


class OutboxMail(Base):
    """A mail to send, written in the same transaction as the change that causes it."""

    __tablename__ = "outbox"
    __table_args__ = (Index("ix_outbox_due", "status", "next_attempt_at"),
                      CheckConstraint(_one_of("status", OUTBOX_STATUSES), name="status"))

    id: Mapped[int] = mapped_column(primary_key=True)
    ticket_id: Mapped[int | None] = mapped_column(ForeignKey("tickets.id"), index=True)
    kind: Mapped[str] = mapped_column(String(30))
    message_id: Mapped[str] = mapped_column(String(998), unique=True)
    sender: Mapped[str] = mapped_column(Text)
    recipients: Mapped[list[Any]] = mapped_column()
    primary_recipient: Mapped[str] = mapped_column(String(998), index=True)  # for the loop brake
    subject: Mapped[str] = mapped_column(Text, default="")
    # The size of the MIME bytes once written (they are kept in OutboxBytes, not here: see
    # there); NULL while the mail is not written. Rows queued before migration 0006 have
    # their bytes from the start, and no draft.
    size: Mapped[int | None] = mapped_column(Integer)
    automatic: Mapped[bool] = mapped_column(default=True)
    # What the mail is written from: the kind's variables as of queue time (kinds.to_json),
    # its locale, the From display name, To and Cc as [{"name", "email"}], the thread and the
    # ticket's attachments to embed. Null for a row queued with its bytes (before 0006).
    locale: Mapped[str | None] = mapped_column(String(35))
    variables: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    sender_name: Mapped[str | None] = mapped_column(Text)
    to_addresses: Mapped[list[Any] | None] = mapped_column(JSON)
    cc_addresses: Mapped[list[Any] | None] = mapped_column(JSON)
    in_reply_to: Mapped[str | None] = mapped_column(Text)
    thread_references: Mapped[list[Any] | None] = mapped_column(JSON)
    attachment_ids: Mapped[list[Any] | None] = mapped_column(JSON)
    status: Mapped[str] = mapped_column(String(10), default="queued")  # queued|sending|sent|failed
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime]
    last_error: Mapped[str | None] = mapped_column(Text)
    claimed_by: Mapped[str | None] = mapped_column(Text)
    claimed_until: Mapped[datetime | None]
    created_at: Mapped[datetime]
    sent_at: Mapped[datetime | None]
    # The key of this mail's VERP tags (daemon/verp.py): random, never sent; NULL for rows
    # queued before migration 0005 (they go out with the plain support address).
    verp_key: Mapped[str | None] = mapped_column(String(32), default=new_verp_key)

    # Set instead of ticket_id when queueing, for a ticket not written yet (a new ticket is
    # written once, with its final values, in the flush that writes its mails).
    ticket: Mapped[Ticket | None] = relationship()


class OutboxBytes(Base):
    """The MIME bytes of one outbox mail, written once at send time from the row's draft
    (replies.writer) and kept, so a resend after a crash sends the identical mail.

    Why a table of their own: SQLite rewrites a whole row on every UPDATE, blobs included, and
    an outbox row changes status about three times (stored, claimed, sent, or a retry): with
    the bytes on the row each change wrote them into the WAL again (4 ms for a 340 KB mail,
    against 0.03 ms without). Here they are inserted once and only read afterwards; the row
    keeps their ``size`` (what a claim budgets its reads with).
    """

    __tablename__ = "outbox_bytes"

    outbox_id: Mapped[int] = mapped_column(ForeignKey("outbox.id"), primary_key=True)
    raw: Mapped[bytes] = mapped_column(LargeBinary)


class Lease(Base):
    """A time-limited claim on a shared job (one mailbox poller among several instances)."""

    __tablename__ = "leases"

    name: Mapped[str] = mapped_column(String(400), primary_key=True)
    holder: Mapped[str] = mapped_column(Text)
    expires_at: Mapped[datetime]


class Suppression(Base):
    """An address that gets no automatic mail until ``until`` (permanent bounce)."""

    __tablename__ = "suppressions"

    id: Mapped[int] = mapped_column(primary_key=True)
    address: Mapped[str] = mapped_column(String(998), index=True)
    reason: Mapped[str] = mapped_column(Text)
    at: Mapped[datetime]
    until: Mapped[datetime]


class TeamRotation(Base):
    """Where round-robin assignment stands in one team: the member who got the last ticket."""

    __tablename__ = "team_rotation"

    team: Mapped[str] = mapped_column(String(100), primary_key=True)
    last_handler: Mapped[str] = mapped_column(Text)
    at: Mapped[datetime]
