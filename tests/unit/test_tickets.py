"""tickets.py alone: create, change and record write the row and its event log, and nothing
else writes a ticket. An in-memory SQLite schema, no migrations."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import create_engine, select
from sqlalchemy.orm import Session

from daemon import tickets
from daemon.errors import NotFound
from daemon.models import Base, Event, Ticket

AT = datetime(2023, 10, 27, 1, 0, tzinfo=UTC)


@pytest.fixture
def session() -> Iterator[Session]:
    engine = create_engine("sqlite://")
    Base.metadata.create_all(engine)
    with Session(engine) as s:
        yield s
    engine.dispose()


@pytest.fixture
def ticket(session: Session) -> Ticket:
    return tickets.create(session, number="TS20231027000001", subject="VPN 无法连接",
                          requester_name="李四", requester_email="Li.Si@Corp.example", at=AT,
                          cc=["li.si@corp.example", "WANG@corp.example"], category="network",
                          team="ops")


def events(session: Session, ticket: Ticket) -> list[Event]:
    return list(session.scalars(select(Event).where(Event.ticket_id == ticket.id)
                                .order_by(Event.id)))


def test_create_logs_every_initial_value(session: Session, ticket: Ticket) -> None:
    assert (ticket.status, ticket.priority, ticket.requester_email) == (
        "new", "P2", "li.si@corp.example")
    assert ticket.cc == ["wang@corp.example"]  # lowercased, without the requester
    assert ticket.created_at == ticket.updated_at == AT
    [created] = events(session, ticket)
    assert (created.action, created.actor) == ("created", "li.si@corp.example")
    assert created.after == {"status": "new", "priority": "P2", "category": "network",
                             "team": "ops"}


def test_change_logs_only_what_changed(session: Session, ticket: Ticket) -> None:
    later = AT + timedelta(minutes=5)
    event = tickets.change(session, ticket, at=later, actor="ops@corp.example",
                           action="assigned", detail="taken", status="accepted",
                           handler="ops@corp.example", team="ops")
    assert event is not None
    assert event.before == {"status": "new", "handler": None}  # team was already ops
    assert event.after == {"status": "accepted", "handler": "ops@corp.example"}
    assert (event.at, event.actor, event.action, event.detail) == (
        later, "ops@corp.example", "assigned", "taken")
    assert (ticket.status, ticket.handler, ticket.updated_at) == (
        "accepted", "ops@corp.example", later)
    assert [e.action for e in events(session, ticket)] == ["created", "assigned"]


def test_a_change_that_changes_nothing_leaves_no_trace(session: Session,
                                                       ticket: Ticket) -> None:
    assert tickets.change(session, ticket, at=AT + timedelta(hours=1), actor="x",
                          action="status", status="new", team="ops") is None
    assert ticket.updated_at == AT
    assert [e.action for e in events(session, ticket)] == ["created"]


def test_change_refuses_a_field_that_is_not_changeable(session: Session,
                                                       ticket: Ticket) -> None:
    with pytest.raises(ValueError, match="not a changeable ticket field: number"):
        tickets.change(session, ticket, at=AT, actor="x", action="renumber",
                       number="TS20231027000002")
    with pytest.raises(ValueError, match="created_at, requester_email"):
        tickets.change(session, ticket, at=AT, actor="x", action="x", created_at=AT,
                       requester_email="a@b.example")
    assert ticket.number == "TS20231027000001"


def test_fields_are_replaced_as_a_whole_and_logged(session: Session, ticket: Ticket) -> None:
    tickets.change(session, ticket, at=AT, actor="x", action="fields", fields={"系统": "OA"})
    event = tickets.change(session, ticket, at=AT, actor="x", action="fields",
                           fields={"系统": "OA", "影响范围": "财务部"})
    assert event is not None
    assert event.before == {"fields": {"系统": "OA"}}
    assert event.after == {"fields": {"系统": "OA", "影响范围": "财务部"}}


def test_record_and_touch(session: Session, ticket: Ticket) -> None:
    tickets.record(session, ticket, at=AT, actor="ticketd", action="note", detail="hello")
    assert events(session, ticket)[-1].detail == "hello"
    tickets.touch(ticket, AT - timedelta(days=1))  # never moves back
    assert ticket.updated_at == AT
    tickets.touch(ticket, AT + timedelta(days=1))
    assert ticket.updated_at == AT + timedelta(days=1)


def test_participants_and_lookup(session: Session, ticket: Ticket) -> None:
    ticket.handler = "OPS@corp.example"
    assert tickets.participants(ticket) == {"li.si@corp.example", "wang@corp.example",
                                            "ops@corp.example"}
    session.flush()
    assert tickets.get(session, " ts20231027000001 ").id == ticket.id
    with pytest.raises(NotFound, match="ticket TS20990101000001: no such ticket"):
        tickets.get(session, "TS20990101000001")
