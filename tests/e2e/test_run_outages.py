"""`ticketd run` when a server misbehaves: a silent SMTP server must not stop the mailbox from
being watched, and a refused password (IMAP or SMTP) is logged once, burns no attempt and
shows in ``/healthz`` and ``ticketd status``.

In process (:class:`daemon.service.Service`), against the real Dovecot, a real aiosmtpd with
AUTH and a real silent socket; nothing sleeps for time: tests wait for a condition up to a
deadline, and assert on the order of events.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from sqlalchemy import select

from daemon import status
from daemon.app import App
from daemon.clock import FixedClock
from daemon.intake.pipeline import Intake
from daemon.intake.sources import RawMail
from daemon.models import OutboxMail, Ticket
from daemon.replies.notify import Notify
from daemon.service import Service
from tests import messages
from tests.conftest import make_config
from tests.logcapture import records_of
from tests.servers.dovecot import Dovecot
from tests.servers.smtp import SilentServer, SmtpSink

pytestmark = pytest.mark.e2e

USER, PASSWORD = "bob", "bob-pass"
IMAP_PW = "TICKETD_TEST_OUTAGE_IMAP_PW"
SMTP_PW = "TICKETD_TEST_OUTAGE_SMTP_PW"


@pytest.fixture
def imap(imap: Dovecot) -> Dovecot:
    imap.reset(USER)
    return imap


@pytest.fixture
def ticketd_log() -> Iterator[list[logging.LogRecord]]:
    """Everything the ``ticketd.*`` loggers say at INFO and above."""
    with records_of("ticketd", logging.INFO) as records:
        yield records


def wait_until(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.05)


def imap_section(imap: Dovecot, **extra: object) -> dict[str, object]:
    return {"host": imap.host, "port": imap.port, "security": "none", "username": USER,
            "password_env": IMAP_PW, **extra}


def outbox_rows(app: App) -> list[OutboxMail]:
    with app.db.transaction() as session:
        return list(session.scalars(select(OutboxMail).order_by(OutboxMail.id)))


def tickets(app: App) -> int:
    with app.db.transaction() as session:
        return len(list(session.scalars(select(Ticket.id))))


def test_idle_keeps_watching_while_the_smtp_server_is_silent(
        tmp_path: Path, imap: Dovecot, monkeypatch: pytest.MonkeyPatch) -> None:
    """The first acceptance hangs on a server that never greets ([smtp] timeout 60 s). Before,
    the IDLE worker sent it inline and stopped watching the mailbox for that long; now it only
    wakes the sender, and the second mail becomes a ticket while the sender still waits."""
    monkeypatch.setenv(IMAP_PW, PASSWORD)
    with SilentServer() as silent:
        app = App(make_config(tmp_path, f"sqlite:///{tmp_path / 't.db'}",
                              imap=imap_section(imap, poll_interval=600),
                              smtp={"backend": "smtp", "host": silent.host,
                                    "port": silent.port, "security": "none", "timeout": 60}))
        service = Service(app)
        try:
            assert service.start()
            [box] = service.boxes.values()
            wait_until(lambda: bool(box.worker and box.worker.idling), 20, "IDLE")
            imap.append(USER, messages.mail(sender="a@corp.example",
                                            message_id="<silent.1@client.example>"))
            wait_until(lambda: len(silent.accepted) == 1, 20, "the sender to connect")
            imap.append(USER, messages.mail(sender="b@corp.example",
                                            message_id="<silent.2@client.example>"))
            wait_until(lambda: tickets(app) == 2, 30, "the second ticket")
            # Ordering, not timing: the second mail came in while the first acceptance was
            # still waiting for the silent server's greeting.
            assert len(silent.accepted) == 1
            assert [r.status for r in outbox_rows(app)] == ["sending", "queued"]
        finally:
            silent.close()  # ends the sender's blocked read at once
            service.shutdown()
            app.close()
    rows = outbox_rows(app)
    assert [(r.status, r.attempts) for r in rows] == [("queued", 0), ("queued", 0)]


def test_refused_logins_are_logged_once_burn_nothing_and_show_in_health_and_status(
        tmp_path: Path, imap: Dovecot, clock: FixedClock, monkeypatch: pytest.MonkeyPatch,
        smtp_server_factory: Callable[..., SmtpSink],
        ticketd_log: list[logging.LogRecord]) -> None:
    sink = smtp_server_factory(auth=("ticketd", "s3cret"), require_auth=True)
    monkeypatch.setenv(IMAP_PW, "wrong-imap")
    monkeypatch.setenv(SMTP_PW, "wrong-smtp")
    app = App(make_config(tmp_path, f"sqlite:///{tmp_path / 't.db'}",
                          imap=imap_section(imap, idle=False),
                          smtp={"backend": "smtp", "host": sink.host, "port": sink.port,
                                "security": "none", "username": "ticketd",
                                "password_env": SMTP_PW}), clock=clock)
    app.ready_db()
    service = Service(app)
    try:
        imap.append(USER, messages.mail(sender="c@corp.example"))
        Intake(app, notifier=Notify(app)).ingest(RawMail(messages.mail(
            sender="d@corp.example", message_id="<by-file@client.example>"), "file"))
        for _ in range(3):
            assert service.run_until_idle() == []   # IMAP refused: nothing polled

        errors = [r.getMessage() for r in ticketd_log if r.levelno >= logging.ERROR]
        assert len([e for e in errors if "imap" in e and "login refused" in e]) == 1
        assert len([e for e in errors if "smtp" in e and "login refused" in e]) == 1
        assert len(errors) == 2, errors
        assert not any("wrong-" in r.getMessage() for r in ticketd_log)  # never a secret
        assert [(r.status, r.attempts) for r in outbox_rows(app)] == [("queued", 0)]
        assert imap.folder_uids(USER, "INBOX") != []  # the mail waits in the folder

        health = service.health()
        assert health["ok"] is False
        assert any("imap" in p and "login refused for bob" in p for p in health["problems"])
        assert any("smtp" in p and "login refused for ticketd" in p
                   for p in health["problems"])
        [box] = health["mailboxes"].values()
        assert "check [imap] username and password_env" in box["problem"]

        data = status.collect(app)
        assert data["outbox"]["held"] == 1 and data["outbox"]["retrying"] == 0
        assert any("login refused for bob" in p for p in data["problems"])
        assert any(p.startswith("outbox: 1 mail(s) held: smtp") and "login refused" in p
                   for p in data["problems"])
        assert status.render(data).startswith("PROBLEM: ")

        monkeypatch.setenv(IMAP_PW, PASSWORD)
        monkeypatch.setenv(SMTP_PW, "s3cret")
        [result] = service.run_until_idle()
        assert result.action == "created"
        assert len(sink.wait_for(2)) == 2   # the held mail and the new acceptance
        health = service.health()
        assert health["ok"] is True and health["problems"] == []
        assert status.collect(app, ask_imap=False)["problems"] == []
        ended = [r.getMessage() for r in ticketd_log if "works again" in r.getMessage()]
        assert len(ended) == 2
    finally:
        service.shutdown()
        app.close()
