"""The periodic jobs (daemon/jobs.py): auto-close after [tickets] auto_close_days, SLA
breaches, and the sweep that runs them all and reports what each did."""

from __future__ import annotations

import dataclasses
from datetime import timedelta

from sqlalchemy import event, select

from daemon import desk, jobs, tickets
from daemon.app import App
from daemon.clock import FixedClock
from daemon.intake.pipeline import Intake
from daemon.intake.sources import RawMail
from daemon.models import OutboxMail
from daemon.replies.notify import Notify
from tests import messages
from tests.writing import stored_bytes, write_queued


def resolved_ticket(app: App, clock: FixedClock) -> str:
    result = Intake(app, notifier=Notify(app)).ingest(RawMail(
        messages.mail(body="打印机卡纸。\n系统: 打印服务\n影响范围: 三楼\n",
                      message_id="<first@client.example>"), "test"))
    assert result.number is not None
    desk.run(app, result.number, [("resolve", "换了硒鼓")], actor=None)
    return result.number


def test_closed_only_after_the_configured_days(app: App, clock: FixedClock) -> None:
    number = resolved_ticket(app, clock)
    clock.advance(timedelta(days=6, hours=23))
    assert jobs.close_resolved(app, clock.now()) == []
    clock.advance(timedelta(hours=2))
    assert jobs.close_resolved(app, clock.now()) == [number]
    assert jobs.close_resolved(app, clock.now()) == []  # once
    write_queued(app)
    with app.db.transaction() as s:
        ticket = tickets.get(s, number)
        assert ticket.status == "closed"
        last_status = [e for e in ticket.events if e.action == "closed"][-1]
        assert last_status.before == {"status": "resolved"}
        assert last_status.after == {"status": "closed"}
        assert "no reply within 7 days" in last_status.detail
        mails = list(s.scalars(select(OutboxMail).where(OutboxMail.kind == "closed")))
        assert len(mails) == 1 and mails[0].recipients == ["zhang.san@corp.example"]
        assert f"[{number}]" in mails[0].subject
        closed_id = mails[0].id
    assert b"In-Reply-To: <first@client.example>" in stored_bytes(app)[closed_id]


def test_open_tickets_are_never_auto_closed(app: App, clock: FixedClock) -> None:
    Intake(app).ingest(RawMail(messages.mail(), "test"))
    clock.advance(timedelta(days=30))
    assert jobs.close_resolved(app, clock.now()) == []


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
            due = jobs.due_for_close(s, clock.now(), app.config.tickets.auto_close_days)
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
    assert jobs.close_resolved(app, clock.now()) == []


def resolved_ticket_from(app: App, clock: FixedClock, n: int) -> str:
    result = Intake(app).ingest(RawMail(messages.mail(
        body="打印机卡纸。\n系统: 打印服务\n影响范围: 三楼\n", sender=f"u{n}@corp.example",
        message_id=f"<due.{n}@client.example>"), "test"))
    assert result.number is not None
    desk.run(app, result.number, [("resolve", "换了硒鼓")], actor=None)
    return result.number


def test_sweep_reports_what_each_job_did(app: App, clock: FixedClock) -> None:
    number = resolved_ticket(app, clock)
    unassigned = Intake(app).ingest(RawMail(messages.mail(
        sender="li@corp.example", message_id="<open@client.example>"), "test")).number
    clock.advance(timedelta(days=8))
    report = jobs.sweep(app)
    assert report.at == clock.now()
    assert [job.name for job in report.jobs] == ["sla-breach", "need-info-reminder",
                                                 "need-info-close", "auto-close"]
    assert report.done("sla-breach") == (unassigned,)   # resolved tickets are no breach
    assert report.done("auto-close") == (number,)
    assert report.changed and report.failed == ()
    again = jobs.sweep(app)
    assert again.done("sla-breach") == () and again.done("auto-close") == ()
    assert not again.changed


def test_a_failing_job_does_not_stop_the_others(app: App, clock: FixedClock) -> None:
    def broken(app: App, now: object) -> list[str]:
        raise RuntimeError("boom")

    number = resolved_ticket(app, clock)
    clock.advance(timedelta(days=8))
    report = jobs.sweep(app, jobs=(("broken", broken), *jobs.JOBS))
    [failed] = report.failed
    assert failed.name == "broken" and failed.error == "RuntimeError: boom"
    assert report.done("auto-close") == (number,)
