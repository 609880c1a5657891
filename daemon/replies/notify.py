"""Turns the mails a change implies into queued outgoing mail, and decides when none may go.

The process (:mod:`daemon.workflow`) returns :class:`~daemon.workflow.MailIntent` values; the
act layer (intake, a command) hands them to :meth:`Notify.deliver` inside its transaction. Each
intent is queued in the outbox right there, as what its mail is written from (the kind's
variables as of now, addressing, thread, the Message-ID chosen now), so it commits (or rolls
back) with the ticket change; the mail itself is written when it is sent.

No automatic mail ever goes to: an automatic sender (intake tells us through the
:class:`Trigger`), one of our own addresses, an address that bounced permanently within
``[mail] bounce_hold_hours``, or a mailbox that already got ``[mail] auto_reply_limit``
automatic mails in the last hour (the loop brake, counted per normalised mailbox, so
``victim+1@`` and ``victim+2@`` count as one). Each such decision is written on the ticket's
event log.

Threading: a mail to the requester answers the mail that caused it (or the requester's last
mail); a mail to a handler answers the last mail of that conversation, so each person's mail
client shows one thread per ticket.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy.orm import Session

from daemon import tickets
from daemon.addresses import Address, normalize
from daemon.app import App
from daemon.clock import format_time
from daemon.intents import MailIntent
from daemon.models import OutboxMail, Ticket
from daemon.replies import brake, kinds
from daemon.replies.compose import make_message_id
from daemon.replies.outbox import enqueue

log = logging.getLogger("ticketd.notify")

requester_locale = tickets.requester_locale

__all__ = ["Notify", "Trigger", "requester_locale"]


@dataclass(frozen=True)
class Trigger:
    """The incoming mail that caused a change: answers thread onto it."""

    message_id: str | None
    references: tuple[str, ...] = ()
    reply_to: Address | None = None   # where its author wants answers (Reply-To / From)
    auto_sender: bool = False         # intake judged the sender an automatic sender


class Notify:
    """The outgoing side of the process (implements the pipeline's Notifier protocol)."""

    def __init__(self, app: App) -> None:
        self.app = app

    # ---------------------------------------------------------------- intents -> outbox

    def deliver(self, session: Session, ticket: Ticket, intents: Sequence[MailIntent],
                trigger: Trigger | None = None) -> list[OutboxMail]:
        """Queue every intent's mail (those that policy allows); returns the rows queued."""
        rows = []
        for intent in intents:
            row = self._deliver_one(session, ticket, intent, trigger)
            if row is not None:
                rows.append(row)
        return rows

    def _deliver_one(self, session: Session, ticket: Ticket, intent: MailIntent,
                     trigger: Trigger | None) -> OutboxMail | None:
        to = list(intent.to)
        if intent.to_requester and trigger is not None and trigger.reply_to is not None \
                and to and to[0].email == ticket.requester_email:
            to[0] = trigger.reply_to
        auto_sender = bool(intent.to_requester and trigger is not None and trigger.auto_sender)
        own = self.app.config.is_own
        if intent.automatic:
            to = [a for a in to if self.may_auto_send(session, ticket, a.email,
                                                      auto_sender=auto_sender)]
        else:
            to = [a for a in to if not own(a.email)]
        if not to:
            return None
        taken = {a.email.lower() for a in to}
        cc = []
        for person in intent.cc:
            email = person.email.lower()
            if email in taken or own(email):
                continue
            if intent.automatic and self.suppression_reason(session, email) is not None:
                continue
            taken.add(email)
            cc.append(person)
        in_reply_to, references = self._thread(ticket, to[0].email, intent, trigger)
        obj = self._kind(ticket, intent)
        return self.send(session, ticket, obj, to, in_reply_to, references, cc=cc,
                         automatic=intent.automatic, sender_name=intent.sender_name,
                         attachment_ids=intent.attachment_ids)

    def _kind(self, ticket: Ticket, intent: MailIntent) -> kinds.MailKind:
        values: dict[str, Any] = dict(intent.values)
        if "missing" in values:
            values["missing"] = tuple(kinds.MissingDetail(label, hint)
                                      for label, hint in values["missing"])
        if "results" in values:
            values["results"] = tuple(kinds.CommandOutcome(*r) for r in values["results"])
        if "attachments" in values and intent.attachment_ids:
            values["attachments"] = self._attachment_infos(ticket, intent.attachment_ids)
        zone = self.app.config.support.zone
        for key in ("assign_by", "deadline"):
            if key in values and values[key] is not None:
                values[key] = values[key].astimezone(zone)
        cls = kinds.kind_class(intent.kind)
        return cls(**self._base(ticket, intent.locale), **values)

    def _attachment_infos(self, ticket: Ticket, ids: Sequence[int]
                          ) -> tuple[kinds.AttachmentInfo, ...]:
        found = {a.id: a for m in ticket.messages for a in m.attachments}
        return tuple(kinds.AttachmentInfo(found[i].safe_filename, found[i].size,
                                          found[i].content_type) for i in ids if i in found)

    def _thread(self, ticket: Ticket, recipient: str, intent: MailIntent,
                trigger: Trigger | None) -> tuple[str | None, tuple[str, ...]]:
        if intent.to_requester and trigger is not None and trigger.message_id:
            return trigger.message_id, (*trigger.references, trigger.message_id)
        recipient = recipient.lower()
        if intent.to_requester:  # the requester's own last mail, as mail clients thread
            for message in reversed(ticket.messages):
                if message.direction == "in" and message.message_id and \
                        message.from_email.lower() == recipient:
                    return message.message_id, (*message.references, message.message_id)
        for message in reversed(ticket.messages):
            if not message.message_id:
                continue
            mine = message.from_email.lower() == recipient if message.direction == "in" \
                else any(str(r.get("email", "")).lower() == recipient for r in message.to)
            if mine:
                return message.message_id, (*message.references, message.message_id)
        return None, ()

    # ---------------------------------------------------------------- policy

    def may_auto_send(self, session: Session, ticket: Ticket, address: str, *,
                      auto_sender: bool = False) -> bool:
        reason = "the sender is an automatic sender" if auto_sender else \
            self.suppression_reason(session, address)
        if reason is None:
            return True
        tickets.record(session, ticket, at=self.app.clock.now(), actor=tickets.SYSTEM,
                       action="mail-suppressed", detail=f"no automatic mail to {address}: "
                       f"{reason}")
        log.info("%s: no automatic mail to %s: %s", ticket.number, address, reason)
        return False

    def suppression_reason(self, session: Session, address: str) -> str | None:
        cfg = self.app.config
        now = self.app.clock.now()
        address = address.lower()
        if cfg.is_own(address):
            return "it is our own address"
        mailbox = normalize(address)
        held, recent = brake.look(session, address, mailbox, now)
        if held is not None:
            return (f"it bounced permanently ({held.reason}); "
                    f"held until {format_time(held.until, cfg.support.zone)}")
        if recent >= cfg.mail.auto_reply_limit:
            return (f"loop brake: {recent} automatic mails to {mailbox} in the last hour "
                    f"(limit [mail] auto_reply_limit = {cfg.mail.auto_reply_limit})")
        return None

    # ---------------------------------------------------------------- sending

    def send(self, session: Session, ticket: Ticket, obj: kinds.MailKind, to: Sequence[Address],
             in_reply_to: str | None, references: Sequence[str], *,
             cc: Sequence[Address] = (), automatic: bool = True,
             sender_name: str | None = None,
             attachment_ids: Sequence[int] = ()) -> OutboxMail:
        """Queue one mail: its variables and addressing now, its Message-ID now; the template
        is rendered and the MIME composed when it is sent (:mod:`daemon.replies.writer`),
        where a template or compose failure is recorded on the ticket as ``mail-failed``."""
        cfg = self.app.config
        message_id, _token = make_message_id(cfg.support.domain)
        now = self.app.clock.now()
        row = enqueue(session, ticket=ticket, mail=obj, message_id=message_id,
                      sender=Address(sender_name or cfg.support.name, cfg.support.address),
                      to=to, cc=cc, in_reply_to=in_reply_to, references=references, at=now,
                      automatic=automatic, attachment_ids=attachment_ids)
        tickets.record(session, ticket, at=now, actor=tickets.SYSTEM, action="mail-queued",
                       detail=f"{obj.kind} mail to {', '.join(a.email for a in to)}"
                              + (f", cc {', '.join(a.email for a in cc)}" if cc else "")
                              + f" ({message_id})")
        return row

    def _base(self, ticket: Ticket, locale: str) -> dict[str, str]:
        cfg = self.app.config.support
        return {"number": ticket.number, "subject": ticket.subject, "support_name": cfg.name,
                "support_address": cfg.address, "locale": locale}

