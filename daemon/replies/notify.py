"""Which mail goes out for which event, and when no automatic mail may go at all.

Intake calls :class:`Notify` inside its transaction; every mail is rendered, composed and
queued in the outbox right there, so it commits (or rolls back) with the ticket change.

No automatic mail ever goes to: an auto-responder, bounce or list (intake already stops those,
and :func:`~daemon.intake.rules.is_auto_sender` catches the rest, e.g. a foreign X-Loop), one of
our own addresses, an address that bounced permanently within ``[mail] bounce_hold_hours``, or
an address that already got ``[mail] auto_reply_limit`` automatic mails in the last hour (the
loop brake). Each of those decisions is written on the ticket's event log.

Locale: a requester who wrote in Chinese gets zh-CN, one who wrote in English gets en; mail to
handlers and team leads uses the configured default locale.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import timedelta
from email.errors import MessageError

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from daemon import classify, sla, tickets
from daemon.app import App
from daemon.errors import TemplateError
from daemon.intake import rules
from daemon.intake.parsed import Address, ParsedMail
from daemon.intake.pipeline import rule_context
from daemon.models import Message, OutboxMail, Suppression, Ticket
from daemon.replies import kinds
from daemon.replies.compose import compose, make_message_id
from daemon.replies.outbox import enqueue

log = logging.getLogger("ticketd.notify")


def requester_locale(ticket: Ticket) -> str:
    return "zh-CN" if ticket.language == "zh" else "en"


class Notify:
    """The outgoing side of intake (implements the pipeline's Notifier protocol)."""

    def __init__(self, app: App) -> None:
        self.app = app

    # ---------------------------------------------------------------- events

    def ticket_created(self, session: Session, ticket: Ticket, message: Message,
                       mail: ParsedMail) -> None:
        to = self._reply_address(mail)
        if to is None or not self.may_auto_send(session, ticket, to.email, mail):
            return
        locale = requester_locale(ticket)
        zone = self.app.config.support.zone
        within = sla.assign_within(ticket.priority)
        base = self._base(ticket, locale)
        thread = self._thread_of(mail)
        self.send(session, ticket, kinds.Acceptance(
            **base, requester_name=ticket.requester_name, priority=ticket.priority,
            category=ticket.category or "", team=ticket.team or "", assign_within=within,
            assign_by=sla.assign_deadline(ticket.priority, ticket.created_at).astimezone(zone),
        ), [to], *thread)
        missing = classify.missing_fields(ticket.category, ticket.fields)
        if ticket.status != "need_info" or not missing:
            return
        if not self.may_auto_send(session, ticket, to.email, mail):
            return
        zh = locale == "zh-CN"
        self.send(session, ticket, kinds.NeedInfo(
            **base, requester_name=ticket.requester_name, category=ticket.category or "",
            missing=tuple(kinds.MissingDetail(label=f.label_zh if zh else f.label_en,
                                              hint=f.hint_zh if zh else f.hint_en)
                          for f in missing),
        ), [to], *thread)

    def follow_up(self, session: Session, ticket: Ticket, message: Message,
                  mail: ParsedMail) -> None:
        """A requester's follow-up gets no automatic mail (handlers are told separately)."""

    def ticket_reopened(self, session: Session, ticket: Ticket, message: Message,
                        mail: ParsedMail) -> None:
        """Tell the requester their reply reopened the ticket (an automatic mail)."""
        to = self._reply_address(mail)
        if to is None or not self.may_auto_send(session, ticket, to.email, mail):
            return
        locale = requester_locale(ticket)
        self.send(session, ticket, kinds.Reopened(
            **self._base(ticket, locale), requester_name=ticket.requester_name,
            handler_name=ticket.handler, reason=mail.new_text.strip()[:2000],
        ), [to], *self._thread_of(mail))

    # ---------------------------------------------------------------- policy

    def may_auto_send(self, session: Session, ticket: Ticket, address: str,
                      mail: ParsedMail | None = None) -> bool:
        reason = self.suppression_reason(session, address, mail)
        if reason is None:
            return True
        tickets.record(session, ticket, at=self.app.clock.now(), actor=tickets.SYSTEM,
                       action="mail-suppressed", detail=f"no automatic mail to {address}: "
                       f"{reason}")
        log.info("%s: no automatic mail to %s: %s", ticket.number, address, reason)
        return False

    def suppression_reason(self, session: Session, address: str,
                           mail: ParsedMail | None = None) -> str | None:
        cfg = self.app.config
        now = self.app.clock.now()
        address = address.lower()
        if address in cfg.own_addresses:
            return "it is our own address"
        if mail is not None and rules.is_auto_sender(mail, rule_context(self.app)):
            return "the sender is an automatic sender"
        held = session.scalars(select(Suppression).where(
            Suppression.address == address, Suppression.until > now)).first()
        if held is not None:
            return (f"it bounced permanently ({held.reason}); "
                    f"held until {held.until:%Y-%m-%d %H:%M} UTC")
        recent = session.scalar(select(func.count()).select_from(OutboxMail).where(
            OutboxMail.primary_recipient == address, OutboxMail.automatic.is_(True),
            OutboxMail.created_at > now - timedelta(hours=1))) or 0
        if recent >= cfg.mail.auto_reply_limit:
            return (f"loop brake: {recent} automatic mails in the last hour "
                    f"(limit [mail] auto_reply_limit = {cfg.mail.auto_reply_limit})")
        return None

    # ---------------------------------------------------------------- sending

    def send(self, session: Session, ticket: Ticket, obj: kinds.MailKind, to: Sequence[Address],
             in_reply_to: str | None, references: Sequence[str], *,
             automatic: bool = True) -> OutboxMail | None:
        """Render, compose and queue one mail; a template failure is logged, never raised."""
        cfg = self.app.config
        try:
            rendered = self.app.templates.render(obj.kind, obj.locale, obj)
        except TemplateError as exc:
            tickets.record(session, ticket, at=self.app.clock.now(), actor=tickets.SYSTEM,
                           action="mail-failed", detail=f"{obj.kind} mail not sent: {exc}")
            log.error("%s: %s mail not rendered: %s", ticket.number, obj.kind, exc)
            return None
        if rendered.fallback:  # a broken site template: written from the last good or packaged
            tickets.record(session, ticket, at=self.app.clock.now(), actor=tickets.SYSTEM,
                           action="mail-template-fallback", detail=rendered.fallback)
        message_id, _token = make_message_id(cfg.support.domain)
        now = self.app.clock.now()
        try:
            msg = compose(rendered, sender=Address(cfg.support.name, cfg.support.address),
                          to=to, message_id=message_id, in_reply_to=in_reply_to,
                          references=references, date=now, auto_submitted=automatic,
                          loop_header=(cfg.mail.loop_header, cfg.support.address))
        except (ValueError, MessageError) as exc:
            # e.g. a non-ASCII address: the ticket stands, the mail is recorded as not sent.
            tickets.record(session, ticket, at=now, actor=tickets.SYSTEM,
                           action="mail-failed", detail=f"{obj.kind} mail not sent: {exc}")
            log.error("%s: %s mail not composed: %s", ticket.number, obj.kind, exc)
            return None
        row = enqueue(session, ticket=ticket, kind=obj.kind, msg=msg,
                      recipients=[a.email for a in to], text=rendered.text, html=rendered.html,
                      at=now, automatic=automatic)
        tickets.record(session, ticket, at=now, actor=tickets.SYSTEM, action="mail-queued",
                       detail=f"{obj.kind} mail to {', '.join(a.email for a in to)} "
                              f"({message_id})")
        return row

    def _base(self, ticket: Ticket, locale: str) -> dict[str, str]:
        cfg = self.app.config.support
        return {"number": ticket.number, "subject": ticket.subject, "support_name": cfg.name,
                "support_address": cfg.address, "locale": locale}

    @staticmethod
    def _reply_address(mail: ParsedMail) -> Address | None:
        if mail.reply_to:
            return mail.reply_to[0]
        return mail.from_

    @staticmethod
    def _thread_of(mail: ParsedMail) -> tuple[str | None, tuple[str, ...]]:
        refs = tuple(mail.references)
        if mail.message_id:
            refs = (*refs, mail.message_id)
        return mail.message_id, refs

