"""[mail] verp end to end on both databases: the SMTP sink sees support+<tag>@ as MAIL FROM,
one envelope per recipient; a bounce that comes back to that address (IMAP from the real
Dovecot, or LMTP) holds exactly that recipient; forged and tampered ones hold nobody."""

from __future__ import annotations

import smtplib
from collections.abc import Iterator
from email import message_from_bytes, policy
from pathlib import Path

import pytest
from sqlalchemy import select

from daemon import verp
from daemon.app import App
from daemon.clock import FixedClock
from daemon.explain import explain
from daemon.intake import imap as imap_intake
from daemon.intake.lmtp import LmtpServer
from daemon.intake.pipeline import Intake
from daemon.intake.sources import RawMail
from daemon.models import Event, IntakeRecord, OutboxMail, Suppression, Ticket
from daemon.outcomes import IntakeResult
from daemon.replies import outbox
from daemon.replies.notify import Notify
from tests import messages
from tests.conftest import make_config
from tests.servers.dovecot import Dovecot, free_port
from tests.servers.smtp import Received, SmtpSink

REQUESTER = "li@corp.example"
COLLEAGUE = "wang@corp.example"
COMPLETE = "您好，OA 系统登录后一直转圈。\n系统: OA\n影响范围: 财务部\n"
PASSWORD_ENV = "TICKETD_TEST_IMAP_PASSWORD"


def verp_app(tmp_path: Path, database_url: str, clock: FixedClock, smtp_port: int,
             *, on: bool = True, **sections: dict[str, object]) -> App:
    cfg = make_config(tmp_path, database_url, mail={"verp": on}, smtp={
        "backend": "smtp", "host": "127.0.0.1", "port": smtp_port, "security": "none"},
        **sections)
    application = App(cfg, clock=clock)
    application.ready_db()
    return application


@pytest.fixture
def app_verp(tmp_path: Path, database_url: str, clock: FixedClock,
             smtp_server: SmtpSink) -> Iterator[App]:
    application = verp_app(tmp_path, database_url, clock, smtp_server.port)
    yield application
    application.close()


def feed(app: App, raw: bytes, envelope_to: tuple[str, ...] = ()) -> IntakeResult:
    return Intake(app, notifier=Notify(app)).ingest(RawMail(raw, "test", envelope_to))


def send_acceptance(app: App, sink: SmtpSink) -> tuple[str, dict[str, Received]]:
    """The requester writes with a colleague copied; returns our Message-ID and each
    recipient's copy as the SMTP sink received it."""
    created = feed(app, messages.mail(sender=REQUESTER, cc=COLLEAGUE, body=COMPLETE))
    assert created.action == "created"
    assert outbox.flush(app).sent == 1
    copies = sink.wait_for(2)
    by_rcpt = {c.rcpt_tos[0]: c for c in copies}
    with app.db.transaction() as s:
        message_id = s.scalars(select(OutboxMail.message_id)).one()
    return message_id, by_rcpt


def held(app: App) -> list[str]:
    with app.db.transaction() as s:
        return sorted(s.scalars(select(Suppression.address)).all())


def events(app: App, action: str) -> list[str]:
    with app.db.transaction() as s:
        return list(s.scalars(select(Event.detail).where(Event.action == action)
                              .order_by(Event.id)))


def delivered(raw: bytes, to: str) -> bytes:
    """What the MTA writes on top when it delivers a bounce to ``to`` (Postfix pipe flags
    D and R: ``Delivered-To`` and the null ``Return-Path``)."""
    return f"Return-Path: <>\r\nDelivered-To: {to}\r\n".encode() + raw


def tampered(address: str) -> str:
    local, _, domain = address.partition("@")
    head, _, mac = local.rpartition("-")
    return f"{head}-{'b' if mac[0] == 'a' else 'a'}{mac[1:]}@{domain}"


# ------------------------------------------------------------------ out


def test_each_recipient_gets_its_own_envelope_from_a_tag_only_we_can_make(
        app_verp: App, smtp_server: SmtpSink) -> None:
    message_id, copies = send_acceptance(app_verp, smtp_server)
    assert sorted(copies) == [REQUESTER, COLLEAGUE]
    with app_verp.db.transaction() as s:
        row = s.scalars(select(OutboxMail)).one()
        key, recipients = row.verp_key, list(row.recipients)
    assert key is not None and len(key) == 32
    for rcpt, copy in copies.items():
        local, _, domain = copy.mail_from.partition("@")
        assert domain == "corp.example" and local.startswith("support+")
        tag = verp.parse(local.removeprefix("support+"))
        assert tag is not None
        assert verp.verify(tag, key, recipients) == rcpt
        # the header From stays the support address; the copies are the same mail
        assert copy.message["From"].addresses[0].addr_spec == "support@corp.example"
        assert copy.message["Message-ID"] == f"<{message_id}>"
    assert copies[REQUESTER].mail_from != copies[COLLEAGUE].mail_from


def test_verp_off_sends_one_envelope_from_the_support_address(
        tmp_path: Path, database_url: str, clock: FixedClock, smtp_server: SmtpSink) -> None:
    app = verp_app(tmp_path, database_url, clock, smtp_server.port, on=False)
    try:
        assert feed(app, messages.mail(sender=REQUESTER, cc=COLLEAGUE)).action == "created"
        assert outbox.flush(app).sent == 1
        [copy] = smtp_server.wait_for(1)
        assert copy.mail_from == "support@corp.example"
        assert sorted(copy.rcpt_tos) == [REQUESTER, COLLEAGUE]
        # today's rule still holds: our Message-ID and a Final-Recipient naming the recipient
        with app.db.transaction() as s:
            message_id = s.scalars(select(OutboxMail.message_id)).one()
        assert feed(app, messages.dsn(message_id, recipient=REQUESTER)).action == "bounce"
        assert held(app) == [REQUESTER]
    finally:
        app.close()


def test_a_copy_refused_beside_an_accepted_one_is_recorded_not_resent(
        app_verp: App, smtp_server: SmtpSink) -> None:
    """The requester's copy gets a 5xx, the colleague's is accepted: the mail is sent, the
    refusal is on the ticket, and no retry sends the colleague a second copy."""
    feed(app_verp, messages.mail(sender=REQUESTER, cc=COLLEAGUE, body=COMPLETE))
    smtp_server.fail_next(1, code=550, text="5.1.1 no such user")
    assert outbox.flush(app_verp).sent == 1
    assert [c.rcpt_tos for c in smtp_server.received] == [(COLLEAGUE,)]
    [refusal] = events(app_verp, "delivery-failed")
    assert REQUESTER in refusal and "5.1.1 no such user" in refusal
    assert outbox.flush(app_verp, force=True).attempted == 0


def test_every_copy_refused_fails_the_mail_as_before(app_verp: App,
                                                     smtp_server: SmtpSink) -> None:
    feed(app_verp, messages.mail(sender=REQUESTER, cc=COLLEAGUE, body=COMPLETE))
    smtp_server.fail_next(2, code=451, text="4.3.0 busy")
    report = outbox.flush(app_verp)
    assert (report.sent, report.retrying) == (0, 1)


def test_the_file_backend_records_each_envelope(tmp_path: Path, database_url: str,
                                                clock: FixedClock) -> None:
    app = App(make_config(tmp_path, database_url, mail={"verp": True}), clock=clock)
    app.ready_db()
    try:
        feed(app, messages.mail(sender=REQUESTER, cc=COLLEAGUE, body=COMPLETE))
        assert outbox.flush(app).sent == 1
        files = sorted(Path(app.config.smtp.file_dir).glob("*.eml"))
        assert [f.name.rsplit("+", 1)[1] for f in files] == [f"{REQUESTER}.eml",
                                                             f"{COLLEAGUE}.eml"]
        paths = [message_from_bytes(f.read_bytes(), policy=policy.default)["Return-Path"]
                 for f in files]
        assert all(p.startswith("<support+") for p in paths) and paths[0] != paths[1]
    finally:
        app.close()


# ------------------------------------------------------------------ back in


def test_a_dsn_delivered_by_imap_to_the_verp_address_holds_that_recipient_only(
        tmp_path: Path, database_url: str, clock: FixedClock, smtp_server: SmtpSink,
        imap: Dovecot, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(PASSWORD_ENV, "support-pass")
    app = verp_app(tmp_path, database_url, clock, smtp_server.port, imap={
        "host": imap.host, "port": imap.port, "security": "none", "username": "support",
        "password_env": PASSWORD_ENV})
    try:
        message_id, copies = send_acceptance(app, smtp_server)
        # The report's body names the colleague; it came back to the requester's copy's
        # address, so the requester is the one held, whatever the body claims.
        bounce = delivered(messages.dsn(message_id, recipient=COLLEAGUE),
                           copies[REQUESTER].mail_from)
        imap.append("support", bounce)
        spec = imap_intake.MailboxSpec.from_config(app.config.imap)
        report = imap_intake.poll_once(app, Intake(app), spec)
        assert [r.action for r in report.results] == ["bounce"]
        assert held(app) == [REQUESTER]
        [failed] = events(app, "delivery-failed")
        assert failed.startswith(f"{REQUESTER}: 5.1.1") and "VERP: came back to" in failed
    finally:
        app.close()


def test_a_text_bounce_with_no_message_id_is_enough_at_the_verp_address(
        app_verp: App, smtp_server: SmtpSink) -> None:
    """What VERP adds: a bounce written for people (no DSN fields, no Message-ID) proves
    which recipient failed by where it arrived."""
    _, copies = send_acceptance(app_verp, smtp_server)
    text = (b"From: MAILER-DAEMON@mx.corp.example\r\nTo: whoever@corp.example\r\n"
            b"Subject: Undelivered Mail Returned to Sender\r\n"
            b"Date: Fri, 27 Oct 2023 02:00:00 +0000\r\n\r\nYour mail could not be delivered.\r\n")
    result = feed(app_verp, delivered(text, copies[COLLEAGUE].mail_from))
    assert result.action == "bounce" and result.number is not None
    assert held(app_verp) == [COLLEAGUE]


def test_a_dsn_delivered_over_lmtp_to_the_verp_address_holds_that_recipient_only(
        tmp_path: Path, database_url: str, clock: FixedClock, smtp_server: SmtpSink) -> None:
    app = verp_app(tmp_path, database_url, clock, smtp_server.port,
                   lmtp={"enabled": True, "port": free_port()})
    server = LmtpServer(app, notifier=Notify(app))
    server.start()
    try:
        message_id, copies = send_acceptance(app, smtp_server)
        verp_address = copies[COLLEAGUE].mail_from
        # the envelope recipient alone tells: no Delivered-To header in the mail
        with smtplib.LMTP(app.config.lmtp.host, app.config.lmtp.port, timeout=30) as lmtp:
            refused = lmtp.sendmail("", [verp_address],
                                    messages.dsn(message_id, recipient=REQUESTER))
        assert refused == {}
        assert held(app) == [COLLEAGUE]
        with app.db.transaction() as s:
            [record] = s.scalars(select(IntakeRecord).where(IntakeRecord.action == "bounce"))
            assert "VERP: came back to" in record.reason
            assert s.scalars(select(Ticket)).one().id == record.ticket_id
    finally:
        server.stop()
        app.close()


@pytest.mark.parametrize("where", ["tampered", "plain", "foreign"])
def test_a_forged_dsn_naming_our_message_id_holds_nobody(
        app_verp: App, smtp_server: SmtpSink, where: str) -> None:
    """Right Message-ID, a Final-Recipient our mail did not go to, and a tag that does not
    verify (or none): nobody is held, and the ticket says why."""
    message_id, copies = send_acceptance(app_verp, smtp_server)
    to = {"tampered": tampered(copies[REQUESTER].mail_from),
          "plain": "support@corp.example",
          "foreign": "support+1-0-" + "a" * 20 + "@corp.example"}[where]
    forged = delivered(messages.dsn(message_id, recipient="victim@corp.example"), to)
    result = feed(app_verp, forged)
    assert result.action == "bounce"
    assert held(app_verp) == []
    notes = events(app_verp, "note")
    assert any("no address held" in n for n in notes)
    if where != "plain":
        assert any("VERP address that proves nothing" in n for n in notes)
        assert "proves nothing" in result.reason or "names no mail" in result.reason


def test_a_tampered_tag_naming_the_right_recipient_falls_back_to_todays_rule(
        app_verp: App, smtp_server: SmtpSink) -> None:
    """A tag that does not verify proves nothing either way: our Message-ID and a
    Final-Recipient naming a recipient of that mail still hold that recipient."""
    message_id, copies = send_acceptance(app_verp, smtp_server)
    bounce = delivered(messages.dsn(message_id, recipient=REQUESTER),
                       tampered(copies[COLLEAGUE].mail_from))
    assert feed(app_verp, bounce).action == "bounce"
    assert held(app_verp) == [REQUESTER]


def test_a_colleague_replaying_their_own_tag_can_hold_only_themselves(
        app_verp: App, smtp_server: SmtpSink) -> None:
    message_id, copies = send_acceptance(app_verp, smtp_server)
    forged = delivered(messages.dsn(message_id, recipient=REQUESTER),
                       copies[COLLEAGUE].mail_from)
    assert feed(app_verp, forged).action == "bounce"
    assert held(app_verp) == [COLLEAGUE]


# ------------------------------------------------------------------ our own addresses


def test_mail_from_a_verp_address_is_our_own_and_opens_nothing(app_verp: App) -> None:
    mine = messages.mail(sender="support+1-0-" + "a" * 20 + "@corp.example",
                         subject="a question")
    result = feed(app_verp, mine)
    assert result.action == "ignored" and result.reason == "loop"


def test_a_verp_address_in_cc_is_never_copied(app_verp: App, smtp_server: SmtpSink) -> None:
    raw = messages.mail(sender=REQUESTER, cc=f"{COLLEAGUE}, support+xyz@corp.example",
                        body=COMPLETE)
    assert feed(app_verp, raw).action == "created"
    with app_verp.db.transaction() as s:
        ticket = s.scalars(select(Ticket)).one()
        assert ticket.cc == [COLLEAGUE]
        row = s.scalars(select(OutboxMail)).one()
        assert sorted(row.recipients) == [REQUESTER, COLLEAGUE]


def test_lmtp_accepts_a_verp_address_as_ours(tmp_path: Path, database_url: str,
                                             clock: FixedClock) -> None:
    app = App(make_config(tmp_path, database_url, lmtp={"enabled": True, "port": free_port()}),
              clock=clock)
    app.ready_db()
    server = LmtpServer(app)
    server.start()
    try:
        with smtplib.LMTP(app.config.lmtp.host, app.config.lmtp.port, timeout=30) as lmtp:
            lmtp.ehlo_or_helo_if_needed()
            assert lmtp.mail("")[0] == 250
            assert lmtp.rcpt("support+7-0-" + "a" * 20 + "@corp.example")[0] == 250
            assert lmtp.rcpt("supporter+x@corp.example")[0] == 550
    finally:
        server.stop()
        app.close()


def test_inspect_says_what_the_verp_address_proves(app_verp: App, smtp_server: SmtpSink) -> None:
    message_id, copies = send_acceptance(app_verp, smtp_server)
    real = delivered(messages.dsn(message_id, recipient=REQUESTER), copies[REQUESTER].mail_from)
    verdict = explain(app_verp, real, origin="test").verdict
    assert verdict.verp is not None and verdict.verp.startswith("came back to support+")
    assert "; VERP: came back to" in verdict.line()
    forged = delivered(messages.dsn(message_id, recipient=REQUESTER),
                       tampered(copies[REQUESTER].mail_from))
    assert "does not verify" in (explain(app_verp, forged, origin="test").verdict.verp or "")
    assert held(app_verp) == []  # inspect changes nothing
