"""`ticketd outbox resend`: put a mail in the outbox again, by its row or by ticket and kind.

Why: a mail that was never queued (its template was broken, it could not be composed) or that
failed (refused before an address was corrected) needs a way out that is not SQL.

* ``resend ID``: outbox row ``ID`` goes back to ``queued`` as it is, same bytes and same
  Message-ID, so a recipient who did get it once still sees one message. A row that failed
  before it was written (its template or compose failed at send time) has no bytes: it is
  written again from its stored variables, with the templates as they are now.
* ``resend NUMBER KIND``: the mail is written afresh from the ticket as it stands
  (:mod:`daemon.replies.drafts`) and queued through :meth:`Notify.send`, the one path every
  mail takes (template fallback, compose, outbox row, event). An admin asked for it, so the
  automatic-mail brakes (loop brake, bounce hold) do not apply; the event log says who did.

Each call records an event on the ticket. Unknown ids, numbers and kinds are UsageErrors
(exit 2), so a script can tell a typo from a mail that could not be queued.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from daemon import tickets
from daemon.app import App
from daemon.errors import NotFound, UsageError
from daemon.models import OutboxMail, Ticket
from daemon.replies import drafts, kinds
from daemon.replies.notify import Notify

ACTOR = "ticketd-cli"


@dataclass(frozen=True)
class Resent:
    """What one resend did: ``requeued``, ``queued``, ``unchanged`` or ``failed``."""

    action: str
    outbox_id: int | None
    number: str | None
    kind: str
    recipients: tuple[str, ...]
    detail: str

    def line(self) -> str:
        row = f"outbox {self.outbox_id}" if self.outbox_id is not None else "outbox -"
        to = ", ".join(self.recipients) or "-"
        return (f"{row} {self.action} {self.kind} {self.number or '-'} to {to}"
                + (f": {self.detail}" if self.detail else ""))

    def as_dict(self) -> dict[str, object]:
        data = asdict(self)
        data["recipients"] = list(self.recipients)
        return data


def requeue(app: App, outbox_id: int) -> Resent:
    """Queue outbox row ``outbox_id`` again as it is (unless it is queued or being sent)."""
    now = app.clock.now()
    with app.ready_db().transaction() as session:
        row = session.get(OutboxMail, outbox_id)
        if row is None:
            raise UsageError(f"outbox resend: no outbox mail with id {outbox_id} "
                             "(ticketd outbox list --all shows them)")
        ticket = session.get(Ticket, row.ticket_id) if row.ticket_id else None
        number = ticket.number if ticket else None
        recipients = tuple(row.recipients)
        if row.status in ("queued", "sending"):
            state = "already queued" if row.status == "queued" else "being sent right now"
            return Resent("unchanged", row.id, number, row.kind, recipients, state)
        before = row.status
        row.status, row.attempts, row.next_attempt_at = "queued", 0, now
        row.last_error, row.claimed_by, row.claimed_until, row.sent_at = None, None, None, None
        if ticket is not None:
            tickets.record(session, ticket, at=now, actor=ACTOR, action="mail-requeued",
                           detail=f"{row.kind} mail to {', '.join(recipients)} "
                                  f"({row.message_id}) queued again; it was {before}")
        return Resent("requeued", row.id, number, row.kind, recipients, f"was {before}")


def resend(app: App, number: str, kind: str) -> Resent:
    """Write the ``kind`` mail for ticket ``number`` again from the ticket, and queue it."""
    if kind not in kinds.KINDS:
        raise UsageError(f"outbox resend: unknown kind {kind!r}; expected one of "
                         + ", ".join(sorted(kinds.KINDS)))
    with app.ready_db().transaction() as session:
        try:
            ticket = tickets.get(session, number)
        except NotFound as exc:
            raise UsageError(f"outbox resend: {exc}") from None
        draft = drafts.from_ticket(app, ticket, kind)
        recipients = tuple(a.email for a in draft.to)
        row = Notify(app).send(session, ticket, draft.mail, draft.to, draft.in_reply_to,
                               draft.references)
        session.flush()
        tickets.record(session, ticket, at=app.clock.now(), actor=ACTOR, action="mail-resent",
                       detail=f"{kind} mail written again and queued ({row.message_id})")
        return Resent("queued", row.id, ticket.number, kind, recipients, "")


__all__ = ["Resent", "requeue", "resend"]
