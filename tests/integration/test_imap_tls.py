"""IMAP over real TLS: implicit TLS and STARTTLS against Dovecot with its own certificate."""

from __future__ import annotations

from pathlib import Path

import pytest

from daemon.app import App
from daemon.clock import FixedClock
from daemon.errors import MailboxRefused
from daemon.intake import imap as imap_intake
from daemon.intake.pipeline import Intake
from tests import messages
from tests.conftest import make_config
from tests.servers.dovecot import Dovecot

PW = "TICKETD_TEST_TLS_PASSWORD"


def tls_app(tmp_path: Path, database_url: str, clock: FixedClock, server: Dovecot,
            security: str, ca: bool = True) -> App:
    port = server.tls_port if security == "ssl" else server.port
    cfg = make_config(tmp_path, database_url, imap={
        "host": "127.0.0.1", "port": port, "security": security, "username": "support",
        "password_env": PW, "ca_file": str(server.cert_path) if ca else ""})
    app = App(cfg, clock=clock)
    app.ready_db()
    return app


@pytest.mark.parametrize("security", ["ssl", "starttls"])
def test_poll_over_tls(tmp_path: Path, database_url: str, clock: FixedClock,
                       dovecot_tls: Dovecot, security: str,
                       monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(PW, "support-pass")
    dovecot_tls.reset("support")
    dovecot_tls.append("support", messages.mail())
    app = tls_app(tmp_path, database_url, clock, dovecot_tls, security)
    try:
        spec = imap_intake.MailboxSpec.from_config(app.config.imap)
        report = imap_intake.poll_once(app, Intake(app), spec)
        assert [r.action for r in report.results] == ["created"]
        assert dovecot_tls.folder_uids("support", "INBOX") == []
    finally:
        app.close()


def test_untrusted_certificate_is_refused(tmp_path: Path, database_url: str, clock: FixedClock,
                                          dovecot_tls: Dovecot,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(PW, "support-pass")
    app = tls_app(tmp_path, database_url, clock, dovecot_tls, "ssl", ca=False)
    try:
        with pytest.raises(MailboxRefused, match="certificate not trusted"):
            imap_intake.connect(imap_intake.MailboxSpec.from_config(app.config.imap))
    finally:
        app.close()
