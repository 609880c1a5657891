"""`ticketd lmtp`: a real LMTP client (smtplib.LMTP) on loopback against the real server.

250 per recipient only after the commit, 550 for an address that is not ours, 451 while the
database cannot be reached (the MTA keeps the mail; delivered again later it counts once).
"""

from __future__ import annotations

import smtplib
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import func, select

from daemon.app import App
from daemon.clock import FixedClock
from daemon.intake.lmtp import LmtpServer
from daemon.models import IntakeRecord, OutboxMail, Quarantined, Ticket
from daemon.replies.notify import Notify
from tests import messages
from tests.conftest import make_config
from tests.servers.dovecot import free_port


def count(app: App, model: type) -> int:
    with app.db.transaction() as s:
        return int(s.scalar(select(func.count()).select_from(model)) or 0)


@pytest.fixture
def lmtp_app(tmp_path: Path, database_url: str, clock: FixedClock) -> Iterator[App]:
    config = make_config(tmp_path, database_url, support={"aliases": ["help@corp.example"]},
                         lmtp={"enabled": True, "port": free_port()})
    application = App(config, clock=clock)
    application.ready_db()
    yield application
    application.close()


@pytest.fixture
def server(lmtp_app: App) -> Iterator[LmtpServer]:
    delivered: list[None] = []
    lmtp = LmtpServer(lmtp_app, notifier=Notify(lmtp_app),
                      on_delivered=lambda: delivered.append(None))
    lmtp.start()
    yield lmtp
    lmtp.stop()


def client(app: App) -> smtplib.LMTP:
    lmtp = smtplib.LMTP(app.config.lmtp.host, app.config.lmtp.port, timeout=30)
    lmtp.ehlo_or_helo_if_needed()
    return lmtp


def test_a_delivery_is_answered_after_the_ticket_and_its_acceptance_commit(
        lmtp_app: App, server: LmtpServer) -> None:
    with client(lmtp_app) as lmtp:
        refused = lmtp.sendmail("li@corp.example", ["support@corp.example"],
                                messages.mail(sender="li@corp.example"))
    assert refused == {}
    assert count(lmtp_app, Ticket) == 1
    with lmtp_app.db.transaction() as s:
        assert [o.kind for o in s.scalars(select(OutboxMail))] == ["acceptance"]


def test_each_recipient_gets_its_own_answer_and_foreign_ones_are_refused(
        lmtp_app: App, server: LmtpServer) -> None:
    with client(lmtp_app) as lmtp:
        lmtp.mail("li@corp.example")
        assert lmtp.rcpt("someone@elsewhere.example")[0] == 550
        assert lmtp.rcpt("support+vpn@corp.example")[0] == 250
        assert lmtp.rcpt("Help@corp.example")[0] == 250
        code, text = lmtp.data(messages.mail(sender="li@corp.example"))
        assert (code, text.split()[1]) == (250, b"created")
        second = lmtp.getreply()   # RFC 2033: one answer per accepted recipient
        assert second[0] == 250
    assert count(lmtp_app, Ticket) == 1   # one message, one ticket, whoever it was sent to


def test_a_mail_to_nobody_of_ours_is_refused_outright(lmtp_app: App,
                                                      server: LmtpServer) -> None:
    with client(lmtp_app) as lmtp, pytest.raises(smtplib.SMTPRecipientsRefused):
        lmtp.sendmail("li@corp.example", ["other@elsewhere.example"], messages.mail())
    assert count(lmtp_app, IntakeRecord) == 0


def test_an_unprocessable_mail_is_kept_in_quarantine_and_accepted(
        lmtp_app: App, server: LmtpServer) -> None:
    with client(lmtp_app) as lmtp:
        assert lmtp.sendmail("x@corp.example", ["support@corp.example"],
                             messages.without_header(messages.mail(), "From")) == {}
    assert count(lmtp_app, Quarantined) == 1


def test_database_down_answers_451_and_the_retry_counts_once(
        tmp_path: Path, lmtp_app: App, server: LmtpServer, clock: FixedClock) -> None:
    raw = messages.mail(sender="li@corp.example", message_id="<retry@client.example>")
    # The same site with its database unreachable (a file whose folder is a file).
    (tmp_path / "gone").write_text("not a folder")
    down = App(make_config(tmp_path, f"sqlite:///{tmp_path / 'gone' / 'tickets.db'}",
                           lmtp={"port": free_port()}), clock=clock)
    outage = LmtpServer(down, notifier=Notify(down))
    outage.start()
    try:
        with client(down) as lmtp, pytest.raises(smtplib.SMTPDataError) as refused:
            lmtp.sendmail("li@corp.example", ["support@corp.example"], raw)
        assert refused.value.smtp_code == 451
    finally:
        outage.stop()
        down.close()
    # The MTA kept it and tries again once the database answers: exactly one ticket.
    for _ in range(2):
        with client(lmtp_app) as lmtp:
            assert lmtp.sendmail("li@corp.example", ["support@corp.example"], raw) == {}
    assert count(lmtp_app, Ticket) == 1
    assert count(lmtp_app, OutboxMail) == 1


def test_a_unix_socket_instead_of_a_port(tmp_path: Path, database_url: str,
                                         clock: FixedClock) -> None:
    path = tmp_path / "lmtp.sock"
    app = App(make_config(tmp_path, database_url, lmtp={"socket": str(path)}), clock=clock)
    lmtp_server = LmtpServer(app, notifier=Notify(app))
    lmtp_server.start()
    try:
        with smtplib.LMTP(str(path), timeout=30) as lmtp:
            assert lmtp.sendmail("li@corp.example", ["support@corp.example"],
                                 messages.mail()) == {}
    finally:
        lmtp_server.stop()
    assert count(app, Ticket) == 1
    app.close()
