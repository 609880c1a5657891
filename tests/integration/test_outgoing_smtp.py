"""Outgoing mail over a real loopback SMTP server: the MIME we send and every fault path."""

from __future__ import annotations

import logging
import os
import re
import signal
import smtplib
import socket
import socketserver
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from datetime import timedelta
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path

import pytest
from sqlalchemy import select

from daemon import tickets
from daemon.app import App
from daemon.clock import FixedClock
from daemon.config import SmtpConfig
from daemon.errors import LoginRefused, TransportUnavailable
from daemon.intake.parsed import Address
from daemon.intake.pipeline import Intake
from daemon.intake.sources import RawMail
from daemon.logs import Outage
from daemon.models import OutboxMail
from daemon.replies import kinds, outbox
from daemon.replies.notify import Notify
from daemon.replies.transports import SmtpTransport
from tests import messages
from tests.conftest import make_config
from tests.logcapture import records_of
from tests.servers.smtp import SilentServer, SmtpSink

REPO = Path(__file__).resolve().parents[2]
SMTP_PW_ENV = "TICKETD_TEST_SMTP_PASSWORD"


def smtp_app(tmp_path: Path, database_url: str, clock: FixedClock, port: int,
             **smtp: object) -> App:
    cfg = make_config(tmp_path, database_url, smtp={
        "backend": "smtp", "host": "127.0.0.1", "port": port, "security": "none",
        "retry_base": 60, "max_attempts": 3, **smtp})
    application = App(cfg, clock=clock)
    application.ready_db()
    return application


@pytest.fixture
def app_smtp(tmp_path: Path, database_url: str, clock: FixedClock,
             smtp_server: SmtpSink) -> Iterator[App]:
    application = smtp_app(tmp_path, database_url, clock, smtp_server.port)
    yield application
    application.close()


def ingest(app: App, raw: bytes) -> str:
    result = Intake(app, notifier=Notify(app)).ingest(RawMail(raw, "test"))
    assert result.action == "created", result
    assert result.number is not None
    return result.number


def rows(app: App) -> list[OutboxMail]:
    with app.db.transaction() as s:
        return list(s.scalars(select(OutboxMail).order_by(OutboxMail.id)))


COMPLETE = "您好，OA 系统登录后一直转圈。\n系统: OA\n影响范围: 财务部\n"


def test_acceptance_mime_headers_parts_and_threading(app_smtp: App,
                                                     smtp_server: SmtpSink) -> None:
    raw = messages.mail(subject="OA 系统无法登录", body=COMPLETE,
                        message_id="<req-1@client.example>", references="<older@client.example>")
    number = ingest(app_smtp, raw)
    report = outbox.flush(app_smtp)
    assert (report.sent, report.retrying, report.failed) == (1, 0, 0)
    (got,) = smtp_server.wait_for(1)
    assert got.mail_from == "support@corp.example"
    assert got.rcpt_tos == ("zhang.san@corp.example",)
    msg: EmailMessage = got.message
    raw_headers = got.data.split(b"\r\n\r\n", 1)[0].decode("ascii")
    assert "=?utf-8?" in raw_headers  # the Chinese subject went out RFC 2047 encoded
    assert msg["Subject"] == f"[{number}] 工单已受理：OA 系统无法登录"
    assert msg["From"] == "Corp Support <support@corp.example>"
    assert msg["To"].addresses[0].addr_spec == "zhang.san@corp.example"
    assert msg["To"].addresses[0].display_name == "张三"
    assert re.fullmatch(r"<ticketd\.[0-9a-f]{40}@corp\.example>", msg["Message-ID"])
    assert msg["In-Reply-To"] == "<req-1@client.example>"
    assert msg["References"].split() == ["<older@client.example>", "<req-1@client.example>"]
    assert msg["Auto-Submitted"] == "auto-replied"
    assert msg["X-Ticketd-Loop"] == "support@corp.example"
    assert msg["Date"] is not None and msg["MIME-Version"] == "1.0"
    assert msg.get_content_type() == "multipart/alternative"
    plain = msg.get_body(("plain",))
    html = msg.get_body(("html",))
    assert plain is not None and html is not None
    assert plain.get_content_charset() == "utf-8" and html.get_content_charset() == "utf-8"
    text = plain.get_content()
    assert number in text and "优先级：P2" in text
    assert "1 小时内（2023-10-27 10:30 之前）" in text  # P2: assigned within 1 h, local time
    assert number in html.get_content()
    with app_smtp.db.transaction() as s:
        ticket = tickets.get(s, number)
        out = [m for m in ticket.messages if m.direction == "out"]
        assert [m.kind for m in out] == ["acceptance"]
        assert f"<{out[0].message_id}>" == msg["Message-ID"]
        assert "mail-queued" in [e.action for e in ticket.events]


def test_one_connection_for_a_batch(app_smtp: App, smtp_server: SmtpSink) -> None:
    for n in range(3):
        ingest(app_smtp, messages.mail(subject=f"VPN 问题 {n}", body=COMPLETE,
                                       sender=f"user{n}@corp.example"))
    assert outbox.flush(app_smtp).sent == 3
    assert len(smtp_server.wait_for(3)) == 3


class CountingSmtp(SmtpTransport):
    """The real SMTP transport, counting the connections it opens (not a mock: it talks to
    the real server, or fails to)."""

    def __init__(self, cfg: SmtpConfig) -> None:
        super().__init__(cfg)
        self.connects = 0

    def _connect(self) -> smtplib.SMTP:
        self.connects += 1
        return super()._connect()


@pytest.fixture
def outbox_log() -> Iterator[list[logging.LogRecord]]:
    """Records of the ``ticketd.outbox`` logger (attached there: `ticketd` may not propagate)."""
    with records_of("ticketd.outbox", logging.DEBUG) as records:
        yield records


def queue_three(app: App) -> None:
    for n in range(3):
        ingest(app, messages.mail(body=COMPLETE, sender=f"u{n}@corp.example"))


def test_stopped_server_costs_one_connection_and_no_attempt(
        app_smtp: App, smtp_server: SmtpSink, clock: FixedClock,
        outbox_log: list[logging.LogRecord]) -> None:
    queue_three(app_smtp)
    smtp_server.stop()
    transport = CountingSmtp(app_smtp.config.smtp)
    outage = Outage(logging.getLogger("ticketd.outbox"), "smtp")
    report = outbox.flush(app_smtp, transport, outage=outage)
    assert transport.connects == 1
    assert (report.attempted, report.sent, report.retrying, report.held) == (0, 0, 0, 3)
    assert isinstance(report.problem, TransportUnavailable)
    assert [(r.status, r.attempts) for r in rows(app_smtp)] == [("queued", 0)] * 3
    assert all("cannot connect" in (r.last_error or "") for r in rows(app_smtp))
    assert all(r.next_attempt_at == clock.now() for r in rows(app_smtp))  # still due

    # The outage is one warning, then one summary line per flush: never one per mail.
    report = outbox.flush(app_smtp, transport, outage=outage)
    assert (transport.connects, report.held) == (2, 3)
    warnings = [r.getMessage() for r in outbox_log if r.levelno >= logging.WARNING]
    assert len(warnings) == 1 and "cannot connect" in warnings[0]
    assert "3 mail(s) held, no attempt counted" in warnings[0]
    assert [r.getMessage() for r in outbox_log if r.levelno == logging.INFO] == [
        f"smtp still failing since {clock.now():%Y-%m-%d %H:%M:%S} (try 2); 3 mail(s) held, "
        "no attempt counted; trying again later"]

    smtp_server.start()
    outbox_log.clear()
    assert outbox.flush(app_smtp, transport, outage=outage).sent == 3
    assert len(smtp_server.wait_for(3)) == 3
    assert [r.attempts for r in rows(app_smtp)] == [1, 1, 1]
    assert any("smtp works again" in r.getMessage() for r in outbox_log)
    assert outbox.flush(app_smtp).attempted == 0


def test_silent_server_costs_one_timeout_per_flush(
        tmp_path: Path, database_url: str, clock: FixedClock) -> None:
    """A server that accepts TCP and never answers: one connection, one timeout, the batch
    back in the queue untried (before: one timeout per mail, 50 x 30 s for a batch)."""
    silent = SilentServer()
    app = smtp_app(tmp_path, database_url, clock, silent.port, timeout=1)
    try:
        queue_three(app)
        started = time.monotonic()
        report = outbox.flush(app)
        print(f"silent server: {len(silent.accepted)} connection(s), flush took "
              f"{time.monotonic() - started:.1f} s with [smtp] timeout = 1")
        assert len(silent.accepted) == 1
        assert (report.attempted, report.held) == (0, 3)
        assert "timed out" in str(report.problem)
        assert [(r.status, r.attempts) for r in rows(app)] == [("queued", 0)] * 3
    finally:
        silent.close()
        app.close()


def test_resend_warning_only_when_a_resend_happens(
        app_smtp: App, smtp_server: SmtpSink, clock: FixedClock,
        outbox_log: list[logging.LogRecord]) -> None:
    ingest(app_smtp, messages.mail(body=COMPLETE))
    outbox._claim(app_smtp, "other-host:1", 10)  # a worker that then dies mid-send
    clock.advance(timedelta(seconds=app_smtp.config.smtp.claim_seconds + 1))
    smtp_server.stop()
    assert outbox.flush(app_smtp).held == 1
    assert not any("sent again" in r.getMessage() for r in outbox_log)
    smtp_server.start()
    assert outbox.flush(app_smtp).sent == 1
    again = [r.getMessage() for r in outbox_log if "sent again" in r.getMessage()]
    assert len(again) == 1 and "claim by other-host:1 expired mid-send" in again[0]
    assert rows(app_smtp)[0].attempts == 2  # the crashed try and this one; the held one not


def test_4xx_then_success_with_exponential_backoff(app_smtp: App, smtp_server: SmtpSink,
                                                   clock: FixedClock) -> None:
    ingest(app_smtp, messages.mail(body=COMPLETE))
    smtp_server.fail_next(2, 451, "Try again later")
    start = clock.now()
    assert outbox.flush(app_smtp).retrying == 1
    assert rows(app_smtp)[0].next_attempt_at == start + timedelta(seconds=60)
    clock.advance(timedelta(seconds=60))
    assert outbox.flush(app_smtp).retrying == 1
    assert rows(app_smtp)[0].next_attempt_at == clock.now() + timedelta(seconds=120)
    clock.advance(timedelta(seconds=120))
    assert outbox.flush(app_smtp).sent == 1
    assert len(smtp_server.rejected) == 2 and len(smtp_server.received) == 1
    assert rows(app_smtp)[0].attempts == 3


def test_5xx_fails_once_and_is_logged_on_the_ticket(app_smtp: App, smtp_server: SmtpSink,
                                                    clock: FixedClock) -> None:
    number = ingest(app_smtp, messages.mail(body=COMPLETE))
    smtp_server.fail_next(1, 550, "No such user")
    assert outbox.flush(app_smtp).failed == 1
    clock.advance(timedelta(days=1))
    assert outbox.flush(app_smtp, force=True).attempted == 0  # no retry storm
    assert len(smtp_server.rejected) == 1 and smtp_server.received == []
    (row,) = rows(app_smtp)
    assert row.status == "failed" and "550" in (row.last_error or "")
    with app_smtp.db.transaction() as s:
        events = tickets.get(s, number).events
        failure = [e for e in events if e.action == "delivery-failed"]
        assert len(failure) == 1 and "permanent failure" in failure[0].detail


def test_temporary_failures_give_up_after_max_attempts(app_smtp: App, smtp_server: SmtpSink,
                                                       clock: FixedClock) -> None:
    number = ingest(app_smtp, messages.mail(body=COMPLETE))
    smtp_server.fail_next(10, 421, "Service not available")
    for _ in range(3):
        outbox.flush(app_smtp)
        clock.advance(timedelta(hours=1))
    (row,) = rows(app_smtp)
    assert row.status == "failed" and row.attempts == 3
    with app_smtp.db.transaction() as s:
        assert "gave up after 3 attempts" in tickets.get(s, number).events[-1].detail


def test_claim_left_by_a_crash_is_sent_again_with_the_same_message_id(
        app_smtp: App, smtp_server: SmtpSink, clock: FixedClock) -> None:
    ingest(app_smtp, messages.mail(body=COMPLETE))
    claimed = outbox._claim(app_smtp, "other-host:1", 10)  # a worker that then dies
    assert len(claimed) == 1
    assert outbox.flush(app_smtp).attempted == 0  # the claim is still valid
    clock.advance(timedelta(seconds=app_smtp.config.smtp.claim_seconds + 1))
    assert outbox.flush(app_smtp).sent == 1
    (got,) = smtp_server.wait_for(1)
    assert got.message["Message-ID"] == f"<{rows(app_smtp)[0].message_id}>"


class _StallingSmtp(socketserver.StreamRequestHandler):
    """Speaks SMTP up to the end of DATA, then never answers: a send that hangs."""

    def handle(self) -> None:
        self.wfile.write(b"220 stall ESMTP\r\n")
        while line := self.rfile.readline():
            verb = line[:4].upper()
            if verb in (b"EHLO", b"HELO"):
                self.wfile.write(b"250 stall\r\n")
            elif verb == b"DATA":
                self.wfile.write(b"354 go ahead\r\n")
                while self.rfile.readline() not in (b".\r\n", b""):
                    pass
                self.server.stalled.set()  # type: ignore[attr-defined]
                self.server.release.wait(30)  # type: ignore[attr-defined]
                return
            else:
                self.wfile.write(b"250 ok\r\n")


def test_process_killed_mid_send_mail_still_goes_once(
        tmp_path: Path, database_url: str, clock: FixedClock, smtp_server: SmtpSink) -> None:
    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), _StallingSmtp)
    server.daemon_threads = True
    server.stalled = threading.Event()  # type: ignore[attr-defined]
    server.release = threading.Event()  # type: ignore[attr-defined]
    threading.Thread(target=server.serve_forever, daemon=True).start()
    stall_port = server.server_address[1]
    app = smtp_app(tmp_path, database_url, clock, smtp_server.port)
    try:
        ingest(app, messages.mail(body=COMPLETE))
        conf = tmp_path / "stall.toml"
        conf.write_text(
            '[support]\naddress = "support@corp.example"\n'
            f'[database]\nurl = "{database_url}"\n'
            f'[smtp]\nbackend = "smtp"\nhost = "127.0.0.1"\nport = {stall_port}\n'
            'security = "none"\n', encoding="utf-8")
        proc = subprocess.Popen([sys.executable, "-m", "daemon", "--config", str(conf),
                                 "outbox", "flush"], cwd=tmp_path,
                                env={**os.environ, "PYTHONPATH": str(REPO)},
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            assert server.stalled.wait(30), "the flush never reached DATA"  # type: ignore[attr-defined]
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(10)
        finally:
            if proc.poll() is None:
                proc.kill()
        (row,) = rows(app)
        assert row.status == "sending"
        assert row.claimed_by == f"{socket.gethostname()}:{outbox._pid_namespace()}:{proc.pid}"
        # The claimer is gone: this host's next flush takes the mail over at once.
        assert outbox.flush(app).sent == 1
        (got,) = smtp_server.wait_for(1)
        assert got.message["Message-ID"] == f"<{row.message_id}>"
        assert outbox.flush(app, force=True).attempted == 0
    finally:
        server.release.set()  # type: ignore[attr-defined]
        server.shutdown()
        server.server_close()
        app.close()


def test_rolled_back_transaction_queues_no_mail(app_smtp: App) -> None:
    class Boom(Exception):
        pass

    with pytest.raises(Boom), app_smtp.db.transaction() as s:
        notify = Notify(app_smtp)
        ticket = tickets.create(s, number="TS20231027000009", subject="x",
                                requester_name="", requester_email="a@corp.example",
                                at=app_smtp.clock.now())
        notify.send(s, ticket, kinds.sample("acceptance", "en"),
                    [messages_address("a@corp.example")], None, [])
        raise Boom
    assert rows(app_smtp) == []


def messages_address(email: str) -> Address:
    return Address("", email)


def test_smtp_auth(tmp_path: Path, database_url: str, clock: FixedClock,
                   smtp_server_factory: Callable[..., SmtpSink],
                   monkeypatch: pytest.MonkeyPatch) -> None:
    sink = smtp_server_factory(auth=("ticketd", "s3cret"), require_auth=True)
    monkeypatch.setenv(SMTP_PW_ENV, "s3cret")
    app = smtp_app(tmp_path, database_url, clock, sink.port, username="ticketd",
                   password_env=SMTP_PW_ENV)
    try:
        ingest(app, messages.mail(body=COMPLETE))
        assert outbox.flush(app).sent == 1
        (got,) = sink.wait_for(1)
        assert got.auth_login == "ticketd"
        monkeypatch.setenv(SMTP_PW_ENV, "wrong")
        for n in range(3):
            ingest(app, messages.mail(body=COMPLETE, sender=f"other{n}@corp.example"))
        for _ in range(5):  # a wrong password keeps the mail queued, burning no attempt
            report = outbox.flush(app)
            assert (report.attempted, report.held) == (0, 3)
        assert isinstance(report.problem, LoginRefused)
        assert "[smtp] username and password_env" in str(report.problem)
        assert [(r.status, r.attempts) for r in rows(app)[1:]] == [("queued", 0)] * 3
        assert "login refused for ticketd" in (rows(app)[-1].last_error or "")
        monkeypatch.setenv(SMTP_PW_ENV, "s3cret")
        assert outbox.flush(app).sent == 3
    finally:
        app.close()


def test_a_password_that_cannot_be_read_holds_the_mail_instead_of_failing_it(
        tmp_path: Path, database_url: str, clock: FixedClock, smtp_server: SmtpSink,
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(SMTP_PW_ENV, raising=False)
    app = smtp_app(tmp_path, database_url, clock, smtp_server.port, username="ticketd",
                   password_env=SMTP_PW_ENV)
    try:
        ingest(app, messages.mail(body=COMPLETE))
        report = outbox.flush(app)
        assert (report.held, report.failed) == (1, 0)
        assert f"[smtp] password_env: environment variable {SMTP_PW_ENV} is not set" in str(
            report.problem)
        assert [(r.status, r.attempts) for r in rows(app)] == [("queued", 0)]
    finally:
        app.close()


def test_starttls_not_offered_never_sends_in_plain_text(
        tmp_path: Path, database_url: str, clock: FixedClock, smtp_server: SmtpSink) -> None:
    app = smtp_app(tmp_path, database_url, clock, smtp_server.port, security="starttls")
    try:
        ingest(app, messages.mail(body=COMPLETE))
        assert outbox.flush(app).held == 1
        assert "does not offer STARTTLS" in (rows(app)[0].last_error or "")
        assert rows(app)[0].attempts == 0
        assert smtp_server.received == []
    finally:
        app.close()


def test_file_backend_writes_one_eml_per_message_id(app: App) -> None:
    number = ingest(app, messages.mail(body=COMPLETE))
    assert outbox.flush(app).sent == 1
    files = list(Path(app.config.smtp.file_dir).glob("*.eml"))
    assert len(files) == 1
    msg = message_from_bytes(files[0].read_bytes(), policy=policy.default)
    assert msg["Subject"].startswith(f"[{number}]")
