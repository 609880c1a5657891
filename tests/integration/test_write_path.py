"""Intake's write path, on SQLite and PostgreSQL: the events ``tickets.record`` keeps are
written by the session's next flush in one statement, in order, and vanish with a rolled-back
savepoint; a new ticket is written once, with its final values, in the flush that writes its
batch; a message that fails after part of it was written leaves nothing."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from datetime import datetime
from typing import Any

import pytest
from sqlalchemy import event, func, select
from sqlalchemy.orm import Session

from daemon import tickets
from daemon.app import App
from daemon.intake.pipeline import Intake
from daemon.intake.sources import RawMail
from daemon.intents import MailIntent
from daemon.models import Attachment, Event, IntakeRecord, Message, OutboxMail, Ticket
from daemon.replies.notify import Notify, Trigger
from tests import messages
from tests.integration.test_workflow import WANG, make_app  # noqa: F401  (make_app: fixture)

FIRST = "TS20231027000001"
SECOND = "TS20231027000002"


def _new(session: Session, at: datetime, number: str = FIRST) -> Ticket:
    return tickets.create(session, number=number, subject="VPN", requester_name="李四",
                          requester_email="li.si@corp.example", at=at)


def _actions(app: App, number: str = FIRST) -> list[tuple[str, str]]:
    with app.db.transaction() as s:
        return [(e.action, e.detail) for e in tickets.get(s, number).events]


def _count(app: App, model: type[Any]) -> int:
    with app.db.transaction() as s:
        return int(s.scalar(select(func.count()).select_from(model)) or 0)


@pytest.fixture
def statements(app: App) -> Iterator[Counter[str]]:
    seen: Counter[str] = Counter()

    def count(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        seen[" ".join(statement.split()[:3])] += 1

    event.listen(app.db.engine, "before_cursor_execute", count)
    yield seen
    event.remove(app.db.engine, "before_cursor_execute", count)


# ---------------------------------------------------------------- events kept until a flush


def test_kept_events_are_written_in_order_by_one_statement_at_the_next_flush(
        app: App, statements: Counter[str]) -> None:
    at = app.clock.now()
    with app.db.transaction() as s:
        ticket = _new(s, at)
        statements.clear()
        for n in range(3):
            logged = tickets.record(s, ticket, at=at, actor="ops@corp.example", action="note",
                                    detail=f"step {n}", after={"n": n})
            assert (logged.action, logged.detail, logged.after) == ("note", f"step {n}", {"n": n})
        assert statements["INSERT INTO events"] == 0
        # a query sees them: the autoflush writes them first, all four in one statement
        shown = [(e.action, e.detail, e.before, e.after)
                 for e in s.scalars(select(Event).order_by(Event.id))]
        assert statements["INSERT INTO events"] == 1
    assert shown[0][0] == "created"
    assert shown[1:] == [("note", f"step {n}", None, {"n": n}) for n in range(3)]
    assert _actions(app)[1:] == [("note", f"step {n}") for n in range(3)]


def test_a_rolled_back_savepoint_drops_its_events_and_nothing_else(app: App) -> None:
    at = app.clock.now()
    with app.db.transaction() as s:
        ticket = _new(s, at)
        tickets.record(s, ticket, at=at, actor="x", action="note", detail="before")
        with pytest.raises(RuntimeError), s.begin_nested():
            tickets.record(s, ticket, at=at, actor="x", action="note", detail="inside")
            raise RuntimeError("rolled back")
        with pytest.raises(RuntimeError), s.begin_nested():
            tickets.record(s, ticket, at=at, actor="x", action="note", detail="written")
            s.flush()  # written inside the savepoint, then rolled back by the database
            raise RuntimeError("rolled back")
        tickets.record(s, ticket, at=at, actor="x", action="note", detail="after")
        with s.begin_nested():
            tickets.record(s, ticket, at=at, actor="x", action="note", detail="released")
    assert [d for a, d in _actions(app) if a == "note"] == ["before", "after", "released"]


def test_an_event_on_an_unchanged_ticket_is_committed(app: App) -> None:
    """Nothing else is dirty in the session: the event alone makes the commit flush."""
    at = app.clock.now()
    with app.db.transaction() as s:
        ticket_id = _new(s, at).id
    with app.db.transaction() as s:
        ticket = s.get(Ticket, ticket_id)
        assert ticket is not None and not s.dirty
        tickets.record(s, ticket, at=at, actor="x", action="note", detail="alone")
    assert _actions(app)[-1] == ("note", "alone")


def test_a_loaded_event_log_shows_a_new_event_at_once(app: App) -> None:
    at = app.clock.now()
    with app.db.transaction() as s:
        _new(s, at)
    with app.db.transaction() as s:
        ticket = tickets.get(s, FIRST)  # loads its events
        tickets.record(s, ticket, at=at, actor="x", action="note", detail="seen")
        assert [e.detail for e in ticket.events][-1] == "seen"
    assert _actions(app)[-1] == ("note", "seen")


def test_a_change_returns_what_it_logged(app: App) -> None:
    at = app.clock.now()
    with app.db.transaction() as s:
        ticket = _new(s, at)
        logged = tickets.change(s, ticket, at=at, actor="x", action="priority", priority="P1")
        assert logged is not None and (logged.before, logged.after) == (
            {"priority": "P2"}, {"priority": "P1"})
    with app.db.transaction() as s:
        last = tickets.get(s, FIRST).events[-1]
        assert (last.action, last.before, last.after) == ("priority", {"priority": "P2"},
                                                         {"priority": "P1"})


# ---------------------------------------------------------------- intake


class _Refusing:
    """The real Notify, plus (for one requester) an event the database refuses (no actor):
    the failure comes at the flush that ends the message's savepoint."""

    def __init__(self, app: App, who: str) -> None:
        self.real, self.who, self.app = Notify(app), who, app

    def deliver(self, session: Session, ticket: Ticket, intents: Sequence[MailIntent],
                trigger: Trigger | None = None) -> Sequence[object]:
        rows = self.real.deliver(session, ticket, intents, trigger)
        if ticket.requester_email == self.who:
            tickets.record(session, ticket, at=self.app.clock.now(),
                           actor=None, action="broken")  # type: ignore[arg-type]
        return rows


class _Failing:
    """The real Notify, then an error (after the mail and its events were queued)."""

    def __init__(self, app: App, who: str) -> None:
        self.real, self.who = Notify(app), who

    def deliver(self, session: Session, ticket: Ticket, intents: Sequence[MailIntent],
                trigger: Trigger | None = None) -> Sequence[object]:
        rows = self.real.deliver(session, ticket, intents, trigger)
        if ticket.requester_email == self.who:
            raise RuntimeError("after queueing")
        return rows


def _batch() -> list[RawMail]:
    return [RawMail(messages.mail(sender=f"User {n} <user{n}@corp.example>",
                                  subject=f"打印机无法打印 {n}",
                                  attachments=[("log.txt", "text/plain", b"error 42\n")]
                                  if n == 1 else None), f"m{n}")
            for n in range(3)]


def _nothing_of_the_failed_one(app: App) -> None:
    with app.db.transaction() as s:
        assert sorted(s.scalars(select(Ticket.requester_email))) == [
            "user0@corp.example", "user2@corp.example"]
        assert list(s.scalars(select(Ticket.number).order_by(Ticket.id))) == [FIRST, SECOND]
        owners = {t.id: t.requester_email for t in s.scalars(select(Ticket))}
        for model in (Event, Message, OutboxMail):
            ids = set(s.scalars(select(model.ticket_id)))
            assert ids == set(owners), model
        assert not list(s.scalars(select(Attachment)))
        assert sorted(s.scalars(select(IntakeRecord.action))) == [
            "created", "created", "quarantined"]
        assert not list(s.scalars(select(Event).where(Event.action == "broken")))


@pytest.mark.parametrize("notifier", [_Refusing, _Failing])
def test_a_message_failing_after_its_writes_began_leaves_nothing_and_the_batch_goes_on(
        make_app: Callable[..., App],  # noqa: F811  (the imported fixture)
        notifier: Callable[[App, str], Any]) -> None:
    """user1's mail has an attachment: its assigned mail needs the attachment's id, so its
    ticket, message and attachment were written before the failure; all of it goes."""
    app = make_app()
    results = Intake(app, notifier=notifier(app, "user1@corp.example")).ingest_batch(_batch())
    assert [r.action for r in results] == ["created", "quarantined", "created"]
    assert [r.number for r in results] == [FIRST, None, SECOND]
    _nothing_of_the_failed_one(app)


def test_a_new_ticket_is_written_once_with_its_final_values(
        make_app: Callable[..., App]) -> None:  # noqa: F811  (the imported fixture)
    app = make_app()
    seen: Counter[str] = Counter()

    def count(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        seen[" ".join(statement.split()[:3])] += 1

    event.listen(app.db.engine, "before_cursor_execute", count)
    results = Intake(app, notifier=Notify(app)).ingest_batch(_batch())
    event.remove(app.db.engine, "before_cursor_execute", count)
    assert [r.action for r in results] == ["created"] * 3
    # the batch is written together: its three tickets in one statement, never updated after;
    # user1's attachment was given its id for the assigned mail without writing anything
    assert seen["INSERT INTO tickets"] == 1
    assert seen["UPDATE tickets SET"] == 0
    assert seen["INSERT INTO events"] == 1
    with app.db.transaction() as s:
        rows = list(s.scalars(select(Ticket).order_by(Ticket.id)))
        assert [(t.status, t.handler is not None, t.assign_by is not None) for t in rows] == [
            ("accepted", True, True)] * 3
        assert {t.handler for t in rows} <= {WANG, "li@corp.example"}
        assigned = s.scalars(select(OutboxMail).where(
            OutboxMail.kind == "assigned", OutboxMail.ticket_id == rows[1].id)).one()
        attachment = s.scalars(select(Attachment)).one()
        assert assigned.attachment_ids == [attachment.id]
        assert all(o.ticket_id is not None for o in s.scalars(select(OutboxMail)))
        assert [r.ticket_id for r in s.scalars(select(IntakeRecord).order_by(
            IntakeRecord.id))] == [t.id for t in rows]
