"""The threader alone: which ticket a parsed mail belongs to, and why, for every rule.

A schema in an in-memory SQLite database (no migrations, no server): the threader only reads,
so each test builds the few tickets and messages it needs and asks :func:`thread`.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import create_engine
from sqlalchemy.orm import Session

from daemon import tickets
from daemon.intake.parse import parse
from daemon.intake.threader import MAX_LOOKUP_IDS, ThreadVerdict, bounded, thread
from daemon.models import Base, Message, Ticket
from daemon.ticket_numbers import NumberFormat
from tests import messages

AT = datetime(2023, 10, 27, 1, 0, tzinfo=UTC)
NUMBERS = NumberFormat("TS", 6, "Asia/Shanghai")
NUMBER = "TS20231027000001"
REQUESTER = "zhang.san@corp.example"


@pytest.fixture
def session() -> Iterator[Session]:
    engine = create_engine("sqlite://")
    Base.metadata.create_all(engine)
    with Session(engine) as s:
        yield s
    engine.dispose()


def ticket(session: Session, number: str = NUMBER, *, cc: tuple[str, ...] = (),
           handler: str | None = None) -> Ticket:
    made = tickets.create(session, number=number, subject="打印机无法打印",
                          requester_name="张三", requester_email=REQUESTER, at=AT, cc=cc)
    made.handler = handler
    return made


def message(session: Session, on: Ticket, message_id: str, direction: str = "in") -> None:
    session.add(Message(ticket=on, direction=direction, kind="new" if direction == "in" else
                        "acceptance", message_id=message_id, dedup_key=message_id,
                        created_at=AT))
    session.flush()


def verdict_of(session: Session, policy: str = "link", **mail: Any) -> ThreadVerdict:
    return thread(session, parse(messages.mail(**mail)), NUMBERS, policy)


def test_no_number_and_no_reply_headers_is_a_new_ticket(session: Session) -> None:
    ticket(session)
    verdict = verdict_of(session, subject="另一个问题")
    assert (verdict.action, verdict.rule, verdict.ticket_id, verdict.note) == (
        "new", "none", None, "")


def test_subject_number_from_the_requester(session: Session) -> None:
    known = ticket(session)
    verdict = verdict_of(session, subject=f"回复: [{NUMBER}] 打印机")
    assert (verdict.action, verdict.rule, verdict.ticket_id, verdict.number) == (
        "follow-up", "subject", known.id, NUMBER)
    assert verdict.participant is True and verdict.trusted is True


@pytest.mark.parametrize("who", ["li.si@corp.example", "ops@corp.example"])
def test_a_copied_address_and_the_handler_are_participants(session: Session, who: str) -> None:
    ticket(session, cc=("Li.Si@corp.example",), handler="OPS@corp.example")
    verdict = verdict_of(session, subject=f"Re: [{NUMBER}]", sender=who)
    assert (verdict.action, verdict.participant) == ("follow-up", True)


def test_subject_number_from_a_stranger_links_a_new_ticket(session: Session) -> None:
    known = ticket(session)
    verdict = verdict_of(session, subject=f"[{NUMBER}] 我也是", sender="x@else.example")
    assert (verdict.action, verdict.rule, verdict.ticket_id) == ("new", "subject", None)
    assert verdict.linked_ticket_id == known.id and verdict.participant is False
    assert "x@else.example is not a participant" in verdict.note


def test_subject_number_from_a_stranger_appends_untrusted_under_append(
        session: Session) -> None:
    known = ticket(session)
    verdict = verdict_of(session, "append", subject=f"[{NUMBER}]", sender="x@else.example")
    assert (verdict.action, verdict.ticket_id, verdict.trusted) == ("follow-up", known.id, False)
    assert "appended and flagged as untrusted" in verdict.note


def test_a_stranger_replying_to_our_mail_joins_the_ticket_untrusted(session: Session) -> None:
    """Naming one of our Message-IDs proves which ticket a reply is about (a forwarded
    acceptance answered by a colleague), not who sent it: kept with the ticket, untrusted."""
    known = ticket(session)
    message(session, known, "ticketd.secret@corp.example", direction="out")
    verdict = verdict_of(session, subject=f"Re: [{NUMBER}]", sender="x@else.example",
                         in_reply_to="<ticketd.secret@corp.example>")
    assert (verdict.action, verdict.rule, verdict.ticket_id) == ("follow-up", "subject", known.id)
    assert verdict.participant is False and verdict.trusted is False


def test_a_number_that_names_no_ticket_never_makes_a_ghost(session: Session) -> None:
    verdict = verdict_of(session, subject="Re: [TS20231027000099] 打印机")
    assert (verdict.action, verdict.rule) == ("new", "none")
    assert verdict.note == "subject names TS20231027000099, which does not exist: new ticket"


def test_in_reply_to_an_incoming_message_of_the_ticket(session: Session) -> None:
    known = ticket(session)
    message(session, known, "first@client.example")
    verdict = verdict_of(session, subject="Re: 打印机", in_reply_to="<first@client.example>")
    assert (verdict.action, verdict.rule, verdict.ticket_id) == (
        "follow-up", "in-reply-to", known.id)
    assert verdict.note == "in-reply-to names first@client.example"


def test_references_the_most_recent_one_wins(session: Session) -> None:
    older, newer = ticket(session), ticket(session, "TS20231027000002")
    message(session, older, "old@client.example")
    message(session, newer, "new@client.example")
    verdict = verdict_of(session, subject="Re: 打印机",
                         references="<old@client.example> <new@client.example>")
    assert (verdict.rule, verdict.ticket_id) == ("references", newer.id)


def test_in_reply_to_from_a_stranger_follows_the_policy(session: Session) -> None:
    known = ticket(session)
    message(session, known, "first@client.example")
    verdict = verdict_of(session, sender="x@else.example",
                         in_reply_to="<first@client.example>")
    assert (verdict.action, verdict.rule, verdict.linked_ticket_id) == (
        "new", "in-reply-to", known.id)


def test_the_subject_decides_before_the_reply_headers(session: Session) -> None:
    by_subject, by_header = ticket(session), ticket(session, "TS20231027000002")
    message(session, by_header, "other@client.example")
    verdict = verdict_of(session, subject=f"Re: [{NUMBER}]",
                         in_reply_to="<other@client.example>")
    assert (verdict.rule, verdict.ticket_id) == ("subject", by_subject.id)


def test_bounded_keeps_the_first_and_the_latest_ids() -> None:
    ids = tuple(f"id{i}@x" for i in range(200))
    kept = bounded((*ids, "id0@x"))  # a duplicate is counted once
    assert len(kept) == MAX_LOOKUP_IDS
    assert kept[0] == "id0@x" and kept[1:] == ids[-(MAX_LOOKUP_IDS - 1):]
    assert bounded(ids[:3]) == ids[:3]
