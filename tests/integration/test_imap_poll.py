"""`poll --once` against a real Dovecot: commit before move, dedup, UIDVALIDITY, quarantine."""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest
from imapclient import IMAPClient
from sqlalchemy import func, select

from daemon import tickets
from daemon.app import App
from daemon.clock import FixedClock
from daemon.errors import ConfigError, LoginRefused, MailboxRefused, MailboxUnavailable
from daemon.intake import imap as imap_intake
from daemon.intake.parsed import ParsedMail
from daemon.intake.pipeline import Intake
from daemon.intake.prepare import Prepared
from daemon.intake.sources import RawMail
from daemon.models import MailboxCursor, Quarantined, Ticket
from daemon.outcomes import IntakeResult
from tests import messages
from tests.conftest import make_config
from tests.servers.dovecot import Dovecot

PASSWORD_ENV = "TICKETD_TEST_IMAP_PASSWORD"


@pytest.fixture
def imap_app(tmp_path: Path, database_url: str, clock: FixedClock, imap: Dovecot,
             monkeypatch: pytest.MonkeyPatch) -> Iterator[App]:
    monkeypatch.setenv(PASSWORD_ENV, "support-pass")
    cfg = make_config(tmp_path, database_url, imap={
        "host": imap.host, "port": imap.port, "security": "none", "username": "support",
        "password_env": PASSWORD_ENV, "batch_size": 2})
    application = App(cfg, clock=clock)
    application.ready_db()
    yield application
    application.close()


def spec_of(app: App, **changes: object) -> imap_intake.MailboxSpec:
    spec = imap_intake.MailboxSpec.from_config(app.config.imap)
    return imap_intake.MailboxSpec(**{**spec.__dict__, **changes})


def ticket_count(app: App) -> int:
    with app.db.transaction() as s:
        return int(s.scalar(select(func.count()).select_from(Ticket)) or 0)


def test_poll_creates_follows_up_ignores_and_moves_after_commit(imap_app: App,
                                                                 imap: Dovecot) -> None:
    first = messages.mail(message_id="<first@client.example>")
    imap.append("support", first)
    report = imap_intake.poll_once(imap_app, Intake(imap_app), spec_of(imap_app))
    assert [r.action for r in report.results] == ["created"]
    number = report.results[0].number
    assert number == "TS20231027000001"

    imap.append("support", messages.mail(subject=f"回复: [{number}] 打印机无法打印",
                                         body="补充：型号是 HP M404。",
                                         in_reply_to="<first@client.example>"))
    imap.append("support", messages.auto_reply())
    last_uid = imap.append("support", messages.mail(subject="VPN 无法连接",
                                                    sender="li@corp.example"))
    report = imap_intake.poll_once(imap_app, Intake(imap_app), spec_of(imap_app))
    assert [(r.action, r.number) for r in report.results] == [
        ("appended", number), ("ignored", None), ("created", "TS20231027000002")]
    assert imap.folder_uids("support", "INBOX") == []
    assert len(imap.folder_uids("support", "Processed")) == 4
    with imap_app.db.transaction() as s:
        t = tickets.get(s, number)
        assert [m.kind for m in t.messages] == ["new", "follow-up"]
        assert "HP M404" in t.messages[1].new_text
        cursor = s.get(MailboxCursor, spec_of(imap_app).key)
        assert cursor is not None and cursor.last_uid == last_uid and cursor.uidvalidity


class CrashAfterCommit(Intake):
    """An intake that loses the IMAP server right after its commit (before the move)."""

    def __init__(self, app: App, server: Dovecot) -> None:
        super().__init__(app)
        self.server = server

    def ingest_batch(self, raws: Sequence[RawMail],
                     parsed: Sequence[Prepared | ParsedMail | str] | None = None
                     ) -> list[IntakeResult]:
        results = super().ingest_batch(raws, parsed)
        self.server.stop()
        return results


def test_restart_between_commit_and_move_records_once(imap_app: App, imap: Dovecot) -> None:
    imap.append("support", messages.mail())
    with pytest.raises(MailboxUnavailable):
        imap_intake.poll_once(imap_app, CrashAfterCommit(imap_app, imap), spec_of(imap_app))
    imap.start()
    assert len(imap.folder_uids("support", "INBOX")) == 1  # not moved: the crash came first
    assert ticket_count(imap_app) == 1
    report = imap_intake.poll_once(imap_app, Intake(imap_app), spec_of(imap_app))
    assert [r.action for r in report.results] == ["duplicate"]
    assert ticket_count(imap_app) == 1
    assert imap.folder_uids("support", "INBOX") == []
    assert len(imap.folder_uids("support", "Processed")) == 1


def test_uidvalidity_change_rescans_without_doubles(imap_app: App, imap: Dovecot) -> None:
    spec = spec_of(imap_app, after_processing="flag")
    for n in range(3):
        imap.append("support", messages.mail(subject=f"问题 {n}"))
    first = imap_intake.poll_once(imap_app, Intake(imap_app), spec)
    assert [r.action for r in first.results] == ["created"] * 3
    assert len(imap.folder_uids("support", "INBOX")) == 3  # flag mode leaves mail in place
    again = imap_intake.poll_once(imap_app, Intake(imap_app), spec)
    assert again.results == []  # the cursor remembers the last UID
    imap.change_uidvalidity("support", "INBOX")
    imap.append("support", messages.mail(subject="新问题"))
    after = imap_intake.poll_once(imap_app, Intake(imap_app), spec)
    assert after.uidvalidity_reset
    assert [r.action for r in after.results] == ["duplicate"] * 3 + ["created"]
    assert ticket_count(imap_app) == 4


def test_unparseable_mail_is_quarantined_and_moved_aside(imap_app: App, imap: Dovecot) -> None:
    imap.append("support", messages.GARBAGE)
    imap.append("support", messages.mail())
    report = imap_intake.poll_once(imap_app, Intake(imap_app), spec_of(imap_app))
    assert [r.action for r in report.results] == ["quarantined", "created"]
    assert imap.fetch_all("support", "Quarantine") != {}
    quarantined = next(iter(imap.fetch_all("support", "Quarantine").values()))
    assert quarantined.rstrip() == messages.GARBAGE.rstrip()
    with imap_app.db.transaction() as s:
        row = s.scalars(select(Quarantined)).one()
        assert row.raw.rstrip() == messages.GARBAGE.rstrip() and "no header" in row.reason


def test_starttls_not_offered_is_an_error_never_plain_text(imap_app: App) -> None:
    with pytest.raises(MailboxRefused, match="does not offer STARTTLS"):
        imap_intake.connect(spec_of(imap_app, security="starttls"))


def test_wrong_password_is_a_configuration_error(imap_app: App,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(PASSWORD_ENV, "wrong")
    with pytest.raises(LoginRefused, match="login refused") as refused:
        imap_intake.connect(spec_of(imap_app))
    assert isinstance(refused.value, ConfigError) and refused.value.exit_code == 2
    assert "check [imap] username and password_env/password_file" in str(refused.value)
    assert "wrong" not in str(refused.value)


def test_server_down_is_transient(imap_app: App) -> None:
    with pytest.raises(MailboxUnavailable):
        imap_intake.connect(spec_of(imap_app, port=1))


class OldServerClient(IMAPClient):  # type: ignore[misc]  # imapclient ships no types
    """A real connection that pretends the server lacks MOVE and UIDPLUS (older servers)."""

    def has_capability(self, capability: str) -> bool:
        if capability.upper() in ("MOVE", "UIDPLUS"):
            return False
        return bool(super().has_capability(capability))


def test_without_move_or_uidplus_mail_is_copied_and_nothing_else_expunged(
        imap_app: App, imap: Dovecot) -> None:
    bystander = imap.append("support", messages.mail(subject="别人标记删除的"), flags=[
        "\\Deleted"])
    imap.append("support", messages.mail())
    client = OldServerClient(imap.host, port=imap.port, ssl=False)
    client.login("support", "support-pass")
    try:
        report = imap_intake.poll_once(imap_app, Intake(imap_app), spec_of(imap_app),
                                       client=client)
        assert [r.action for r in report.results] == ["created"]  # \Deleted mail skipped
        again = imap_intake.poll_once(imap_app, Intake(imap_app), spec_of(imap_app),
                                      client=client)
        assert again.results == []
    finally:
        client.logout()
    assert len(imap.folder_uids("support", "Processed")) == 1
    assert bystander in imap.folder_uids("support", "INBOX")  # never expunged by us


def test_a_fetch_formats_no_protocol_trace_unless_its_logger_shows_it(
        imap_app: App, imap: Dovecot, caplog: pytest.LogCaptureFixture) -> None:
    """imapclient turns imaplib's trace on, and imaplib then formats every response, bodies
    included, for a logger that drops it: most of a backlog fetch's CPU. Off by default; on
    with the protocol logger (``--debug``)."""
    body = "打印机无法打印。\n" + "x" * 200_000 + "\n"
    imap.append("support", messages.mail(body=body))
    traced: list[str] = []
    for level in (logging.INFO, logging.DEBUG):
        with caplog.at_level(level, logger=imap_intake.PROTOCOL_LOG):
            client = imap_intake.connect(spec_of(imap_app))
            client._imap._mesg = lambda text, *_a: traced.append(text)  # what imaplib formats
            client.select_folder(spec_of(imap_app).folder, readonly=True)
            [uid] = client.search(["ALL"])
            data = client.fetch([uid], ["BODY.PEEK[]"])[uid][b"BODY[]"]
            imap_intake.quiet_logout(client)
        assert len(data) > 200_000
        formatted = sum(len(t) for t in traced)
        if level == logging.INFO:
            assert formatted == 0
        else:
            assert formatted > 200_000  # the body's repr: the trace is back
