"""A backlog against a real Dovecot: a worker process parses the next batch and draws its pure
conclusions while this one is written, and every message still gets exactly the outcome
intake gives it one by one (threading onto tickets opened earlier in the same batch,
auto-replies, quarantine, the moves after each commit)."""

from __future__ import annotations

import logging
from collections import Counter
from datetime import UTC, datetime

import pytest
from sqlalchemy import select

from daemon.app import App
from daemon.intake import imap as imap_intake
from daemon.intake import parsing
from daemon.intake.pipeline import Intake
from daemon.models import IntakeRecord, Ticket
from tests import messages
from tests.integration.test_imap_poll import imap_app, spec_of

__all__ = ["imap_app"]  # the fixture
from tests.servers.dovecot import Dovecot

SUBJECTS = ("打印机无法打印", "VPN 无法连接，影响全组，很紧急", "申请开通 GitLab 权限",
            "How do I export the monthly report?", "希望增加导出 Excel 功能")
ROOTS = 110


def backlog() -> list[bytes]:
    mails = [messages.mail(subject=f"{SUBJECTS[n % 5]} #{n}", sender=f"user{n}@corp.example",
                           message_id=f"<n{n}@client.example>",
                           date=datetime(2023, 10, 27, 1, n % 60, tzinfo=UTC))
             for n in range(ROOTS)]
    # replies to roots of the first batch, and to roots of their own batch (written
    # earlier in the same transaction)
    for n in (*range(5), *range(100, 105)):
        mails.append(messages.mail(subject=f"Re: {SUBJECTS[n % 5]} #{n}",
                                   sender=f"user{n}@corp.example",
                                   message_id=f"<r{n}@client.example>",
                                   in_reply_to=f"<n{n}@client.example>",
                                   body=f"补充 {n}：还是不行。"))
    mails.append(messages.auto_reply())
    mails.append(b"Subject: nobody sent this\r\nMessage-ID: <x@y>\r\n\r\nno From at all\r\n")
    return mails


def test_a_backlog_is_parsed_in_a_worker_and_each_mail_has_its_outcome(
        imap_app: App, imap: Dovecot, caplog: pytest.LogCaptureFixture,
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(parsing, "PARSE_WHILE_STARTING", False)  # every batch to the worker
    mails = backlog()
    for raw in mails:
        imap.append("support", raw)
    assert len(mails) >= parsing.WORTH_A_WORKER
    with caplog.at_level(logging.DEBUG, logger="ticketd"):
        report = imap_intake.poll_once(imap_app, Intake(imap_app),
                                       spec_of(imap_app, batch_size=25))
    assert "parsing in a worker process" in caplog.text
    assert caplog.text.count("parsed in the worker") == 5  # 122 messages in batches of 25
    assert Counter(r.action for r in report.results) == {
        "created": ROOTS, "appended": 10, "ignored": 1, "quarantined": 1}
    assert imap.folder_uids("support", "INBOX") == []
    assert len(imap.folder_uids("support", "Processed")) == len(mails) - 1
    assert len(imap.folder_uids("support", "Quarantine")) == 1
    reader = imap_app.reader
    with imap_app.db.transaction() as s:
        assert len(s.scalars(select(IntakeRecord)).all()) == len(mails)
        tickets = {t.subject: t for t in s.scalars(select(Ticket))}
        assert len(tickets) == ROOTS
        for n in range(ROOTS):
            ticket = tickets[f"{SUBJECTS[n % 5]} #{n}"]
            first = ticket.messages[0]
            # classified ahead in the worker, exactly as intake classifies in-process
            found = reader.classify(first.subject, first.new_text, now=first.date)
            assert (ticket.category, ticket.priority, ticket.team, ticket.fields) == (
                found.category, found.priority, found.team, found.fields), n
            kinds = [m.kind for m in ticket.messages if m.direction == "in"]
            assert kinds == (["new", "follow-up"] if n in (*range(5), *range(100, 105))
                             else ["new"]), n


def test_batches_are_fetched_ahead_of_the_one_written_never_beside_a_big_one(
        imap_app: App, imap: Dovecot, monkeypatch: pytest.MonkeyPatch) -> None:
    """Up to PARSE_AHEAD small batches are fetched (and parsing) while one is written, so a
    batch slow to parse does not stop the writing; a batch with big attachments is fetched
    only once everything before it is written, and nothing after it until it is written."""
    big_at = 6  # batches of 2: the fourth batch holds the big mail
    for n in range(12):
        files = [("big.bin", "application/octet-stream", bytes(60_000))] if n == big_at else None
        imap.append("support", messages.mail(subject=f"ahead {n}", message_id=f"<a{n}@x>",
                                             sender=f"u{n}@corp.example", attachments=files))
    monkeypatch.setattr(imap_intake, "BATCH_BYTES", 100_000)  # small: up to 50,000 bytes
    events: list[tuple[str, int]] = []
    fetched, ingest = imap_intake._fetched, imap_intake._ingest

    def fetching(client: object, batch: list[int], *rest: object) -> object:
        events.append(("fetch", batch[0]))
        return fetched(client, batch, *rest)  # type: ignore[arg-type]

    def writing(*args: object) -> bool:
        taken = args[6]
        assert isinstance(taken, list)
        events.append(("write", taken[0]))
        return ingest(*args)  # type: ignore[arg-type]

    monkeypatch.setattr(imap_intake, "_fetched", fetching)
    monkeypatch.setattr(imap_intake, "_ingest", writing)
    submit = parsing.ParseAhead.submit
    read_here: list[tuple[int, bool]] = []

    def submitting(self: parsing.ParseAhead, raws: list[object], here: bool = False) -> object:
        read_here.append((len(raws), here))
        return submit(self, raws, here)  # type: ignore[arg-type]

    monkeypatch.setattr(parsing.ParseAhead, "submit", submitting)
    report = imap_intake.poll_once(imap_app, Intake(imap_app), spec_of(imap_app, batch_size=2))
    assert Counter(r.action for r in report.results) == {"created": 12}
    firsts = sorted(uid for kind, uid in events if kind == "fetch")
    batch = {uid: n for n, uid in enumerate(firsts)}   # first UID -> batch index
    order = [(kind, batch[uid]) for kind, uid in events]
    assert sorted(order) == sorted([("fetch", n) for n in range(6)] +
                                   [("write", n) for n in range(6)])
    when = {step: at for at, step in enumerate(order)}
    big = big_at // 2
    # small batches: the two after one are fetched before it is written
    assert when[("fetch", 1)] < when[("fetch", 2)] < when[("write", 0)]
    assert when[("fetch", 5)] < when[("write", 4)]
    # the big batch: fetched after every earlier batch is written, nothing after it
    # fetched before it is written
    assert when[("fetch", big)] > when[("write", big - 1)]
    assert when[("fetch", big + 1)] > when[("write", big)]
    assert imap_intake.PARSE_AHEAD == 2
    # the big batch is parsed in this process, never handed to a worker
    assert [here for _, here in read_here] == [n == big for n in range(6)]
