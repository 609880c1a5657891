"""Auto-close: resolved tickets nobody answers are closed after [tickets] auto_close_days."""

from __future__ import annotations

import dataclasses
from datetime import timedelta

from sqlalchemy import event, select

from daemon import autoclose, tickets
from daemon.app import App
from daemon.clock import FixedClock
from daemon.intake.pipeline import Intake
from daemon.intake.sources import RawMail
from daemon.models import OutboxMail
from daemon.replies.notify import Notify
from tests import messages


def resolved_ticket(app: App, clock: FixedClock) -> str:
    result = Intake(app, notifier=Notify(app)).ingest(RawMail(
        messages.mail(body="打印机卡纸。\n系统: 打印服务\n影响范围: 三楼\n",
                      message_id="<first@client.example>"), "test"))
    assert result.number is not None
    with app.db.transaction() as s:
        ticket = tickets.get(s, result.number)
        tickets.change(s, ticket, at=clock.now(), actor="ops@corp.example", action="status",
                       detail="resolved", status="resolved", handler="ops@corp.example")
    return result.number


def test_closed_only_after_the_configured_days(app: App, clock: FixedClock) -> None:
    number = resolved_ticket(app, clock)
    clock.advance(timedelta(days=6, hours=23))
    assert autoclose.close_due(app) == []
    clock.advance(timedelta(hours=2))
    assert autoclose.close_due(app) == [number]
    assert autoclose.close_due(app) == []  # once
    with app.db.transaction() as s:
        ticket = tickets.get(s, number)
        assert ticket.status == "closed"
        last_status = [e for e in ticket.events if e.action == "status"][-1]
        assert last_status.before == {"status": "resolved"}
        assert last_status.after == {"status": "closed"}
        assert "no reply within 7 days" in last_status.detail
        mails = list(s.scalars(select(OutboxMail).where(OutboxMail.kind == "closed")))
        assert len(mails) == 1 and mails[0].recipients == ["zhang.san@corp.example"]
        assert f"[{number}]" in mails[0].subject
        assert b"In-Reply-To: <first@client.example>" in mails[0].raw


def test_open_tickets_are_never_auto_closed(app: App, clock: FixedClock) -> None:
    Intake(app).ingest(RawMail(messages.mail(), "test"))
    clock.advance(timedelta(days=30))
    assert autoclose.close_due(app) == []


def test_due_is_one_query_with_the_limit(app: App, clock: FixedClock) -> None:
    """No N+1: the limit and the "answered since" check are in the query, so finding the due
    tickets costs one statement however many resolved tickets there are."""
    numbers = [resolved_ticket_from(app, clock, n) for n in range(4)]
    clock.advance(timedelta(days=3))
    fresh = resolved_ticket_from(app, clock, 9)  # resolved 3 days after the others
    clock.advance(timedelta(days=4, hours=1))
    statements: list[str] = []

    def count(conn: object, cursor: object, statement: str, *args: object) -> None:
        statements.append(statement)

    event.listen(app.db.engine, "before_cursor_execute", count)
    try:
        with app.db.transaction() as s:
            due = autoclose.due(s, clock.now(), app.config.tickets.auto_close_days)
            found = [t.number for t in due]
    finally:
        event.remove(app.db.engine, "before_cursor_execute", count)
    assert found == numbers and fresh not in found
    selects = [st for st in statements if st.lstrip().upper().startswith("SELECT")]
    assert len(selects) == 1, selects


def test_a_mail_after_the_resolution_keeps_the_ticket_open_for_a_person(
        app: App, clock: FixedClock) -> None:
    app.config = dataclasses.replace(app.config, tickets=dataclasses.replace(
        app.config.tickets, stranger_number="append"))
    number = resolved_ticket(app, clock)
    clock.advance(timedelta(days=1))
    # From a stranger: appended untrusted, the ticket stays resolved but someone should look.
    result = Intake(app).ingest(RawMail(messages.mail(
        subject=f"Re: [{number}] 打印机", sender="stranger@else.example",
        in_reply_to="<first@client.example>", message_id="<late@else.example>"), "test"))
    assert (result.action, result.number) == ("appended", number)
    clock.advance(timedelta(days=10))
    with app.db.transaction() as s:
        assert tickets.get(s, number).status == "resolved"
    assert autoclose.close_due(app) == []


def resolved_ticket_from(app: App, clock: FixedClock, n: int) -> str:
    result = Intake(app).ingest(RawMail(messages.mail(
        body="打印机卡纸。\n系统: 打印服务\n影响范围: 三楼\n", sender=f"u{n}@corp.example",
        message_id=f"<due.{n}@client.example>"), "test"))
    assert result.number is not None
    with app.db.transaction() as s:
        tickets.change(s, tickets.get(s, result.number), at=clock.now(),
                       actor="ops@corp.example", action="status", status="resolved")
    return result.number
