"""The support process: the only code that moves a ticket between states.

The standard process, in short: a new request is classified; a report missing a required
detail waits in ``need_info`` (a P0 never waits); otherwise it is routed to its category's team
and a main handler is assigned by the team's policy (``accepted``); the handler's first answer
makes it ``in_progress``; ``resolved`` waits for the requester's confirmation, then ``closed``;
a requester who says it is not solved makes it ``reopened``.

Every operation here:

* checks the move against :data:`TRANSITIONS` and raises :class:`~daemon.errors.Refused` (one
  line saying why) before changing anything when it is not allowed;
* writes the ticket through :mod:`daemon.tickets`, so every change is an event with its actor,
  time, and before/after values;
* returns the mails the change implies as :class:`MailIntent` values (kind, recipients, the
  kind's own variables). It never renders or queues mail: the caller (intake, a command) hands
  the intents to ``replies.notify`` in the same transaction, so a change and its mails commit
  together.

The CLI's ``ticketd tickets ...`` commands and handlers' ``#commands`` by mail both call these
functions (through :mod:`daemon.commands`), so both behave identically.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import inspect, select
from sqlalchemy.orm import Session

from daemon import feedback, routing, row_ids, tickets
from daemon.addresses import Address
from daemon.classify import FIELD_CATALOGUE, Classification, Reader, RequiredField
from daemon.clock import format_time
from daemon.config import Config
from daemon.directory import Directory
from daemon.errors import Refused
from daemon.intents import MailIntent
from daemon.models import Attachment, Message, Ticket
from daemon.signatures import SIGNATURE_TYPES
from daemon.states import PRIORITIES, Status

__all__ = ["TRANSITIONS", "MailIntent", "Process", "Status"]

TRANSITIONS: Mapping[Status, frozenset[Status]] = {
    Status.NEW: frozenset({Status.NEED_INFO, Status.ACCEPTED, Status.IN_PROGRESS,
                           Status.RESOLVED, Status.CLOSED}),
    Status.NEED_INFO: frozenset({Status.NEW, Status.ACCEPTED, Status.IN_PROGRESS,
                                 Status.RESOLVED, Status.CLOSED}),
    Status.ACCEPTED: frozenset({Status.IN_PROGRESS, Status.NEED_INFO, Status.RESOLVED,
                                Status.CLOSED}),
    Status.IN_PROGRESS: frozenset({Status.NEED_INFO, Status.RESOLVED, Status.CLOSED}),
    Status.RESOLVED: frozenset({Status.CLOSED, Status.REOPENED, Status.IN_PROGRESS,
                                Status.NEW}),
    Status.CLOSED: frozenset({Status.REOPENED, Status.IN_PROGRESS, Status.NEW}),
    Status.REOPENED: frozenset({Status.IN_PROGRESS, Status.NEED_INFO, Status.RESOLVED,
                                Status.CLOSED}),
}

SYSTEM = tickets.SYSTEM



@dataclass
class Process:
    """The process for one transaction: configuration, people, reading rules and the time."""

    config: Config
    directory: Directory
    reader: Reader
    now: datetime
    dialect: str = "sqlite"

    # ------------------------------------------------------------------ the one status writer

    def transition(self, session: Session, ticket: Ticket, to: Status, *, actor: str,
                   action: str = "status", detail: str = "", **values: Any) -> None:
        """Move ``ticket`` to ``to`` (with any other column ``values``) as one event."""
        current = Status(ticket.status)
        if to != current and to not in TRANSITIONS[current]:
            raise Refused(f"ticket {ticket.number}: cannot go from {current} to {to}")
        if to != current:
            ticket.status_changed_at = self.now
            if to == Status.RESOLVED:
                ticket.resolved_at = self.now
            if to == Status.CLOSED:
                ticket.closed_at = self.now
            if to == Status.NEED_INFO:
                ticket.reminded_at = None
        tickets.change(session, ticket, at=self.now, actor=actor, action=action,
                       detail=detail, status=to.value, **values)

    # ------------------------------------------------------------------ helpers

    def _deadline(self, priority: str, start: datetime) -> datetime:
        return start + timedelta(minutes=self.config.sla.assign_minutes(priority))

    def requester(self, ticket: Ticket) -> Address:
        return Address(ticket.requester_name, ticket.requester_email)

    def requester_cc(self, ticket: Ticket) -> tuple[Address, ...]:
        if not self.config.tickets.copy_cc:
            return ()
        people = {ticket.handler, *ticket.co_handlers}
        return tuple(Address("", c) for c in ticket.cc
                     if not self.config.is_own(c) and c not in people)

    def handler_address(self, email: str) -> Address:
        person = self.directory.person(email)
        return person or Address("", email)

    def _handlers(self, ticket: Ticket) -> tuple[tuple[Address, ...], tuple[Address, ...]]:
        """(main handler, co-handlers) as recipients."""
        main = (self.handler_address(ticket.handler),) if ticket.handler else ()
        co = tuple(self.handler_address(c) for c in ticket.co_handlers if c != ticket.handler)
        return main, co

    def _category_label(self, ticket: Ticket, locale: str) -> str:
        cat = self.reader.category(ticket.category)
        return cat.label(locale) if cat else (ticket.category or "")

    def _missing(self, fields: Sequence[RequiredField], locale: str) -> tuple[tuple[str, str],
                                                                            ...]:
        zh = locale.startswith("zh")
        return tuple((f.label_zh if zh else f.label_en, f.hint_zh if zh else f.hint_en)
                     for f in fields)

    def _labelled(self, fields: Mapping[str, str], locale: str) -> dict[str, str]:
        """Details under the labels people read ("影响范围" / "Impact"), not internal names."""
        zh = locale.startswith("zh")
        out = {}
        for name, value in fields.items():
            known = FIELD_CATALOGUE.get(name)
            label = (known.label_zh if zh else known.label_en) if known else name
            out[label] = str(value)
        return out

    def _check_handler(self, email: str) -> str:
        email = email.strip().lower()
        if not self.directory.is_handler(email):
            raise Refused(f"{email}: not a handler (not a member or lead of any [[teams]])")
        return email

    def _attachments(self, session: Session, message: Message | None) -> tuple[int, ...]:
        """The ids of a message's attachments that go on with a mail about it."""
        if message is None:
            return ()
        if "attachments" in message.__dict__ or message.id is None:
            # Loaded, or not written yet (intake writes a batch's rows together): no query.
            # A mail names the attachments by id: ids for those not written yet, now.
            unnumbered = [a for a in message.attachments if a.id is None]
            if unnumbered:
                row_ids.hand_out(session, unnumbered)
            return tuple(sorted(a.id for a in message.attachments if a.skipped is None and
                                a.content_type not in SIGNATURE_TYPES))
        return tuple(session.scalars(select(Attachment.id).where(
            Attachment.message_id == message.id, Attachment.skipped.is_(None),
            # signature parts are kept on the ticket but never passed on to anybody else
            Attachment.content_type.not_in(SIGNATURE_TYPES)).order_by(Attachment.id)))

    def _first_message(self, ticket: Ticket) -> Message | None:
        return next((m for m in ticket.messages if m.direction == "in"), None)

    # ------------------------------------------------------------------ intake

    def open(self, session: Session, ticket: Ticket, found: Classification, *,
             first: Message | None = None) -> list[MailIntent]:
        """A new ticket: hold it for missing details, or route and assign it; one mail to the
        requester either way (never two that contradict each other)."""
        ticket.assign_by = self._deadline(ticket.priority, ticket.created_at)
        ticket.status_changed_at = self.now
        missing = self.reader.missing(ticket.category, ticket.fields)
        if missing and ticket.priority != "P0":
            self.transition(session, ticket, Status.NEED_INFO, actor=SYSTEM,
                            detail="missing details: " + ", ".join(f.name for f in missing))
            return [self._need_info_mail(ticket, missing, acknowledge=True)]
        intents, assigned = self._route(session, ticket, actor=SYSTEM, first=first)
        return [self._acceptance_mail(ticket, assigned, missing), *intents]

    def _acceptance_mail(self, ticket: Ticket, assigned: Address | None,
                         missing: Sequence[RequiredField]) -> MailIntent:
        """受理: the requester hears the ticket is accepted, by whom, and what is still
        needed (a P0 is assigned at once and asks for its missing details here)."""
        locale = tickets.requester_locale(ticket)
        return MailIntent(
            "acceptance", (self.requester(ticket),), self.requester_cc(ticket), locale,
            {"requester_name": ticket.requester_name, "priority": ticket.priority,
             "category": self._category_label(ticket, locale),
             "team": self.directory.label(ticket.team, locale),
             "assign_within": timedelta(minutes=self.config.sla.assign_minutes(
                 ticket.priority)),
             "assign_by": ticket.assign_by,
             "handler_name": self.directory.display_name(assigned.email) if assigned else None,
             "missing": self._missing(missing, locale)},
            to_requester=True)

    def _need_info_mail(self, ticket: Ticket, missing: Sequence[RequiredField], *,
                        acknowledge: bool = False, question: str = "",
                        reminder: bool = False) -> MailIntent:
        locale = tickets.requester_locale(ticket)
        return MailIntent(
            "need_info", (self.requester(ticket),), self.requester_cc(ticket), locale,
            {"requester_name": ticket.requester_name,
             "category": self._category_label(ticket, locale),
             "missing": self._missing(missing, locale), "acknowledge": acknowledge,
             "question": question, "reminder": reminder},
            to_requester=True)

    def _route(self, session: Session, ticket: Ticket, *, actor: str,
               first: Message | None = None) -> tuple[list[MailIntent], Address | None]:
        """Assign a main handler of the ticket's team by the team's policy, if it has one."""
        team = self.directory.team(ticket.team)
        if team is None:
            tickets.record(session, ticket, at=self.now, actor=actor, action="routing",
                           detail=f"team {ticket.team!r} is not configured: waiting for an "
                                  "operator to assign")
            return [], None
        if inspect(ticket).pending:
            # A new ticket, written with its final values when intake's savepoint for the
            # message ends: what is pending is that message's own rows, none of which a
            # choice reads (this ticket has no handler yet), so the team's rotation row is
            # read without writing the ticket first (and updating it afterwards).
            with session.no_autoflush:
                choice = routing.choose(session, team, self.now, dialect=self.dialect)
        else:
            choice = routing.choose(session, team, self.now, dialect=self.dialect)
        if choice.handler is None:
            if Status(ticket.status) == Status.NEED_INFO:
                self.transition(session, ticket, Status.NEW, actor=actor, detail=choice.why)
            else:
                tickets.record(session, ticket, at=self.now, actor=actor, action="routing",
                               detail=choice.why)
            return [], None
        return self._assign(session, ticket, choice.handler.email, actor=actor,
                            why=choice.why, first=first), choice.handler

    # ------------------------------------------------------------------ assignment

    def _assign(self, session: Session, ticket: Ticket, handler: str, *, actor: str,
                why: str, cc: Sequence[str] = (), first: Message | None = None
                ) -> list[MailIntent]:
        co = [c for c in dict.fromkeys([*ticket.co_handlers, *cc]) if c != handler]
        status = Status(ticket.status)
        target = Status.ACCEPTED if status in (Status.NEW, Status.NEED_INFO) else status
        if status in (Status.RESOLVED, Status.CLOSED):
            raise Refused(f"ticket {ticket.number}: cannot assign a {status} ticket "
                          "(reopen it first)")
        if ticket.assigned_at is None:
            ticket.assigned_at = self.now
        self.transition(session, ticket, target, actor=actor, action="assigned",
                        detail=f"main handler {handler} ({why})", handler=handler,
                        co_handlers=co)
        return [self._assigned_mail(session, ticket, handler, assigned_by=actor, first=first)]

    def _assigned_mail(self, session: Session, ticket: Ticket, handler: str, *,
                       assigned_by: str, first: Message | None = None) -> MailIntent:
        first = first or self._first_message(ticket)
        locale = self.config.support.locale
        person = self.handler_address(handler)
        co = tuple(self.handler_address(c) for c in ticket.co_handlers if c != handler)
        deadline = ticket.assign_by or self._deadline(ticket.priority, ticket.created_at)
        return MailIntent(
            "assigned", (person,), co, locale,
            {"handler_name": person.name or person.email, "priority": ticket.priority,
             "category": self._category_label(ticket, locale),
             "team": self.directory.label(ticket.team, locale),
             "requester": self.requester(ticket),
             "fields": self._labelled(ticket.fields, locale),
             "text": first.new_text if first else "",
             "attachments": (), "deadline": deadline,
             "co_handlers": tuple(c.email for c in co),
             "assigned_by": "" if assigned_by == SYSTEM else assigned_by},
            attachment_ids=self._attachments(session, first))

    def assign(self, session: Session, ticket: Ticket, handler: str, *, actor: str,
               cc: Sequence[str] = ()) -> list[MailIntent]:
        """An operator's or handler's explicit choice of main handler."""
        handler = self._check_handler(handler)
        extra = [self._check_handler(c) for c in cc]
        return self._assign(session, ticket, handler, actor=actor, why=f"assigned by {actor}",
                            cc=extra)

    def add_cc(self, session: Session, ticket: Ticket, handler: str, *,
               actor: str) -> list[MailIntent]:
        """A co-handler: copied on the ticket's handler mails from now on."""
        handler = self._check_handler(handler)
        if handler == ticket.handler or handler in ticket.co_handlers:
            raise Refused(f"ticket {ticket.number}: {handler} already works on it")
        tickets.change(session, ticket, at=self.now, actor=actor, action="co-handler",
                       detail=f"co-handler {handler} added",
                       co_handlers=[*ticket.co_handlers, handler])
        mail = self._assigned_mail(session, ticket, handler, assigned_by=actor)
        return [MailIntent(mail.kind, (self.handler_address(handler),), (), mail.locale,
                           {**mail.values, "handler_name": self.directory.display_name(
                               handler)}, attachment_ids=mail.attachment_ids)]

    # ------------------------------------------------------------------ attributes

    def set_priority(self, session: Session, ticket: Ticket, priority: str, *,
                     actor: str) -> list[MailIntent]:
        priority = priority.strip().upper()
        if priority not in PRIORITIES:
            raise Refused(f"priority {priority!r}: expected one of {', '.join(PRIORITIES)}")
        self._open_only(ticket, "change the priority of")
        deadline = self._deadline(priority, ticket.created_at)
        tickets.change(session, ticket, at=self.now, actor=actor, action="priority",
                       detail=f"priority {ticket.priority} -> {priority}; assign by "
                              f"{format_time(deadline, self.config.support.zone)}",
                       priority=priority)
        if ticket.assign_by != deadline:
            ticket.assign_by = deadline
            ticket.breach_notified_at = None
        return []

    def set_category(self, session: Session, ticket: Ticket, name: str, *,
                     actor: str) -> list[MailIntent]:
        cat = self.reader.lookup(name)
        if cat is None:
            known = ", ".join(f"{c.name} ({c.label_en})" for c in self.reader.categories)
            raise Refused(f"category {name!r}: unknown (known: {known})")
        self._open_only(ticket, "change the category of")
        tickets.change(session, ticket, at=self.now, actor=actor, action="category",
                       detail=f"category {ticket.category} -> {cat.name}", category=cat.name)
        return []

    def set_team(self, session: Session, ticket: Ticket, name: str, *,
                 actor: str) -> list[MailIntent]:
        if self.directory.team(name) is None:
            known = ", ".join(t.name for t in self.directory.teams)
            raise Refused(f"team {name!r}: unknown (teams: {known})")
        self._open_only(ticket, "move")
        tickets.change(session, ticket, at=self.now, actor=actor, action="team",
                       detail=f"team {ticket.team} -> {name}", team=name)
        return []

    def _open_only(self, ticket: Ticket, what: str) -> None:
        if Status(ticket.status) == Status.CLOSED:
            raise Refused(f"ticket {ticket.number}: cannot {what} a closed ticket")

    def note(self, session: Session, ticket: Ticket, text: str, *,
             actor: str) -> list[MailIntent]:
        """The process log (diagnosis, steps, verification): internal, no mail."""
        if not text.strip():
            raise Refused("a note needs text")
        tickets.record(session, ticket, at=self.now, actor=actor, action="note",
                       detail=text.strip())
        return []

    # ------------------------------------------------------------------ progress

    def resolve(self, session: Session, ticket: Ticket, text: str, *,
                actor: str) -> list[MailIntent]:
        """Resolved: the resolution mail (asking for confirmation) is queued right now."""
        if not text.strip():
            raise Refused(f"ticket {ticket.number}: a resolution needs a text saying what "
                          "was done")
        self.transition(session, ticket, Status.RESOLVED, actor=actor, action="resolved",
                        detail=text.strip()[:2000], resolution=text.strip())
        locale = tickets.requester_locale(ticket)
        name = self.directory.display_name(actor) if self.directory.is_handler(actor) \
            else self.config.support.name
        return [MailIntent(
            "resolution", (self.requester(ticket),), self.requester_cc(ticket), locale,
            {"requester_name": ticket.requester_name, "handler_name": name,
             "resolution": text.strip(), "reopen_days": self.config.tickets.auto_close_days},
            to_requester=True)]

    def close(self, session: Session, ticket: Ticket, *, actor: str, why: str = "",
              auto: bool = False) -> list[MailIntent]:
        if Status(ticket.status) == Status.CLOSED:
            raise Refused(f"ticket {ticket.number}: already closed")
        self.transition(session, ticket, Status.CLOSED, actor=actor, action="closed",
                        detail=why or f"closed by {actor}")
        locale = tickets.requester_locale(ticket)
        name = self.directory.display_name(ticket.handler) if ticket.handler else \
            self.config.support.name
        return [MailIntent(
            "closed", (self.requester(ticket),), self.requester_cc(ticket), locale,
            {"requester_name": ticket.requester_name, "handler_name": name,
             "resolution": ticket.resolution or "", "auto_closed": auto},
            to_requester=True)]

    def reopen(self, session: Session, ticket: Ticket, *, actor: str,
               reason: str = "") -> list[MailIntent]:
        """A handler or operator reopens: back to the handler's work (or to routing)."""
        status = Status(ticket.status)
        if status not in (Status.RESOLVED, Status.CLOSED):
            raise Refused(f"ticket {ticket.number}: only a resolved or closed ticket can be "
                          f"reopened (it is {status})")
        target = Status.IN_PROGRESS if ticket.handler else Status.NEW
        self.transition(session, ticket, target, actor=actor, action="reopened",
                        detail=reason or f"reopened by {actor}")
        if not ticket.handler:
            return self._route(session, ticket, actor=actor)[0]
        if actor == ticket.handler:
            return []
        return [self._reopened_mail(ticket, actor, reason)]

    def _reopened_mail(self, ticket: Ticket, by: str, reason: str) -> MailIntent:
        main, co = self._handlers(ticket)
        assert main
        locale = self.config.support.locale
        return MailIntent("reopened", main, co, locale,
                          {"handler_name": main[0].name or main[0].email,
                           "requester": self.requester(ticket), "reopened_by": by,
                           "reason": reason})

    def need_info(self, session: Session, ticket: Ticket, question: str, *,
                  actor: str) -> list[MailIntent]:
        """A handler asks the requester something; the ticket waits for the answer."""
        status = Status(ticket.status)
        if status in (Status.RESOLVED, Status.CLOSED):
            raise Refused(f"ticket {ticket.number}: cannot ask for information on a {status} "
                          "ticket")
        missing = self.reader.missing(ticket.category, ticket.fields)
        if not question.strip() and not missing:
            raise Refused(f"ticket {ticket.number}: say what information is needed")
        self.transition(session, ticket, Status.NEED_INFO, actor=actor, action="need-info",
                        detail=question.strip() or "missing details: " + ", ".join(
                            f.name for f in missing))
        return [self._need_info_mail(ticket, () if question.strip() else missing,
                                     question=question.strip())]

    def escalate(self, session: Session, ticket: Ticket, why: str, *,
                 actor: str) -> list[MailIntent]:
        """The team lead (or the support desk) is asked to step in."""
        lead = self.directory.lead_of(ticket.team) or Address(self.config.support.name,
                                                               self.config.support.address)
        tickets.record(session, ticket, at=self.now, actor=actor, action="escalated",
                       detail=f"to {lead.email}: {why.strip() or 'no reason given'}")
        return [self._breach_mail(ticket, lead, reason=why.strip() or "-")]

    def _breach_mail(self, ticket: Ticket, lead: Address, *, reason: str = "") -> MailIntent:
        locale = self.config.support.locale
        deadline = ticket.assign_by or self._deadline(ticket.priority, ticket.created_at)
        return MailIntent(
            "sla_breach", (lead,), (), locale,
            {"lead_name": lead.name or lead.email, "priority": ticket.priority,
             "team": self.directory.label(ticket.team, locale), "deadline": deadline,
             "late_by": max(self.now - deadline, timedelta(0)),
             "handler_name": self.directory.display_name(ticket.handler)
             if ticket.handler else None, "reason": reason})

    # ------------------------------------------------------------------ the requester writes

    def requester_wrote(self, session: Session, ticket: Ticket, message: Message, *,
                        given: Mapping[str, str]) -> list[MailIntent]:
        """A trusted reply from the requester (or someone they copied): merge the details it
        gives, release a need_info hold when complete, reopen a resolved ticket, and pass the
        text on to the handlers."""
        actor = message.from_email
        intents: list[MailIntent] = []
        had_handler = ticket.handler is not None
        given = {k: v for k, v in given.items() if ticket.fields.get(k) != v}
        if given:
            merged = {**ticket.fields, **given}
            tickets.change(session, ticket, at=self.now, actor=actor, action="fields",
                           detail="details supplied by reply: " + ", ".join(sorted(given)),
                           fields=merged)
        status = Status(ticket.status)
        text = message.new_text.strip()
        if status in (Status.RESOLVED, Status.CLOSED):
            intents += self._rated(session, ticket, actor, text)
        if status == Status.RESOLVED and feedback.is_confirmation(
                text, self.config.tickets.confirmations or feedback.DEFAULT_CONFIRMATIONS):
            intents += self.close(session, ticket, actor=actor,
                                  why="the requester confirmed the resolution")
            return intents
        if status == Status.CLOSED and (feedback.is_confirmation(
                text, self.config.tickets.confirmations or feedback.DEFAULT_CONFIRMATIONS) or (
                feedback.rating(text) is not None and len(text) <= 40)):
            return intents  # thanks or a late rating for a closed ticket does not reopen it
        if status == Status.NEED_INFO:
            intents += self._info_arrived(session, ticket, actor)
        elif status in (Status.RESOLVED, Status.CLOSED):
            self.transition(session, ticket, Status.REOPENED, actor=actor, action="reopened",
                            detail="the requester replied to the resolution"
                            if status == Status.RESOLVED else
                            "the requester wrote to the closed ticket")
            if ticket.handler:
                intents.append(self._reopened_mail(ticket, actor, message.new_text.strip()))
            else:
                intents += self._route(session, ticket, actor=SYSTEM)[0]
            return intents
        if had_handler and message.new_text.strip():
            intents.append(self._update_mail(session, ticket, message))
        return intents

    def _rated(self, session: Session, ticket: Ticket, actor: str,
               text: str) -> list[MailIntent]:
        """A 1-5 satisfaction rating in the answer to a resolution; 1-2 tell the team lead."""
        score = feedback.rating(text)
        if score is None:
            return []
        tickets.change(session, ticket, at=self.now, actor=actor, action="rating",
                       detail=f"the requester rated the service {score}/5", rating=score)
        if score > 2:
            return []
        lead = self.directory.lead_of(ticket.team) or Address(self.config.support.name,
                                                               self.config.support.address)
        return [self._breach_mail(ticket, lead, reason=f"满意度 / rating {score}/5: "
                                                       f"{text[:500]}")]

    def handler_wrote(self, session: Session, ticket: Ticket, message: Message,
                      text: str) -> list[MailIntent]:
        """A proven handler's answer: to the requester (from the support address, under the
        handler's name), copied to the other handlers of the ticket; the first answer moves
        the ticket to in_progress."""
        writer = message.from_email.lower()
        if Status(ticket.status) in (Status.ACCEPTED, Status.REOPENED):
            self.transition(session, ticket, Status.IN_PROGRESS, actor=writer,
                            detail="the handler answered the requester")
        if not text.strip():
            return []
        name = self.directory.display_name(writer)
        sender = f"{name} via {self.config.support.name}"
        files = self._attachments(session, message)
        locale = tickets.requester_locale(ticket)
        intents = [MailIntent(
            "reply", (self.requester(ticket),), self.requester_cc(ticket), locale,
            {"requester_name": ticket.requester_name, "handler_name": name, "text": text},
            to_requester=True, automatic=False, sender_name=sender, attachment_ids=files)]
        main, co = self._handlers(ticket)
        others = tuple(h for h in (*main, *co) if h.email != writer)
        if others:
            intents.append(MailIntent(
                "reply", others, (), self.config.support.locale,
                {"requester_name": others[0].name or others[0].email, "handler_name": name,
                 "text": text}, automatic=False, sender_name=sender, attachment_ids=files))
        return intents

    def command_result(self, ticket: Ticket, handler: str, outcomes: Sequence[Any], *,
                       applied: bool, note_kept: bool) -> MailIntent:
        """What a handler's commands did, back to the handler."""
        person = self.handler_address(handler)
        return MailIntent(
            "command_result", (person,), (), self.config.support.locale,
            {"handler_name": person.name or person.email,
             "results": tuple((o.line, o.applied, o.message) for o in outcomes),
             "applied": applied, "note_kept": note_kept})

    def _info_arrived(self, session: Session, ticket: Ticket, actor: str) -> list[MailIntent]:
        missing = self.reader.missing(ticket.category, ticket.fields)
        if ticket.handler:  # a handler asked: any answer goes back to them
            self.transition(session, ticket, Status.IN_PROGRESS, actor=actor,
                            detail="the requester answered")
            return []
        if missing:
            tickets.record(session, ticket, at=self.now, actor=actor, action="note",
                           detail="still missing: " + ", ".join(f.name for f in missing))
            return [self._need_info_mail(ticket, missing)]
        self.transition(session, ticket, Status.NEW, actor=actor,
                        detail="the requester supplied the missing details")
        ticket.assign_by = self._deadline(ticket.priority, self.now)
        ticket.breach_notified_at = None
        intents, assigned = self._route(session, ticket, actor=SYSTEM)
        return [self._acceptance_mail(ticket, assigned, ()), *intents]

    def _update_mail(self, session: Session, ticket: Ticket, message: Message) -> MailIntent:
        main, co = self._handlers(ticket)
        locale = self.config.support.locale
        return MailIntent(
            "update", main, co, locale,
            {"handler_name": main[0].name or main[0].email, "requester": self.requester(ticket),
             "text": message.new_text.strip(), "attachments": (), "status": ticket.status},
            attachment_ids=self._attachments(session, message))

    # ------------------------------------------------------------------ the clock

    def breach(self, session: Session, ticket: Ticket) -> list[MailIntent]:
        """The assignment deadline passed with no main handler: one mail to the team's lead
        (or the support desk), once per deadline."""
        lead = self.directory.lead_of(ticket.team) or Address(self.config.support.name,
                                                               self.config.support.address)
        ticket.breach_notified_at = self.now
        deadline = ticket.assign_by
        assert deadline is not None
        tickets.record(
            session, ticket, at=self.now, actor=SYSTEM, action="sla-breach",
            detail=f"{ticket.priority} ticket not assigned within "
                   f"{self.config.sla.assign_minutes(ticket.priority)} min (deadline "
                   f"{format_time(deadline, self.config.support.zone)}); "
                   f"sla_breach mail to {lead.email}")
        return [self._breach_mail(ticket, lead)]

    def remind(self, session: Session, ticket: Ticket) -> list[MailIntent]:
        """A need_info ticket unanswered for [sla] need_info_reply_hours: one reminder."""
        ticket.reminded_at = self.now
        tickets.record(session, ticket, at=self.now, actor=SYSTEM, action="reminder",
                       detail="need_info reminder to the requester")
        missing = self.reader.missing(ticket.category, ticket.fields)
        return [self._need_info_mail(ticket, missing, reminder=True)]
