"""notify's rules for when no automatic mail may go, one by one (issue: suppression rules)."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import select

from daemon import tickets
from daemon.addresses import Address
from daemon.app import App
from daemon.clock import FixedClock
from daemon.intents import MailIntent
from daemon.models import Event, OutboxMail, Suppression, Ticket
from daemon.replies.notify import Notify, Trigger


def _ticket(app: App) -> Ticket:
    with app.db.transaction() as s:
        ticket = tickets.create(s, number="TS20231027000001", subject="打印机", requester_name="",
                                requester_email="zhang@corp.example", at=app.clock.now())
        return ticket


def _closed(to: str, cc: tuple[str, ...] = ()) -> MailIntent:
    return MailIntent("closed", (Address("", to),), tuple(Address("", c) for c in cc), "zh-CN",
                      {"requester_name": "", "handler_name": "王工", "resolution": "",
                       "auto_closed": False}, to_requester=True)


def _send(app: App, intent: MailIntent, trigger: Trigger | None = None) -> list[OutboxMail]:
    with app.db.transaction() as s:
        ticket = s.scalars(select(Ticket)).one()
        return Notify(app).deliver(s, ticket, [intent], trigger)


def _suppressed(app: App) -> list[str]:
    with app.db.transaction() as s:
        return list(s.scalars(select(Event.detail).where(Event.action == "mail-suppressed")
                              .order_by(Event.id)))


def test_our_own_address_never_gets_mail(app: App) -> None:
    _ticket(app)
    assert _send(app, _closed("Support@Corp.example")) == []
    assert _suppressed(app) == ["no automatic mail to Support@Corp.example: it is our own "
                                "address"]


def test_an_automatic_sender_gets_no_automatic_mail(app: App) -> None:
    _ticket(app)
    assert _send(app, _closed("zhang@corp.example"),
                 Trigger("x@client.example", auto_sender=True)) == []
    assert "automatic sender" in _suppressed(app)[0]


def test_a_bounce_holds_the_address_until_it_expires(app: App, clock: FixedClock) -> None:
    _ticket(app)
    with app.db.transaction() as s:
        s.add(Suppression(address="zhang@corp.example", reason="5.1.1 user unknown",
                          at=clock.now(), until=clock.now() + timedelta(hours=72)))
    assert _send(app, _closed("zhang@corp.example")) == []
    assert "bounced permanently (5.1.1 user unknown)" in _suppressed(app)[0]
    clock.advance(timedelta(hours=72, seconds=1))
    assert len(_send(app, _closed("zhang@corp.example"))) == 1


def test_the_loop_brake_counts_per_mailbox_not_per_plus_tag(app: App,
                                                            clock: FixedClock) -> None:
    _ticket(app)
    sent = [_send(app, _closed(f"victim+{i}@corp.example")) for i in range(8)]
    assert [len(rows) for rows in sent] == [1] * 5 + [0] * 3
    assert "loop brake: 5 automatic mails to victim@corp.example" in _suppressed(app)[0]
    clock.advance(timedelta(hours=1, seconds=1))
    assert len(_send(app, _closed("victim+9@corp.example"))) == 1


def test_a_suppressed_cc_is_dropped_and_the_rest_still_goes(app: App, clock: FixedClock) -> None:
    _ticket(app)
    with app.db.transaction() as s:
        s.add(Suppression(address="gone@corp.example", reason="5.1.1", at=clock.now(),
                          until=clock.now() + timedelta(hours=1)))
    [row] = _send(app, _closed("zhang@corp.example", ("gone@corp.example", "li@corp.example",
                                                      "support@corp.example")))
    assert row.recipients == ["zhang@corp.example", "li@corp.example"]
