"""A batch written together leaves exactly what the same batch leaves one savepoint per message.

Intake first writes a batch's messages without a savepoint each, so their rows go out in one
flush (ids handed out before it, :mod:`daemon.row_ids`); any error rolls that try back and
the batch is written again message by message. These tests run the same mail both ways on a
fresh database and compare every row of every table, on SQLite and PostgreSQL: replies and
subject numbers naming tickets opened earlier in the same batch, duplicates inside the batch,
auto-replies, bounces, quarantine (no sender, over the new-ticket budget), attachments that an
``assigned`` mail names by id, handler commands, a stranger linked to a ticket. Then the ways
out of the first try: a message that fails, and a row the database refuses at the flush.
"""

from __future__ import annotations

import functools
import itertools
import re
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime
from types import SimpleNamespace
from typing import Any

import pytest
from sqlalchemy import event, select, text
from sqlalchemy.orm import Session

from daemon import verp
from daemon.app import App
from daemon.intake import pipeline
from daemon.intake.pipeline import Intake
from daemon.intake.prepare import content_hash
from daemon.intake.sources import RawMail
from daemon.models import Base, IntakeRecord, OutboxMail
from daemon.outcomes import IntakeResult
from daemon.replies import compose
from daemon.replies.notify import Notify
from tests import messages
from tests.integration.test_workflow import (  # noqa: F401  (make_app: fixture)
    LI,
    OUTAGE,
    WANG,
    make_app,
)

DAY = "TS20231027"
ATTACHED = [("screenshot.png", "image/png", b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4),
            ("log.txt", "text/plain", "错误日志\nERROR 500\n".encode())]
PRINTER = "您好，三楼的打印机从今天早上开始无法打印。\n系统: 打印服务\n影响范围: 三楼\n"


def number(n: int) -> str:
    return f"{DAY}{n:06d}"


def at(minute: int) -> datetime:
    return datetime(2023, 10, 27, 1, minute % 60, tzinfo=UTC)


@functools.cache
def first_batch() -> list[bytes]:
    """Tickets 1-10 are the first ten roots; the rest talk about them in the same batch.
    Made once: a MIME boundary is random, and both runs must see the same bytes."""
    roots = [messages.mail(subject=f"打印机无法打印 #{n}", sender=f"user{n}@corp.example",
                           message_id=f"<root{n}@client.example>", date=at(n),
                           body=OUTAGE if n % 3 == 0 else PRINTER,
                           attachments=ATTACHED if n % 4 == 1 else None)
             for n in range(1, 11)]
    return [
        *roots[:5],
        # a reply (In-Reply-To) to a root written earlier in this batch
        messages.mail(subject="Re: 打印机无法打印 #2", sender="user2@corp.example",
                      message_id="<re2@client.example>", in_reply_to="<root2@client.example>",
                      references="<root2@client.example>", body="补充：还是不行。\n",
                      attachments=ATTACHED[:1]),
        *roots[5:],
        # the requester names their ticket's number (opened in this batch)
        messages.mail(subject=f"[{number(3)}] 补充信息", sender="user3@corp.example",
                      message_id="<num3@client.example>", body="影响范围：全楼\n"),
        # a stranger names a ticket of this batch: a new ticket linked to it
        messages.mail(subject=f"Re: [{number(4)}] 我也一样", sender="other@corp.example",
                      message_id="<stranger@client.example>", body="我这里也打不开。\n"),
        # the same Message-ID twice in one batch (and the same bytes): one ticket
        messages.mail(subject="VPN 无法连接", sender="twice@corp.example",
                      message_id="<twice@client.example>", date=at(20)),
        messages.mail(subject="VPN 无法连接", sender="twice@corp.example",
                      message_id="<twice@client.example>", date=at(20)),
        # no Message-ID, twice: deduplicated by content
        messages.without_header(messages.mail(subject="没有 ID", sender="noid@corp.example",
                                              date=at(21)), "Message-ID"),
        messages.without_header(messages.mail(subject="没有 ID", sender="noid@corp.example",
                                              date=at(21)), "Message-ID"),
        # an auto-reply about a root of this batch, and a bounce naming nothing of ours
        messages.mail(subject="Automatic reply: 打印机无法打印 #5", sender="user5@corp.example",
                      message_id="<auto5@client.example>", in_reply_to="<root5@client.example>",
                      body="I am out of the office until Monday.",
                      headers={"Auto-Submitted": "auto-replied"}),
        messages.dsn("<unknown@elsewhere.example>"),
        # no sender at all: quarantined
        b"Subject: nobody sent this\r\nMessage-ID: <nofrom@client.example>\r\n\r\nno From\r\n",
        # one sender over the new-ticket budget (10 an hour): the last two are quarantined
        *[messages.mail(subject=f"批量 {n}", sender="flood@corp.example",
                        message_id=f"<flood{n}@client.example>", date=at(30 + n))
          for n in range(12)],
        # a reply to a reply of this batch (References chain), from the requester
        messages.mail(subject="Re: Re: 打印机无法打印 #2", sender="user2@corp.example",
                      message_id="<re2b@client.example>", in_reply_to="<re2@client.example>",
                      references="<root2@client.example> <re2@client.example>",
                      body="好了，谢谢。\n"),
    ]


def second_batch(app: App) -> list[bytes]:
    """Mail about the first batch's tickets, handler commands included, and new roots that
    later mail in this batch names."""
    with app.db.transaction() as s:
        ours = {(row.kind, row.ticket_id, tuple(row.recipients)): row.message_id
                for row in s.scalars(select(OutboxMail).order_by(OutboxMail.id))}
    assigned = sorted((key, mid) for key, mid in ours.items() if key[0] == "assigned")
    mails = []
    for (_kind, _ticket_id, recipients), mid in assigned[:3]:
        handler = recipients[0]
        mails.append(messages.mail(
            subject="RE: 工单", sender=handler, message_id=f"<h{mid}>",
            in_reply_to=f"<{mid}>", references=f"<{mid}>",
            body="#priority P1\n您好，正在处理。\n" if handler == WANG else
                 "#resolve\n已修复，请再试。\n"))
    mails += [
        messages.mail(subject="Re: 打印机无法打印 #7", sender="user7@corp.example",
                      message_id="<re7@client.example>", in_reply_to="<root7@client.example>",
                      body="补充：型号 HP 4200。\n"),
        # the first batch's mail again (fetched twice): duplicates
        messages.mail(subject="VPN 无法连接", sender="twice@corp.example",
                      message_id="<twice@client.example>", date=at(20)),
        messages.mail(subject="新的问题", sender="new@corp.example",
                      message_id="<new1@client.example>", body=OUTAGE),
        messages.mail(subject="Re: 新的问题", sender="new@corp.example",
                      message_id="<new1b@client.example>", in_reply_to="<new1@client.example>",
                      body="另外邮件也收不到。\n"),
        messages.mail(subject="Re: 打印机无法打印 #9", sender=f"李工 <{LI}>",
                      message_id="<li9@client.example>", in_reply_to="<root9@client.example>",
                      body="#resolve\n我来看看。\n"),
    ]
    return mails


def tables(app: App) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every table, in key order."""
    with app.db.transaction() as s:
        return {table.name: [tuple(row) for row in s.execute(
                    select(table).order_by(*table.primary_key.columns))]
                for table in Base.metadata.sorted_tables}


REFERENCES = {"attachment_ids"}  # ids kept in a JSON list
TOKEN = re.compile(r"\b[cv][0-9a-f]{20,}\b")  # a counted token (deterministic_tokens)


def without_ids(dump: dict[str, list[tuple[Any, ...]]]) -> dict[str, list[str]]:
    """The dump with every generated key, every reference to one and every token left out
    (a first try that failed used some of each)."""
    out = {}
    for table in Base.metadata.sorted_tables:
        keep = [n for n, column in enumerate(table.columns)
                if not column.foreign_keys and column.name not in REFERENCES and
                not (column.primary_key and table.autoincrement_column is column)]
        out[table.name] = [TOKEN.sub("TOKEN", repr(tuple(row[n] for n in keep)))
                           for row in dump[table.name]]
    return out


def empty(app: App) -> None:
    """Every table emptied and every id counting from 1 again."""
    names = [t.name for t in reversed(Base.metadata.sorted_tables)]
    with app.db.transaction() as s:
        if app.db.is_sqlite:
            for name in names:
                s.execute(text(f"DELETE FROM {name}"))
        else:
            s.execute(text(f"TRUNCATE {', '.join(names)} RESTART IDENTITY CASCADE"))


@pytest.fixture
def deterministic_tokens(monkeypatch: pytest.MonkeyPatch) -> Callable[[], None]:
    """Our Message-IDs and VERP keys carry random tokens: counted instead (each kind its own
    count: a VERP key is drawn when its row is written, whenever that is), so two runs of
    the same mail write the same rows. Returns the reset."""
    counters: dict[str, Iterator[int]] = {}

    def counting(kind: str) -> SimpleNamespace:
        def token_hex(nbytes: int | None = None) -> str:
            return f"{kind}{next(counters[kind]):0{2 * (nbytes or 16) - 1}x}"
        return SimpleNamespace(token_hex=token_hex)

    def reset() -> None:
        counters.update(c=itertools.count(), v=itertools.count())

    reset()
    monkeypatch.setattr(compose, "secrets", counting("c"))
    monkeypatch.setattr(verp, "secrets", counting("v"))
    return reset


def run(app: App, batches: Sequence[Callable[[App], list[bytes]]], together: bool,
        monkeypatch: pytest.MonkeyPatch) -> tuple[list[list[IntakeResult]], int]:
    """Ingest each batch; (the results, how many messages went the savepoint-per-message
    way)."""
    monkeypatch.setattr(pipeline, "WRITE_TOGETHER", together)
    one_by_one = 0
    original = Intake._one

    def counted(self: Intake, *args: Any) -> IntakeResult:
        nonlocal one_by_one
        one_by_one += 1
        return original(self, *args)

    monkeypatch.setattr(Intake, "_one", counted)
    intake = Intake(app, notifier=Notify(app))
    results = []
    for make in batches:
        raws = make(app)
        results.append(intake.ingest_batch([RawMail(raw, f"test:{n}")
                                            for n, raw in enumerate(raws)]))
    monkeypatch.setattr(Intake, "_one", original)
    return results, one_by_one


@pytest.fixture
def app(make_app: Callable[..., App]) -> App:  # noqa: F811
    return make_app(mail={"trusted_authserv_ids": ["mx.corp.example"]})


@pytest.fixture
def flushes(app: App) -> Iterator[list[int]]:
    counted: list[int] = []

    def count(session: Session, *_args: Any) -> None:
        counted.append(1)

    event.listen(Session, "after_flush", count)
    yield counted
    event.remove(Session, "after_flush", count)


def outcomes(results: list[list[IntakeResult]]) -> list[list[tuple[Any, ...]]]:
    return [[(r.action, r.number, r.reason, r.message_id) for r in batch] for batch in results]


def test_a_batch_written_together_leaves_what_one_savepoint_per_message_leaves(
        app: App, monkeypatch: pytest.MonkeyPatch, deterministic_tokens: Callable[[], None],
        flushes: list[int]) -> None:
    batches = [lambda _app: first_batch(), second_batch]
    slow, one_by_one = run(app, batches, False, monkeypatch)
    assert one_by_one == sum(len(b) for b in slow)
    expected = tables(app)
    slow_flushes = len(flushes)

    empty(app)
    deterministic_tokens()
    flushes.clear()
    fast, one_by_one = run(app, batches, True, monkeypatch)
    assert one_by_one == 0, "a batch fell back to one savepoint per message"
    for fast_batch, slow_batch in zip(outcomes(fast), outcomes(slow), strict=True):
        for n, (f, w) in enumerate(zip(fast_batch, slow_batch, strict=True)):
            assert f == w, f"message {n}: {f} != {w}"
    got = tables(app)
    for name, rows in expected.items():
        for n, (row, want) in enumerate(zip(got[name], rows, strict=False)):
            assert row == want, f"table {name} row {n} differs"
        assert len(got[name]) == len(rows), f"table {name}: {len(got[name])} != {len(rows)}"
    # fewer flushes: the special cases (a handler's proof and commands, quarantine, mail
    # without a Message-ID, bounces) still read what the batch wrote before them
    assert len(flushes) < slow_flushes / 2

    # the mail really did all it is meant to (so the comparison compares something)
    actions = [r.action for r in fast[0]]
    assert actions.count("quarantined") == 3 and actions.count("duplicate") == 2
    assert ("appended", number(2)) in [(r.action, r.number) for r in fast[0]]
    assert ("appended", number(3)) in [(r.action, r.number) for r in fast[0]]
    linked = [r for r in fast[0] if r.message_id == "stranger@client.example"]
    assert linked[0].action == "created" and "not a participant" in linked[0].reason
    assert [r.action for r in fast[1]].count("appended") >= 5
    assert sum(len(rows) for rows in got.values()) > 200


def test_a_message_that_fails_sends_the_batch_the_savepoint_way_with_the_same_result(
        app: App, monkeypatch: pytest.MonkeyPatch,
        deterministic_tokens: Callable[[], None]) -> None:
    original = Intake._store_message

    def failing(self: Intake, session: Session, ticket: Any, mail: Any, *args: Any,
                **kwargs: Any) -> Any:
        if mail.subject == "boom":
            raise RuntimeError("a bug in one message")
        return original(self, session, ticket, mail, *args, **kwargs)

    monkeypatch.setattr(Intake, "_store_message", failing)

    def batch(_app: App) -> list[bytes]:
        return [*first_batch()[:6], messages.mail(subject="boom", message_id="<boom@x>"),
                *first_batch()[6:9]]

    slow, _ = run(app, [batch], False, monkeypatch)
    expected = tables(app)
    empty(app)
    deterministic_tokens()
    fast, one_by_one = run(app, [batch], True, monkeypatch)
    assert one_by_one == len(fast[0])  # the first try failed: every message the other way
    assert outcomes(fast) == outcomes(slow)
    assert [r.action for r in fast[0]][6] == "quarantined"
    assert "a bug in one message" in fast[0][6].reason
    # the same rows; on PostgreSQL the ids the first try took from the sequences are gaps
    assert without_ids(tables(app)) == without_ids(expected)


def test_a_row_the_database_refuses_at_the_flush_sends_the_batch_the_savepoint_way(
        app: App, monkeypatch: pytest.MonkeyPatch) -> None:
    """Another process recorded one of the batch's Message-IDs after the batch asked: the
    flush of the first try fails on the unique key, and written one by one that message is a
    duplicate and every other one is created."""
    original = Intake._prime

    def prime_then_race(self: Intake, session: Session, mails: Any) -> None:
        original(self, session, mails)
        if not session.info.get("raced"):
            session.info["raced"] = True
            session.add(IntakeRecord(dedup_key="root3@client.example", action="created",
                                     raw_sha256=content_hash(first_batch()[2]),
                                     origin="elsewhere",
                                     at=app.clock.now()))
            session.flush()

    monkeypatch.setattr(Intake, "_prime", prime_then_race)
    fast, one_by_one = run(app, [lambda _app: first_batch()[:8]], True, monkeypatch)
    assert one_by_one == 8
    actions = [(r.action, r.message_id) for r in fast[0]]
    assert actions[2] == ("duplicate", "root3@client.example")
    assert [a for a, _ in actions].count("created") == 6


def test_ordinary_mail_is_written_in_one_flush_a_batch(
        app: App, monkeypatch: pytest.MonkeyPatch, flushes: list[int]) -> None:
    """New requests (some with attachments an ``assigned`` mail names by id), replies by
    header and by subject number to tickets opened earlier in the batch, follow-ups to
    tickets of an earlier batch: what a backlog is made of, one flush a batch."""
    def later(_app: App) -> list[bytes]:
        return [
            messages.mail(subject="Re: 打印机无法打印 #1", sender="user1@corp.example",
                          message_id="<later1@client.example>",
                          in_reply_to="<root1@client.example>", body="补充：还是不行。\n"),
            messages.mail(subject="新的问题", sender="new@corp.example",
                          message_id="<new@client.example>", body=PRINTER,
                          attachments=ATTACHED),
            messages.mail(subject=f"Re: [{number(9)}] 新的问题", sender="new@corp.example",
                          message_id="<new2@client.example>", body="补充。\n"),
        ]

    first = [*first_batch()[:9], first_batch()[11]]  # roots and replies only
    results, one_by_one = run(app, [lambda _app: first, later], True, monkeypatch)
    assert one_by_one == 0
    assert [r.action for r in results[0]] == ["created"] * 5 + ["appended"] + \
        ["created"] * 3 + ["appended"]
    assert [(r.action, r.number) for r in results[1]] == [
        ("appended", number(1)), ("created", number(9)), ("appended", number(9))]
    assert len(flushes) == 2
