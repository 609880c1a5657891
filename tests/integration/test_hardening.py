"""Hostile and odd mail found in review: each case once broke intake, trust or sending."""

from __future__ import annotations

import io
import sys
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from daemon import jobs, tickets
from daemon.app import App
from daemon.clock import FixedClock
from daemon.config import load
from daemon.errors import ConfigError
from daemon.intake import sources
from daemon.intake.pipeline import Intake
from daemon.intake.sources import RawMail
from daemon.models import Event, OutboxMail, Suppression, Ticket
from daemon.replies import outbox
from daemon.replies.notify import Notify
from tests import messages
from tests.servers.smtp import SmtpSink


def feed(app: App, raw: bytes, notify: bool = True) -> tuple[str, str | None]:
    result = Intake(app, notifier=Notify(app) if notify else None).ingest(RawMail(raw, "t"))
    return result.action, result.number


def count(app: App, model: type[Any]) -> int:
    with app.db.transaction() as s:
        return int(s.scalar(select(func.count()).select_from(model)) or 0)


def test_thousands_of_references_never_block_the_mailbox(app: App) -> None:
    refs = " ".join(f"<r{n}@spam.example>" for n in range(70_000))
    assert feed(app, messages.mail(references=refs), notify=False) == (
        "created", "TS20231027000001")
    assert feed(app, messages.mail(sender="next@corp.example"), notify=False)[0] == "created"


def test_a_forged_delivery_report_silences_nobody(app: App, clock: FixedClock) -> None:
    _, number = feed(app, messages.mail(sender="ceo@corp.example"))
    forged = messages.dsn("made-up@anything.example", recipient="ceo@corp.example").replace(
        b"Subject: Undelivered Mail", f"Subject: [{number}] Undelivered Mail".encode())
    assert feed(app, forged)[0] == "bounce"
    assert count(app, Suppression) == 0
    with app.db.transaction() as s:
        assert "delivery-failed" not in [e.action for e in tickets.get(s, number or "").events]
    clock.advance(timedelta(hours=1))
    feed(app, messages.mail(subject="另一个问题", sender="ceo@corp.example"))
    with app.db.transaction() as s:
        assert s.scalar(select(func.count()).select_from(OutboxMail).where(
            OutboxMail.primary_recipient == "ceo@corp.example")) == 2


def test_a_real_bounce_of_our_mail_still_counts(app: App) -> None:
    _, number = feed(app, messages.mail(sender="gone@corp.example"))
    with app.db.transaction() as s:
        ours = s.scalars(select(OutboxMail.message_id)).one()
    assert feed(app, messages.dsn(ours, recipient="gone@corp.example")) == ("bounce", number)
    with app.db.transaction() as s:
        assert [a for (a,) in s.execute(select(Suppression.address))] == ["gone@corp.example"]


def test_a_persons_mail_with_a_dsn_attached_is_a_ticket(app: App) -> None:
    attached = (
        b"From: Partner <partner@client.example>\r\nTo: support@corp.example\r\n"
        b"Subject: =?utf-8?b?6L+Z5bCB6YCA5L+h5piv5LuA5LmI5oSP5oCd77yf?=\r\n"
        b"Message-ID: <dsn-attached@client.example>\r\nMIME-Version: 1.0\r\n"
        b'Content-Type: multipart/mixed; boundary="b"\r\n\r\n'
        b"--b\r\nContent-Type: text/plain\r\n\r\nWhat does the attached report mean?\r\n"
        b"--b\r\nContent-Type: message/delivery-status\r\n\r\n"
        b"Reporting-MTA: dns; mx.client.example\r\n\r\n"
        b"Final-Recipient: rfc822; x@y.example\r\nAction: failed\r\nStatus: 5.1.1\r\n"
        b"\r\n--b--\r\n")
    assert feed(app, attached)[0] == "created"
    assert count(app, Suppression) == 0


def test_a_reply_to_a_resolved_ticket_reopens_it_and_stops_auto_close(
        app: App, clock: FixedClock) -> None:
    _, number = feed(app, messages.mail(body="打印机卡纸。\n系统: 打印\n影响范围: 三楼\n"))
    assert number is not None
    with app.db.transaction() as s:
        tickets.change(s, tickets.get(s, number), at=clock.now(), actor="ops@corp.example",
                       action="status", status="resolved")
    clock.advance(timedelta(days=1))
    reply = messages.mail(subject=f"回复: [{number}] 打印机", body="重新打开：还是卡纸。\n")
    assert feed(app, reply) == ("appended", number)
    with app.db.transaction() as s:
        ticket = tickets.get(s, number)
        assert ticket.status == "reopened"
        # Nobody handled it (team ops has no members here): it goes back to routing.
        assert [e.action for e in ticket.events][-2:] == ["reopened", "routing"]
        kinds = list(s.scalars(select(OutboxMail.kind).order_by(OutboxMail.id)))
        assert kinds == ["acceptance"]
    clock.advance(timedelta(days=10))
    assert jobs.close_resolved(app, clock.now()) == []


def test_mail_reusing_one_of_our_message_ids_is_a_new_ticket_not_lost(app: App) -> None:
    feed(app, messages.mail())
    with app.db.transaction() as s:
        ours = s.scalars(select(OutboxMail.message_id)).one()
    action, number = feed(app, messages.mail(subject="新问题", body="别的事情。\n",
                                             sender="other@corp.example",
                                             message_id=f"<{ours}>"))
    assert (action, number) == ("created", "TS20231027000002")


def test_a_non_ascii_sender_gets_a_ticket_and_the_mail_is_recorded_as_failed(app: App) -> None:
    raw = messages.mail().replace(b"zhang.san@corp.example", "张三@corp.example".encode())
    action, number = feed(app, raw)
    assert action == "created"
    with app.db.transaction() as s:
        actions = [e.action for e in tickets.get(s, number or "").events]
    assert "mail-failed" in actions or "mail-queued" in actions


def test_one_unsendable_mail_does_not_block_the_queue(app: App, smtp_server: SmtpSink,
                                                      tmp_path: Path) -> None:
    from daemon.config import from_mapping

    cfg = from_mapping({"support": {"address": "support@corp.example"},
                        "database": {"url": app.config.database.url},
                        "smtp": {"backend": "smtp", "host": "127.0.0.1",
                                 "port": smtp_server.port, "security": "none"}},
                       where="t", base=tmp_path)
    sending = App(cfg, clock=app.clock)
    try:
        feed(app, messages.mail())
        with app.db.transaction() as s:
            row = s.scalars(select(OutboxMail)).one()
            row.recipients = ["张三@例子.cn"]
            row.primary_recipient = "张三@例子.cn"
        feed(app, messages.mail(sender="ok@corp.example"))
        report = outbox.flush(sending)
        assert report.sent >= 1 and report.sent + report.failed == 2
        assert any(r.rcpt_tos == ("ok@corp.example",) for r in smtp_server.wait_for(1))
    finally:
        sending.close()


def test_an_mta_pipe_with_an_envelope_line_is_one_mail(monkeypatch: pytest.MonkeyPatch) -> None:
    body = (b"From zhang@corp.example Fri Oct 27 09:12:00 2023\n"
            b"From: zhang@corp.example\nSubject: x\n\nHello,\n"
            b"From this morning on it fails.\n\nFrom the console: TypeError\n")
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(body)))
    [mail] = list(sources.read(["-"]))
    assert mail.data.startswith(b"From: zhang@corp.example")
    assert b"From the console: TypeError" in mail.data


def test_the_same_mail_without_message_id_in_two_folders_is_one_ticket(app: App) -> None:
    raw = messages.without_header(messages.mail(), "Message-ID")
    inbox = messages.with_trace(raw, "mx1.corp.example", "support@corp.example")
    other = messages.with_trace(raw, "mx2.corp.example", "it@corp.example")
    assert feed(app, inbox, notify=False)[0] == "created"
    assert feed(app, other, notify=False)[0] == "duplicate"
    assert count(app, Ticket) == 1
    assert count(app, Event) >= 1


def test_config_errors_never_show_a_database_password(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text('[database]\nurl = "mysql://tk:S3cr3t@db/x"\n')
    with pytest.raises(ConfigError) as info:
        load(path)
    assert "S3cr3t" not in str(info.value) and "tk:***@db" in str(info.value)
