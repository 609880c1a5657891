"""A mail of any kind for a ticket, drafted from what the database holds.

`templates preview --ticket` and `outbox resend NUMBER KIND` both need a kind's variables,
its recipient and its thread from a ticket row; this is the one place that reads them. What
the row cannot tell (a handler's answer, a resolution text, a team lead) is a *gap*: preview
fills gaps from the kind's sample data and says so, resend refuses with one line naming them,
so no real mail ever carries sample text.

Audience: ``assigned`` goes to the ticket's handler, ``sla_breach`` to a team lead, every
other kind to the requester. Requesters get their own language; handlers and leads the
default locale, as :mod:`daemon.replies.notify` does.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from daemon import sla
from daemon.addresses import Address
from daemon.app import App
from daemon.errors import UsageError
from daemon.models import Ticket
from daemon.replies import kinds
from daemon.tickets import requester_locale

#: Who receives each kind that does not go to the requester.
AUDIENCE: dict[str, str] = {"assigned": "handler", "reopened": "handler", "update": "handler",
                            "command_result": "handler", "sla_breach": "lead"}

# Variables whose meaning in a kind is not what the ticket row holds under that name
_NOT_FROM_TICKET: dict[str, frozenset[str]] = {"reply": frozenset({"text"})}

_SAMPLE_ADDRESS = {"requester": "requester@example.com", "handler": "handler@example.com",
                   "lead": "lead@example.com"}
_SAMPLE_NAME = {"requester": "requester_name", "handler": "handler_name", "lead": "lead_name"}


def audience(kind: str) -> str:
    """``requester``, ``handler`` or ``lead``: who a kind's mail is written to."""
    kinds.kind_class(kind)
    return AUDIENCE.get(kind, "requester")


@dataclass(frozen=True)
class Draft:
    """A kind's variables, recipients and thread; ``gaps`` were filled from sample data."""

    mail: kinds.MailKind
    to: tuple[Address, ...]
    in_reply_to: str | None
    references: tuple[str, ...]
    gaps: tuple[str, ...] = ()


def from_sample(app: App, kind: str, locale: str | None) -> Draft:
    """A draft of nothing but sample data (`templates preview` without a ticket)."""
    loc = locale or app.config.support.locale
    mail = kinds.sample(kind, loc)
    who = audience(kind)
    name = getattr(mail, _SAMPLE_NAME[who], "") or ""
    first = "request.1@client.example"
    return Draft(mail, (Address(name, _SAMPLE_ADDRESS[who]),), first, (first,))


def from_ticket(app: App, ticket: Ticket, kind: str, *, locale: str | None = None,
                fill_gaps: bool = False) -> Draft:
    """The mail of ``kind`` for ``ticket`` as it stands now.

    Raises UsageError naming the gaps unless ``fill_gaps`` (preview) is set.
    """
    cls = kinds.kind_class(kind)
    who = audience(kind)
    loc = locale or (requester_locale(ticket) if who == "requester"
                     else app.config.support.locale)
    known = _known(app, ticket, loc)
    for name in _NOT_FROM_TICKET.get(kind, ()):
        known.pop(name, None)
    optional = {f.name for f in dataclasses.fields(cls) if "None" in str(f.type)}
    if ticket.handler is None:
        known.update({name: None for name in optional & {"handler_name"}})
    # A variable with a default in its kind (missing details, a question ...) is no gap: the
    # default says "none".
    for f in dataclasses.fields(cls):
        if f.name not in known and f.default is not dataclasses.MISSING:
            known[f.name] = f.default
    names = kinds.variables_of(kind)
    gaps = sorted(names - known.keys())
    to = _recipient(app, ticket, who)
    if to is None:
        gaps.append(f"the {who}'s address")
    if gaps and not fill_gaps:
        raise UsageError(f"a {kind} mail for {ticket.number} needs {', '.join(gaps)}, which "
                         "the ticket does not hold; re-queue an earlier one by its id "
                         "(ticketd outbox list --all)")
    sample = kinds.sample(kind, loc)
    values = {name: known[name] if name in known else getattr(sample, name) for name in names}
    mail = cls(**values)
    if to is None:
        to = Address(str(getattr(mail, _SAMPLE_NAME[who], "") or ""), _SAMPLE_ADDRESS[who])
    inbound = [m for m in ticket.messages if m.direction == "in"]
    first = inbound[0] if inbound else None
    if first is None or not first.message_id:
        return Draft(mail, (to,), None, (), tuple(gaps))
    return Draft(mail, (to,), first.message_id, (*first.references, first.message_id),
                 tuple(gaps))


def _recipient(app: App, ticket: Ticket, who: str) -> Address | None:
    if who == "requester":
        return Address(ticket.requester_name, ticket.requester_email)
    if who == "handler" and ticket.handler:
        return app.directory.person(ticket.handler) or Address("", ticket.handler)
    if who == "lead":
        return app.directory.lead_of(ticket.team)
    return None


def _known(app: App, ticket: Ticket, locale: str) -> dict[str, Any]:
    """Every variable the ticket row can answer, by name."""
    cfg = app.config
    zone = cfg.support.zone
    deadline = sla.assign_deadline(ticket.priority, ticket.created_at).astimezone(zone)
    known: dict[str, Any] = {
        "number": ticket.number, "subject": ticket.subject, "support_name": cfg.support.name,
        "support_address": cfg.support.address, "locale": locale,
        "requester_name": ticket.requester_name, "priority": ticket.priority,
        "category": ticket.category or "", "team": ticket.team or "",
        "fields": dict(ticket.fields),
        "requester": Address(ticket.requester_name, ticket.requester_email),
        "assign_within": sla.assign_within(ticket.priority), "assign_by": deadline,
        "deadline": deadline, "reopen_days": cfg.tickets.auto_close_days,
    }
    late = app.clock.now() - deadline
    if late > timedelta(0):
        known["late_by"] = late
    if ticket.handler:
        known["handler_name"] = ticket.handler
    zh = locale.startswith("zh")
    missing = app.reader.missing(ticket.category, ticket.fields)
    if missing:
        known["missing"] = tuple(
            kinds.MissingDetail(label=f.label_zh if zh else f.label_en,
                                hint=f.hint_zh if zh else f.hint_en) for f in missing)
    inbound = [m for m in ticket.messages if m.direction == "in"]
    if inbound:
        first = inbound[0]
        known["text"] = first.new_text or first.body_text
        known["attachments"] = tuple(
            kinds.AttachmentInfo(filename=a.safe_filename, size=a.size,
                                 content_type=a.content_type) for a in first.attachments)
    if len(inbound) > 1:
        known["reason"] = inbound[-1].new_text.strip()[:2000]
    return known


__all__ = ["AUDIENCE", "Draft", "audience", "from_sample", "from_ticket"]
