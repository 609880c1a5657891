"""`ticketd templates preview`: the complete MIME message a kind would produce, sent nowhere.

From a real ticket the variables come from its row, its first message and its attachments;
what a ticket cannot know yet (a handler's reply text, a resolution) comes from the kind's
built-in sample. Without a ticket the whole sample is used, so no database is needed.
"""

from __future__ import annotations

import dataclasses
from email.message import EmailMessage
from typing import Any

from daemon import sla, tickets
from daemon.addresses import Address
from daemon.app import App
from daemon.models import Ticket
from daemon.replies import kinds
from daemon.replies.compose import compose, make_message_id
from daemon.tickets import requester_locale


def _from_ticket(app: App, ticket: Ticket, kind: str, locale: str) -> kinds.MailKind:
    sample = kinds.sample(kind, locale)
    zone = app.config.support.zone
    first = ticket.messages[0] if ticket.messages else None
    known: dict[str, Any] = {
        "number": ticket.number, "subject": ticket.subject,
        "support_name": app.config.support.name, "support_address": app.config.support.address,
        "locale": locale, "requester_name": ticket.requester_name,
        "priority": ticket.priority, "category": ticket.category or "",
        "team": ticket.team or "", "fields": dict(ticket.fields),
        "requester": Address(ticket.requester_name, ticket.requester_email),
        "assign_within": sla.assign_within(ticket.priority),
        "assign_by": sla.assign_deadline(ticket.priority, ticket.created_at).astimezone(zone),
        "deadline": sla.assign_deadline(ticket.priority, ticket.created_at).astimezone(zone),
    }
    if ticket.handler:
        known["handler_name"] = ticket.handler
    if first is not None:
        known["text"] = first.new_text or first.body_text
        known["attachments"] = tuple(
            kinds.AttachmentInfo(filename=a.safe_filename, size=a.size,
                                 content_type=a.content_type) for a in first.attachments)
    names = {f.name for f in dataclasses.fields(sample)}
    return dataclasses.replace(sample, **{k: v for k, v in known.items() if k in names})


def build(app: App, kind: str, locale: str | None, number: str | None) -> EmailMessage:
    cfg = app.config
    if number:
        with app.ready_db().transaction() as session:
            ticket = tickets.get(session, number)
            loc = locale or requester_locale(ticket)
            obj = _from_ticket(app, ticket, kind, loc)
            to = [Address(ticket.requester_name, ticket.requester_email)]
            first = ticket.messages[0].message_id if ticket.messages else None
    else:
        loc = locale or cfg.support.locale
        obj = kinds.sample(kind, loc)
        to = [Address("张伟" if loc == "zh-CN" else "Alex Smith", "requester@example.com")]
        first = "request.1@client.example"
    rendered = app.templates.render(kind, obj.locale, obj)
    message_id, _ = make_message_id(cfg.support.domain)
    return compose(rendered, sender=Address(cfg.support.name, cfg.support.address), to=to,
                   message_id=message_id, in_reply_to=first,
                   references=[first] if first else [], date=app.clock.now(),
                   auto_submitted=kind != "reply",
                   loop_header=(cfg.mail.loop_header, cfg.support.address))
