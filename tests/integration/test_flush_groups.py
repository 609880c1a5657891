"""A backlog's flush: the stored bytes read a group at a time within a byte budget, and each
"sent" recorded in its own cheap transaction, on SQLite and PostgreSQL (``database_url``).

What must not break when the flush reads several mails' bytes in one statement and records a
plain "sent" on the connection it holds for the batch: every mail goes out with its own bytes,
a group never holds more than the budget (or one mail larger than it), a mail whose bytes are
missing fails alone, VERP copies keep their own envelopes, an SMTP outage in the middle of a
group gives the rest back untried, and a crash after a send loses the record of no mail sent
before it (each "sent" is committed before the next mail is handed over).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from datetime import timedelta
from email import message_from_bytes, policy
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import delete, event, null, select, update

from daemon import verp
from daemon.app import App
from daemon.clock import FixedClock
from daemon.errors import TransportUnavailable
from daemon.intake.pipeline import Intake
from daemon.intake.sources import RawMail
from daemon.models import OutboxBytes, OutboxMail
from daemon.replies import outbox, readahead
from daemon.replies.notify import Notify
from daemon.replies.readahead import ReadAhead
from daemon.replies.transports import FileTransport
from tests import messages
from tests.conftest import make_config
from tests.writing import stored_bytes, write_queued

COMPLETE = "您好，OA 系统登录后一直转圈。\n系统: OA\n影响范围: 财务部\n"
MiB = 1024 * 1024


def queue(app: App, count: int, cc: str | None = None) -> list[int]:
    """``count`` new tickets, their mails written and stored as the Prewriter leaves them;
    the outbox row ids, oldest first."""
    intake = Intake(app, notifier=Notify(app))
    for n in range(count):
        result = intake.ingest(RawMail(messages.mail(
            subject=f"OA 无法登录 {n}", body=COMPLETE, sender=f"user{n}@corp.example", cc=cc),
            "test"))
        assert result.action == "created", result
    write_queued(app)
    with app.db.transaction() as s:
        return list(s.scalars(select(OutboxMail.id).order_by(OutboxMail.id)))


def stored(app: App) -> dict[int, OutboxMail]:
    with app.db.transaction() as s:
        found = {row.id: row for row in s.scalars(select(OutboxMail).order_by(OutboxMail.id))}
        s.expunge_all()
        return found


def pad(app: App, row_id: int, size: int) -> bytes:
    """Make a row's stored mail ``size`` bytes long (an epilogue after the last boundary, as a
    big attachment would make it); returns the new bytes."""
    with app.db.transaction() as s:
        raw = s.scalars(select(OutboxBytes.raw).where(OutboxBytes.outbox_id == row_id)).one()
        assert len(raw) < size
        padded = bytes(raw) + b"\r\n" + b"x" * (size - len(raw) - 2)
        s.execute(update(OutboxBytes).where(OutboxBytes.outbox_id == row_id)
                  .values(raw=padded))
        s.execute(update(OutboxMail).where(OutboxMail.id == row_id).values(size=size))
    return padded


def sent_as_stored(app: App) -> dict[str, bytes]:
    """Every written mail's stored bytes by Message-ID (what ``delivered`` must equal)."""
    written = stored_bytes(app)
    return {r.message_id: written[i] for i, r in stored(app).items()}


def delivered(app: App) -> dict[str, bytes]:
    """The file backend's mails by Message-ID (without its ``Return-Path`` line)."""
    found: dict[str, bytes] = {}
    for path in Path(app.config.smtp.file_dir).glob("*.eml"):
        data = path.read_bytes()
        assert data.startswith(b"Return-Path:")
        body = data.split(b"\r\n", 1)[1]
        mid = message_from_bytes(body, policy=policy.default)["Message-ID"].strip("<>")
        assert found.get(mid, body) == body, "two copies of one mail differ"
        found[mid] = body
    return found


@pytest.fixture
def raw_reads(app: App) -> Iterator[list[int]]:
    """How many mails each statement that read stored bytes asked for, in order."""
    reads: list[int] = []

    def seen(_conn: Any, _cursor: Any, statement: str, parameters: Any, *_: Any) -> None:
        if statement.lstrip().upper().startswith("SELECT") and "outbox_bytes.raw" in statement:
            reads.append(len(parameters))

    event.listen(app.db.engine, "before_cursor_execute", seen)
    yield reads
    event.remove(app.db.engine, "before_cursor_execute", seen)


class FailingAt(FileTransport):
    """The file backend until its ``at``-th send (1-based), which fails as given."""

    def __init__(self, folder: Path, at: int, error: BaseException) -> None:
        super().__init__(folder)
        self.at, self.error, self.calls = at, error, 0

    def send(self, sender: str, recipients: Sequence[str], raw: bytes) -> dict[str, str]:
        self.calls += 1
        if self.calls == self.at:
            raise self.error
        return super().send(sender, recipients, raw)


# ---------------------------------------------------------------- the read-ahead itself


def test_read_ahead_groups_within_the_budget_and_hands_each_mail_its_own_bytes(
        app: App) -> None:
    ids = queue(app, 6)[:6]
    with app.db.transaction() as s:
        for n, row_id in enumerate(ids):
            s.execute(update(OutboxBytes).where(OutboxBytes.outbox_id == row_id).values(
                raw=f"mail {n} ".encode() * 30))  # 7-8 bytes a repeat: 210-240 bytes
    sizes: list[tuple[int, int | None]] = [(i, 240) for i in ids]
    sizes[3] = (ids[3], 900)   # bigger than the budget: read alone
    sizes[4] = (ids[4], None)  # size unknown: read alone
    with app.db.engine.connect() as conn:
        reader = ReadAhead(conn, sizes, budget=500)
        reads = []
        for n, row_id in enumerate(ids):
            assert reader.take(row_id) == f"mail {n} ".encode() * 30
            reads.append(reader.reads)
        assert reader.take(ids[0]) is None  # handed out once, then dropped
        assert reader.take(10_000) is None  # not one of the mails given: no read
        assert reader.reads == 5
    # [0, 1] together (480 <= 500), [2] (the next is over the budget), [3], [4], [5]
    assert reads == [1, 1, 2, 3, 4, 5]


def test_read_ahead_gives_none_for_a_mail_without_bytes(app: App) -> None:
    first, second = queue(app, 2)[:2]
    with app.db.transaction() as s:
        s.execute(delete(OutboxBytes).where(OutboxBytes.outbox_id == second))
    with app.db.engine.connect() as conn:
        reader = ReadAhead(conn, [(first, 10), (second, 10)])
        assert reader.take(second) is None
        assert reader.take(first) is not None
        assert reader.reads == 1


# ---------------------------------------------------------------- through the flush


def test_a_backlog_is_read_in_groups_of_the_budget_and_each_mail_sent_with_its_bytes(
        app: App, raw_reads: list[int]) -> None:
    ids = queue(app, 6)
    budget = readahead.RAW_BUDGET
    # two that fit together, one over the budget, then the small ones
    expected = {ids[0]: pad(app, ids[0], budget // 3), ids[1]: pad(app, ids[1], budget // 3),
                ids[2]: pad(app, ids[2], budget + MiB)}
    rows = stored(app)
    expected.update({i: raw for i, raw in stored_bytes(app).items() if i not in expected})
    raw_reads.clear()
    report = outbox.flush(app)
    assert (report.sent, report.failed) == (len(ids), 0)
    sent = delivered(app)
    assert {rows[i].message_id: raw for i, raw in expected.items()} == sent
    assert raw_reads == [2, 1, len(ids) - 3]  # one statement per group, not per mail
    assert {r.status for r in stored(app).values()} == {"sent"}


def test_a_mail_whose_bytes_are_missing_fails_alone(app: App) -> None:
    ids = queue(app, 4)
    with app.db.transaction() as s:  # neither bytes nor what to write them from
        s.execute(delete(OutboxBytes).where(OutboxBytes.outbox_id == ids[1]))
        s.execute(update(OutboxMail).where(OutboxMail.id == ids[1]).values(
            size=None, variables=null()))  # SQL NULL, as before migration 0006
    report = outbox.flush(app)
    assert (report.sent, report.failed) == (len(ids) - 1, 1)
    rows = stored(app)
    assert rows[ids[1]].status == "failed"
    assert rows[ids[1]].last_error == "mail has neither bytes nor draft"
    assert set(delivered(app)) == {r.message_id for i, r in rows.items() if i != ids[1]}


def test_recording_sent_costs_one_commit_a_mail(app: App) -> None:
    ids = queue(app, 10)
    commits: list[int] = []

    def committed(*_: Any) -> None:
        commits.append(1)

    event.listen(app.db.engine, "commit", committed)
    try:
        assert outbox.flush(app).sent == len(ids)
    finally:
        event.remove(app.db.engine, "commit", committed)
    # a claim, a read of the group, one "sent" per mail, and the claim that finds none
    assert len(commits) <= len(ids) + 3, len(commits)


def test_verp_copies_keep_their_own_envelopes_when_read_in_a_group(
        tmp_path: Path, database_url: str, clock: FixedClock) -> None:
    colleague = "wang@corp.example"
    app = App(make_config(tmp_path, database_url, mail={"verp": True}), clock=clock)
    app.ready_db()
    try:
        ids = queue(app, 3, cc=colleague)
        rows, written = stored(app), stored_bytes(app)
        assert outbox.flush(app).sent == len(ids)
        files = list(Path(app.config.smtp.file_dir).glob("*.eml"))
        assert len(files) == sum(len(r.recipients) for r in rows.values())
        by_mid = {r.message_id: r for r in rows.values()}
        for path in files:
            data = path.read_bytes()
            head, body = data.split(b"\r\n", 1)
            mail = message_from_bytes(body, policy=policy.default)
            row = by_mid[mail["Message-ID"].strip("<>")]
            assert body == written[row.id]
            rcpt = path.name.removesuffix(".eml").rsplit("+", 1)[1]
            index = row.recipients.index(rcpt)
            sender = head.decode().removeprefix("Return-Path: <").removesuffix(">")
            assert sender == verp.address(app.config.support.address, verp.make_tag(
                row.id, index, rcpt, row.verp_key or ""))
    finally:
        app.close()


def test_an_smtp_outage_in_the_middle_of_a_group_gives_the_rest_back_untried(
        app: App) -> None:
    ids = queue(app, 6)
    folder = Path(app.config.smtp.file_dir)
    down = TransportUnavailable("smtp 127.0.0.1:25: cannot connect: refused")
    report = outbox.flush(app, FailingAt(folder, 3, down))
    assert (report.sent, report.held, report.failed) == (2, len(ids) - 2, 0)
    rows = stored(app)
    assert [rows[i].status for i in ids] == ["sent"] * 2 + ["queued"] * (len(ids) - 2)
    assert all(rows[i].attempts == 0 for i in ids[2:])  # untried: no attempt counted
    assert all(rows[i].claimed_by is None for i in ids[2:])
    assert outbox.flush(app).sent == len(ids) - 2
    assert delivered(app) == sent_as_stored(app)


def test_a_crash_mid_group_loses_no_record_of_a_mail_sent_before_it(
        app: App, clock: FixedClock) -> None:
    ids = queue(app, 6)
    folder = Path(app.config.smtp.file_dir)
    with pytest.raises(SystemExit):
        outbox.flush(app, FailingAt(folder, 4, SystemExit("killed mid-send")))
    rows = stored(app)  # read on a fresh connection: what a restart finds
    assert [rows[i].status for i in ids] == ["sent"] * 3 + ["sending"] * (len(ids) - 3)
    assert all(rows[i].sent_at is not None for i in ids[:3])
    clock.advance(timedelta(seconds=app.config.smtp.claim_seconds + 1))
    report = outbox.flush(app)
    assert report.sent == len(ids) - 3  # the rest, the one in hand included; none twice
    assert delivered(app) == sent_as_stored(app)


def test_the_batch_connection_goes_back_to_the_pool_transactional(app: App) -> None:
    """On PostgreSQL the flush reads and records "sent" in autocommit; a pooled connection
    left so would commit every statement of the next intake batch on its own (no rollback,
    no savepoint per message)."""
    queue(app, 3)
    assert outbox.flush(app).sent == 3
    held = [app.db.engine.connect() for _ in range(5)]  # every one the pool keeps (db.py)
    try:
        if not app.db.is_sqlite:  # (SQLite: db.py issues every BEGIN itself)
            assert not any(c.connection.driver_connection.autocommit  # type: ignore[union-attr]
                           for c in held)
    finally:
        for c in held:
            c.close()
    with pytest.raises(RuntimeError), app.db.transaction() as s:
        s.execute(update(OutboxMail).values(subject="changed"))
        raise RuntimeError("rolled back")
    assert {r.subject for r in stored(app).values()} != {"changed"}
