"""Outgoing mail is queued as what it is written from and written when it is sent (issue 15).

Every test runs on SQLite and on PostgreSQL (``database_url``). The transport is the real file
backend (``var/outbox``-style folder); a crash is a transport that raises ``SystemExit``
after the bytes were stored, as a killed process would leave the row.
"""

from __future__ import annotations

import email
import shutil
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from email import policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
from alembic import command
from sqlalchemy import select, text

from daemon import db as dbmod
from daemon import desk
from daemon.app import App
from daemon.clock import FixedClock
from daemon.config import from_mapping
from daemon.intake.pipeline import Intake
from daemon.intake.sources import RawMail
from daemon.models import Event, Message, OutboxMail
from daemon.replies import outbox
from daemon.replies.composers import WorkerPool
from daemon.replies.notify import Notify
from daemon.replies.templates import default_templates_dir
from daemon.replies.transports import FileTransport
from daemon.service import Service
from tests import messages
from tests.integration.test_workflow import make_app, text_of  # noqa: F401  (make_app: fixture)
from tests.writing import stored_bytes, write_queued

HANDLER = "wang@corp.example"
TEAMS = [{"name": "ops", "label_zh": "运维组", "label_en": "Operations",
          "lead": "lead@corp.example", "members": [f"王工 <{HANDLER}>"]},
         {"name": "dev", "label_zh": "开发组", "label_en": "Development",
          "lead": "zhao@corp.example", "members": [HANDLER]},
         {"name": "admins", "label_zh": "管理员组", "label_en": "Administrators",
          "members": [HANDLER]}]
SCREENSHOT = ("截图.png", "image/png", b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 40)


@pytest.fixture
def sendtime_app(make_app: Callable[..., App]) -> Callable[..., App]:  # noqa: F811  (the imported fixture)
    """test_workflow's App builder with this file's teams."""
    def build(**sections: dict[str, Any]) -> App:
        return make_app(teams=TEAMS, **sections)
    return build


@pytest.fixture
def app(sendtime_app: Callable[..., App]) -> App:
    return sendtime_app()


def new_ticket(app: App, **changes: Any) -> str:
    raw = messages.mail(subject="OA 打不开", attachments=[SCREENSHOT], **changes)
    result = Intake(app, notifier=Notify(app)).ingest(RawMail(raw, "t"))
    assert result.action == "created" and result.number is not None
    return result.number


def rows(app: App) -> list[OutboxMail]:
    with app.db.transaction() as s:
        found = list(s.scalars(select(OutboxMail).order_by(OutboxMail.id)))
        s.expunge_all()
        return found


def events(app: App, action: str) -> list[str]:
    with app.db.transaction() as s:
        return list(s.scalars(select(Event.detail).where(Event.action == action)
                              .order_by(Event.id)))


def parsed(raw: bytes) -> EmailMessage:
    msg = email.message_from_bytes(raw, policy=policy.default)
    assert isinstance(msg, EmailMessage)
    return msg


def sent_files(app: App) -> dict[str, bytes]:
    """What the file backend delivered, by file name, without the ``Return-Path`` line it
    writes for the envelope sender: the rest is the mail's bytes as sent."""
    folder = Path(app.config.smtp.file_dir)
    found = {p.name: p.read_bytes() for p in folder.glob("*.eml")} if folder.is_dir() else {}
    return {name: data.split(b"\r\n", 1)[1] if data.startswith(b"Return-Path:") else data
            for name, data in found.items()}


class CrashAfterStore(FileTransport):
    """The process dies inside the first send: after the bytes were stored, before delivery."""

    def send(self, sender: str, recipients: Sequence[str], raw: bytes) -> dict[str, str]:
        raise SystemExit("killed mid-send")


# ---------------------------------------------------------------- queue time


def test_intake_queues_the_draft_and_the_message_id_without_writing_the_mail(app: App) -> None:
    number = new_ticket(app)
    acceptance, assigned = rows(app)
    assert (acceptance.kind, assigned.kind) == ("acceptance", "assigned")
    for row in (acceptance, assigned):
        assert row.size is None and row.status == "queued" and row.variables is not None
        assert row.message_id.startswith("ticketd.") and row.message_id.endswith("@corp.example")
    assert acceptance.variables is not None and assigned.variables is not None
    assert acceptance.variables["number"] == number and acceptance.locale == "zh-CN"
    assert assigned.to_addresses == [{"name": "王工", "email": HANDLER}]
    assert acceptance.in_reply_to is not None and acceptance.thread_references
    assert assigned.attachment_ids and len(assigned.attachment_ids) == 1
    # deadlines are ISO times with the support zone's offset
    assert datetime.fromisoformat(assigned.variables["deadline"]).utcoffset() == \
        timedelta(hours=8)
    queued = events(app, "mail-queued")
    assert [row.message_id in detail for row, detail in zip(rows(app), queued,
                                                             strict=True)] == [True, True]
    with app.db.transaction() as s:  # the ticket's copy exists from queue time
        copies = {m.message_id: m.body_text for m in s.scalars(
            select(Message).where(Message.direction == "out"))}
    assert copies == {acceptance.message_id: "", assigned.message_id: ""}
    assert stored_bytes(app) == {}


def test_the_flush_writes_stores_and_sends_the_mail_with_the_queued_message_id(
        app: App) -> None:
    new_ticket(app)
    report = outbox.flush(app)
    assert (report.sent, report.failed) == (2, 0)
    files, stored = sent_files(app), stored_bytes(app)
    for row in rows(app):
        assert row.status == "sent" and row.size == len(stored[row.id])
        assert files[f"{row.message_id}.eml"] == stored[row.id]  # what was stored is what went
        msg = parsed(stored[row.id])
        assert msg["Message-ID"] == f"<{row.message_id}>"
        assert row.subject == msg["Subject"]
    assigned = parsed(stored[rows(app)[1].id])
    [attachment] = list(assigned.iter_attachments())
    assert attachment.get_filename() == "截图.png"
    assert attachment.get_content() == SCREENSHOT[2]
    with app.db.transaction() as s:  # the ticket's copy now has the text that was sent
        copies = {m.message_id: m.body_text for m in s.scalars(
            select(Message).where(Message.direction == "out"))}
    for row in rows(app):
        assert copies[row.message_id] == text_of(parsed(stored[row.id]))
        assert copies[row.message_id].strip()


def test_a_requester_with_an_internationalised_address_gets_an_smtputf8_answer(
        app: App) -> None:
    """RFC 6532/6531: the first answer to 李雷@例子.公司 is written with UTF-8 headers, not
    refused; the file backend names it as the whole mail (its To read as UTF-8)."""
    raw = ("From: 李雷 <李雷@例子.公司>\r\nTo: support@corp.example\r\n"
           "Subject: OA 打不开\r\nMessage-ID: <eai-1@例子.公司>\r\n"
           "Date: Fri, 27 Oct 2023 09:30:00 +0800\r\nMIME-Version: 1.0\r\n"
           "Content-Type: text/plain; charset=utf-8\r\n\r\n"
           "今天 OA 系统打不开。\r\n").encode()
    result = Intake(app, notifier=Notify(app)).ingest(RawMail(raw, "t"))
    assert result.action == "created"
    report = outbox.flush(app)
    assert report.sent >= 1 and report.failed == 0
    acceptance = rows(app)[0]
    raw = stored_bytes(app)[acceptance.id]
    assert acceptance.kind in ("acceptance", "need_info")
    assert sent_files(app)[f"{acceptance.message_id}.eml"] == raw
    head = raw.split(b"\r\n\r\n", 1)[0]
    assert "To: 李雷 <李雷@例子.公司>".encode() in head


def test_the_mail_says_what_was_true_when_it_was_queued(app: App) -> None:
    number = new_ticket(app)
    before = rows(app)[1].variables
    assert before is not None and before["priority"] != "P0"
    desk.run(app, number, [("priority", "P0")], actor=None)  # queued, not yet sent
    write_queued(app)
    assigned = next(r for r in rows(app) if r.kind == "assigned")
    body = text_of(parsed(stored_bytes(app)[assigned.id]))
    assert before["priority"] in body and "P0" not in body


# ---------------------------------------------------------------- templates at send time


def test_a_template_edited_before_sending_writes_the_mail(sendtime_app: Callable[..., App],
                                                          tmp_path: Path) -> None:
    site = tmp_path / "tpl"
    shutil.copytree(default_templates_dir(), site)
    app = sendtime_app(templates={"dir": str(site)})
    new_ticket(app)
    (site / "zh-CN" / "acceptance.txt").write_text(
        "Subject: [{{ number }}] 已收到（新模板）\n\n新模板 {{ number }}\n", encoding="utf-8")
    outbox.flush(app)
    acceptance = rows(app)[0]
    assert acceptance.status == "sent" and "新模板" in acceptance.subject
    assert "新模板" in text_of(parsed(stored_bytes(app)[acceptance.id]))


def test_a_template_broken_before_sending_falls_back_and_says_so(
        sendtime_app: Callable[..., App], tmp_path: Path) -> None:
    site = tmp_path / "tpl"
    shutil.copytree(default_templates_dir(), site)
    app = sendtime_app(templates={"dir": str(site)})
    new_ticket(app)
    broken = site / "zh-CN" / "acceptance.txt"
    broken.write_text(broken.read_text(encoding="utf-8") + "{% endif %}\n", encoding="utf-8")
    report = outbox.flush(app)
    assert (report.sent, report.failed) == (2, 0)
    assert "工单已受理" in rows(app)[0].subject  # the packaged template's subject
    [fallback] = events(app, "mail-template-fallback")
    assert str(broken) in fallback
    assert events(app, "mail-failed") == []


def test_a_mail_that_cannot_be_written_fails_once_and_is_recorded(app: App) -> None:
    new_ticket(app)
    with app.db.transaction() as s:
        row = s.scalars(select(OutboxMail).where(OutboxMail.kind == "acceptance")).one()
        assert row.variables is not None
        row.variables = {k: v for k, v in row.variables.items() if k != "priority"}
        assigned = s.scalars(select(OutboxMail).where(OutboxMail.kind == "assigned")).one()
        assigned.to_addresses = [{"name": "", "email": "王 工@例子.cn"}]  # not an address
    report = outbox.flush(app)
    assert (report.sent, report.failed) == (0, 2)
    acceptance, assigned_row = rows(app)
    assert (acceptance.status, assigned_row.status) == ("failed", "failed")
    assert acceptance.size is None and assigned_row.size is None and stored_bytes(app) == {}
    failed = events(app, "mail-failed")
    assert len(failed) == 2
    assert "acceptance mail not written" in failed[0] and "priority" in failed[0]
    assert "assigned mail not composed" in failed[1]
    assert (acceptance.last_error or "").startswith("acceptance mail not written")
    # never a retry loop: the next flushes leave them alone
    assert outbox.flush(app, force=True).attempted == 0
    assert len(events(app, "mail-failed")) == 2 and sent_files(app) == {}


# ---------------------------------------------------------------- crash and old rows


def test_a_crash_after_the_bytes_were_stored_resends_the_identical_mail(
        app: App, clock: FixedClock) -> None:
    new_ticket(app)
    folder = Path(app.config.smtp.file_dir)
    with pytest.raises(SystemExit):
        outbox.flush(app, CrashAfterStore(folder))
    first = rows(app)[0]
    stored = stored_bytes(app)[first.id]  # stored before the send
    assert first.status == "sending" and first.size == len(stored)
    clock.advance(timedelta(seconds=app.config.smtp.claim_seconds + 1))
    report = outbox.flush(app)
    assert report.sent == 2
    again = rows(app)[0]
    assert again.status == "sent" and stored_bytes(app)[again.id] == stored
    assert sent_files(app)[f"{first.message_id}.eml"] == stored
    assert parsed(stored)["Message-ID"] == f"<{first.message_id}>"


def test_a_row_queued_before_0006_is_sent_as_it_is(database_url: str, tmp_path: Path) -> None:
    database = dbmod.connect(database_url, tmp_path)
    command.upgrade(dbmod._alembic_config(database), "0004")
    raw = (b"From: support@corp.example\r\nTo: a@corp.example\r\nSubject: old\r\n"
           b"Message-ID: <ticketd.old@corp.example>\r\n\r\nqueued before 0006\r\n")
    now = datetime(2023, 10, 27, 1, 0, tzinfo=UTC)
    with database.engine.begin() as conn:
        conn.execute(text(
            "INSERT INTO outbox (kind, message_id, sender, recipients, primary_recipient, "
            "subject, raw, automatic, status, attempts, next_attempt_at, created_at) VALUES "
            "('acceptance', 'ticketd.old@corp.example', 'support@corp.example', "
            "'[\"a@corp.example\"]', 'a@corp.example', 'old', :raw, true, 'queued', 0, :t, "
            ":t)"), {"raw": raw, "t": now})
    database.dispose()
    data = {"support": {"address": "support@corp.example"}, "database": {"url": database_url},
            "smtp": {"backend": "file", "file_dir": str(tmp_path / "outbox")}}
    app = App(from_mapping(data, where="test.toml", base=tmp_path),
              clock=FixedClock(datetime(2023, 10, 27, 2, 0, tzinfo=UTC)))
    try:
        app.ready_db()  # upgrades to 0006 and later
        assert outbox.flush(app).sent == 1
        [row] = rows(app)
        assert row.status == "sent" and row.variables is None
        assert row.size == len(raw) and stored_bytes(app) == {row.id: raw}  # moved by 0008
        assert sent_files(app) == {"ticketd.old@corp.example.eml": raw}
    finally:
        app.close()


# ---------------------------------------------------------------- writing in a worker


def test_a_worker_process_writes_and_the_main_process_stores_between_batches(
        sendtime_app: Callable[..., App], tmp_path: Path) -> None:
    site = tmp_path / "tpl"
    shutil.copytree(default_templates_dir(), site)
    broken = site / "zh-CN" / "acceptance.txt"
    broken.write_text(broken.read_text(encoding="utf-8") + "{% endif %}\n", encoding="utf-8")
    app = sendtime_app(templates={"dir": str(site)})
    for n in range(3):
        new_ticket(app, sender=f"user{n}@corp.example")
    prewriter = outbox.Prewriter(app, threshold=1)
    try:
        prewriter.after_batch()  # hands the six queued mails to the worker
        pool = prewriter.composer
        assert isinstance(pool, WorkerPool)
        pool.wait()
        assert stored_bytes(app) == {}  # the worker never writes the database
        new_ticket(app, sender="user3@corp.example")  # the next batch
        prewriter.after_batch()  # stores the six, hands over the two new ones
        written = stored_bytes(app)
        stored = [row for row in rows(app) if row.size is not None]
        assert len(stored) == len(written) == 6
        assert all(row.status == "queued" and row.size == len(written[row.id]) for row in stored)
        report = outbox.flush(app, composer=pool)  # the last two come from the worker too
    finally:
        prewriter.close()
    assert (report.sent, report.failed) == (8, 0)
    files, written = sent_files(app), stored_bytes(app)
    for row in rows(app):
        assert files[f"{row.message_id}.eml"] == written[row.id]
        msg = parsed(written[row.id])
        assert msg["Message-ID"] == f"<{row.message_id}>"
        assert row.variables is not None and row.variables["number"] in msg["Subject"]
        if row.kind == "acceptance":
            assert "工单已受理" in row.subject  # the packaged template, as in this process
    fallbacks = events(app, "mail-template-fallback")
    assert len(fallbacks) == 4 and all(str(broken) in f for f in fallbacks)
    with app.db.transaction() as s:
        texts = list(s.scalars(select(Message.body_text).where(Message.direction == "out")))
    assert len(texts) == 8 and all(t.strip() for t in texts)


def test_the_daemon_writes_a_backlog_in_a_worker_process(app: App) -> None:
    for n in range(outbox.WORKER_BACKLOG):
        new_ticket(app, sender=f"user{n}@corp.example")
    waiting = outbox.unwritten(app)
    assert waiting >= outbox.WORKER_BACKLOG
    service = Service(app)
    try:
        report = service.flush()
        assert isinstance(service._composer, WorkerPool)  # the backlog started the worker
    finally:
        service.shutdown()
    assert vars(service)["_composer"] is None  # stopped with the daemon
    assert (report.sent, report.failed) == (waiting, 0)
    files, written = sent_files(app), stored_bytes(app)
    assert all(files[f"{row.message_id}.eml"] == written[row.id] for row in rows(app))
