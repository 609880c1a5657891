"""The operator's desk: ticket commands given from the command line, and the process sweeps.

Each function is one transaction: find the ticket, run the command object (the same one a
handler's ``#command`` runs), queue the mails it implies, commit. A refused command raises
:class:`~daemon.errors.Refused` before anything is written.

The periodic work of the process (SLA breaches, reminders, auto-close) is :mod:`daemon.jobs`.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session

from daemon import commands, tickets
from daemon.app import App
from daemon.commands.base import Context
from daemon.errors import NotFound, Refused
from daemon.intents import MailIntent
from daemon.models import Ticket
from daemon.replies.notify import Notify
from daemon.workflow import Process

log = logging.getLogger("ticketd.desk")


def process_for(app: App, now: datetime | None = None) -> Process:
    return Process(app.config, app.directory, app.reader, now or app.clock.now(),
                   dialect=app.db.engine.dialect.name)


def actor_of(app: App, given: str | None) -> str:
    """``--as ADDR``: a handler, or (the default) the support address."""
    actor = (given or app.config.support.address).strip().lower()
    if actor in app.config.own_addresses or app.directory.is_handler(actor):
        return actor
    raise Refused(f"--as {actor}: not a handler (a member or lead of a [[teams]] entry) nor "
                  "the support address")


@dataclass(frozen=True)
class Done:
    """What an operator command did: the ticket afterwards and the mails it queued."""

    ticket: dict[str, Any]
    mails: list[str]


def run(app: App, number: str, steps: list[tuple[str, str]], *, actor: str | None) -> Done:
    """Apply ``steps`` (command name, argument) to ticket ``number``, all or nothing."""
    who = actor_of(app, actor)
    notify = Notify(app)
    zone = app.config.support.zone
    with app.ready_db().transaction() as session:
        ticket = _ticket(session, number)
        ctx = Context(process_for(app), session, who)
        intents: list[MailIntent] = []
        for name, arg in steps:
            intents += commands.apply_one(ctx, ticket, name, arg)
        rows = notify.deliver(session, ticket, intents)
        session.flush()
        shown = tickets.to_dict(ticket, full=False, zone=zone)
        return Done(shown, [f"{r.kind} to {', '.join(r.recipients)}" for r in rows])


def _ticket(session: Session, number: str) -> Ticket:
    try:
        return tickets.get(session, number)
    except NotFound as exc:
        raise Refused(str(exc)) from None
