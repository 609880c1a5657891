"""Auto-close: resolved tickets nobody answers are closed after [tickets] auto_close_days."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import select

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
