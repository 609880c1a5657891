"""The loop brake and the new-ticket budget answered once per batch give, message by message,
exactly what one query per message gives (SQLite and PostgreSQL).

A probe intake asks both before every message of a real batch: the batch's answer
(``budget.over_budget``, ``brake.look``, primed at the start of the batch and kept in memory)
and the database's own (``limits.over_budget``, ``brake.ask``, each one query, seeing every row
the batch has written so far). The batch has two new tickets from the same mailbox (one with
a ``+tag``), a sender over its budget whose savepoint rolls back, a domain that reaches its
limit inside the batch, an address held after a bounce, and an unparseable message.
"""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import select, text
from sqlalchemy.orm import Session

from daemon import tickets
from daemon.addresses import normalize
from daemon.app import App
from daemon.clock import FixedClock
from daemon.intake import budget, pipeline, seen
from daemon.intake.parsed import ParsedMail
from daemon.intake.pipeline import Intake
from daemon.intake.prepare import Prepared
from daemon.intake.sources import RawMail
from daemon.models import Message, OutboxMail, Suppression
from daemon.outcomes import IntakeResult
from daemon.replies import brake
from daemon.replies.notify import Notify
from tests.conftest import make_config
from tests.messages import mail

PER_SENDER = 2
PER_DOMAIN = 5
ADDRESSES = ("a@x.example", "a+1@x.example", "b@x.example", "c@x.example", "d@y.example",
             "e@x.example", "ops1@corp.example")


class Asking(Intake, ABC):
    """Intake that calls :meth:`_ask_both` before each message, whichever way the batch is
    written (together, or one savepoint a message)."""

    answers: list[tuple[str, object, object]]

    def _one(self, session: Session, raw: RawMail,
             mail: Prepared | ParsedMail | str) -> IntakeResult:
        self._ask_both(session)
        return super()._one(session, raw, mail)

    def _one_of_many(self, session: Session, raw: RawMail,
                     mail: Prepared | ParsedMail | str) -> IntakeResult:
        self._ask_both(session)
        return super()._one_of_many(session, raw, mail)

    @abstractmethod
    def _ask_both(self, session: Session) -> None:
        """Ask the question both ways and keep both answers in :attr:`answers`."""


class Probe(Asking):
    """Intake that, before each message, asks both ways and keeps what each said."""

    def _ask_both(self, session: Session) -> None:
        now = self.app.clock.now()
        for address in ADDRESSES:
            mailbox = normalize(address)
            self.answers.append((
                f"budget {mailbox}",
                budget.over_budget(session, mailbox, now, PER_SENDER, PER_DOMAIN),
                budget.counted_over_budget(session, mailbox, now, PER_SENDER, PER_DOMAIN)))
            self.answers.append((f"brake {address}", brake.look(session, address, mailbox, now),
                                 brake.ask(session, address, mailbox, now)))


@pytest.fixture(params=[True, False], ids=["together", "one-by-one"])
def write_together(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> bool:
    """Both ways of writing a batch: together first (one flush), and one savepoint a
    message (what the first way falls back to)."""
    monkeypatch.setattr(pipeline, "WRITE_TOGETHER", request.param)
    return bool(request.param)


@pytest.fixture
def limited(tmp_path: Path, database_url: str, clock: FixedClock) -> Iterator[App]:
    cfg = make_config(tmp_path, database_url,
                      mail={"max_new_tickets_per_hour": PER_SENDER,
                            "max_new_tickets_per_domain_hour": PER_DOMAIN,
                            "auto_reply_limit": 2})
    application = App(cfg, clock=clock)
    application.ready_db()
    yield application
    application.close()


def test_batch_answers_equal_one_query_per_message(limited: App, clock: FixedClock,
                                                   write_together: bool) -> None:
    now = clock.now()
    with limited.db.transaction() as s:   # before the batch: one ticket and one mail to a@
        tickets.create(s, number="TS20231026000001", subject="earlier", requester_name="",
                       requester_email="a@x.example", at=now - timedelta(minutes=30))
        tickets.create(s, number="TS20231026000002", subject="too old", requester_name="",
                       requester_email="a@x.example", at=now - timedelta(minutes=61))
        s.add(OutboxMail(message_id="<m1@corp.example>", kind="acceptance",
                         sender="support@corp.example", recipients=["a@x.example"],
                         primary_recipient="a@x.example",
                         created_at=now - timedelta(minutes=10), automatic=True,
                         status="sent", next_attempt_at=now))
        s.add(Suppression(address="b@x.example", reason="5.1.1 user unknown", at=now,
                          until=now + timedelta(hours=2)))
    batch = [
        mail(subject="printer one", sender="a@x.example"),
        mail(subject="printer two", sender="A <a+1@x.example>"),      # over: 2 in the hour
        mail(subject="vpn", sender="b@x.example"),                      # held address
        b"\x00 not a mail at all",
        mail(subject="mail server", sender="c@x.example", cc="e@x.example"),
        mail(subject="mail server again", sender="c@x.example"),
        mail(subject="laptop", sender="e@x.example"),                   # x.example is full
        mail(subject="erp", sender="d@y.example"),
    ]
    intake = Probe(limited, notifier=Notify(limited))
    intake.answers = []
    results = intake.ingest_batch([RawMail(raw, f"test:{n}") for n, raw in enumerate(batch)])

    assert [r.action for r in results] == ["created", "quarantined", "created", "quarantined",
                                           "created", "created", "quarantined", "created"]
    assert "rate limit: 2 new tickets from a@x.example" in (results[1].reason or "")
    assert "rate limit: 5 new tickets from @x.example" in (results[6].reason or "")
    assert len(intake.answers) == len(batch) * len(ADDRESSES) * 2
    for what, batched, single in intake.answers:
        assert batched == single, what
    # the answers changed during the batch, so equality was tested on moving counts
    assert len({str(b) for w, b, _ in intake.answers if w == "budget a@x.example"}) > 1
    assert len({str(b) for w, b, _ in intake.answers if w == "brake c@x.example"}) > 1


class Refused(Intake):
    """Intake whose batch-wide queries the database refuses (a real error from the server)."""

    def _ask_batch(self, session: Session, mails: Sequence[ParsedMail]) -> None:
        super()._ask_batch(session, mails)
        session.execute(text("SELECT no_such_column FROM tickets"))


def test_a_refused_batch_query_leaves_the_batch_to_per_message_answers(
        limited: App, caplog: pytest.LogCaptureFixture) -> None:
    batch = [mail(subject="one", sender="p@x.example"), mail(subject="two", sender="p@x.example"),
             mail(subject="three", sender="p+2@x.example")]
    with caplog.at_level(logging.WARNING, logger="ticketd.intake"):
        results = Refused(limited, notifier=Notify(limited)).ingest_batch(
            [RawMail(raw, f"test:{n}") for n, raw in enumerate(batch)])
    assert [r.action for r in results] == ["created", "created", "quarantined"]
    assert "rate limit: 2 new tickets from p@x.example" in (results[2].reason or "")
    assert any("batch answers not primed" in r.getMessage() for r in caplog.records)


class SeenProbe(Asking):
    """Intake that, before each message, asks the dedup question about every Message-ID of
    the batch both ways (from the batch's answers, and with one query)."""

    ids: tuple[str, ...] = ()

    def _ask_both(self, session: Session) -> None:
        for message_id in self.ids:
            record, ours = seen.ask(session, message_id)
            record_id, our_id = session.execute(seen.SEEN_OR_OURS, {"key": message_id}).one()
            self.answers.append((message_id, (record.id if record else None, ours),
                                 (record_id, our_id is not None)))


def test_the_batch_answers_deduplication_as_one_query_per_message_would(
        limited: App, write_together: bool) -> None:
    earlier = mail(subject="seen before", sender="f@x.example", message_id="<old@client>")
    first = Intake(limited, notifier=Notify(limited))
    [before] = first.ingest_batch([RawMail(earlier, "test:earlier")])
    with limited.db.transaction() as s:   # the id of our own mail (its copy on the ticket)
        ours = s.scalars(select(Message.dedup_key).where(Message.direction == "out")).first()
    assert before.action == "created" and ours
    twice = mail(subject="twice in one batch", sender="g@x.example", message_id="<twice@client>")
    batch = [
        mail(subject="new", sender="h@x.example", message_id="<new@client>"),
        earlier,                                                           # seen before
        twice,
        mail(subject="mine?", sender="i@x.example", message_id=f"<{ours}>"),  # our id
        twice,                                                             # seen in this batch
        b"\x00 not a mail at all",                                         # a rollback
        mail(subject="after", sender="j@x.example", message_id="<after@client>"),
    ]
    probe = SeenProbe(limited, notifier=Notify(limited))
    probe.ids = ("new@client", "old@client", "twice@client", ours, "after@client")  # as kept
    probe.answers = []
    results = probe.ingest_batch([RawMail(raw, f"test:{n}") for n, raw in enumerate(batch)])
    assert [r.action for r in results] == ["created", "duplicate", "created", "created",
                                           "duplicate", "quarantined", "created"]
    assert len(probe.answers) == len(batch) * len(probe.ids)
    for message_id, batched, single in probe.answers:
        assert batched == single, message_id
    # the answers moved during the batch (a record written, then seen)
    assert len({str(b) for m, b, _ in probe.answers if m == "twice@client"}) > 1
    assert {b for m, b, _ in probe.answers if m == ours} == {(None, True)}
    assert {isinstance(b, tuple) and b[0] is not None
            for m, b, _ in probe.answers if m == "old@client"} == {True}
