"""The loopback test servers do what the rest of the suite relies on.

Why: every IMAP and SMTP test trusts these fixtures; if Dovecot's config, the reset, the
UIDVALIDITY trick or the SMTP fault injection silently stopped working, those tests would
pass or fail for the wrong reason. Everything here talks to the real servers on 127.0.0.1.
"""

from __future__ import annotations

import datetime as dt
import smtplib
import socket
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from imapclient import IMAPClient
from imapclient.exceptions import LoginError

from tests.servers import dovecot as dovecot_module
from tests.servers.dovecot import Dovecot, DovecotError
from tests.servers.smtp import SmtpSink

CLIENT_NAME = "client.ticketd.test"  # smtplib would otherwise call socket.getfqdn()

RAW = (
    b"From: Requester <req@example.com>\r\n"
    b"To: support@example.com\r\n"
    b"Subject: =?gb2312?B?xOO6ww==?=\r\n"
    b"Message-ID: <servers-1@example.com>\r\n"
    b"MIME-Version: 1.0\r\n"
    b"Content-Type: text/plain; charset=gb2312\r\n"
    b"Content-Transfer-Encoding: 8bit\r\n"
    b"\r\n"
    b"\xc4\xe3\xba\xc3, the printer is broken.\r\n"
    b".a line that needs dot-stuffing\r\n"
)


def _refused(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1.0):
            return False
    except ConnectionRefusedError:
        return True


def _smtp(sink: SmtpSink) -> smtplib.SMTP:
    return smtplib.SMTP(sink.host, sink.port, local_hostname=CLIENT_NAME, timeout=5)


# -- Dovecot ---------------------------------------------------------------------------------


@pytest.mark.parametrize("user", ["support", "alice", "bob"])
def test_default_users_log_in(imap: Dovecot, user: str) -> None:
    with imap.client(user) as client:
        assert b"IDLE" in client.capabilities()
        assert b"UIDVALIDITY" in client.select_folder("INBOX")


def test_append_fetch_round_trip_keeps_bytes(imap: Dovecot) -> None:
    when = dt.datetime(2024, 3, 1, 9, 30, tzinfo=dt.timezone(dt.timedelta(hours=8)))
    uid = imap.append("support", RAW, flags=[b"\\Seen"], msg_time=when)

    assert imap.folder_uids("support", "INBOX") == [uid]
    assert imap.fetch_all("support", "INBOX") == {uid: RAW}
    with imap.client("support") as client:
        client.select_folder("INBOX", readonly=True)
        data = client.fetch([uid], ["FLAGS", "INTERNALDATE"])[uid]
    assert b"\\Seen" in data[b"FLAGS"]
    assert data[b"INTERNALDATE"].astimezone(dt.UTC) == when.astimezone(dt.UTC)


def test_append_to_created_folder(imap: Dovecot) -> None:
    imap.create_folder("support", "Tickets.Done")
    uid = imap.append("support", RAW, folder="Tickets.Done")
    assert imap.fetch_all("support", "Tickets.Done") == {uid: RAW}
    assert imap.folder_uids("support", "INBOX") == []


def test_idle_sees_append_from_another_connection(imap: Dovecot) -> None:
    """IDLE pushes EXISTS for mail appended elsewhere. Only the event is asserted; a bound on
    how fast it comes would flake on a loaded machine (the latency is printed)."""
    with imap.client("support") as idler:
        idler.select_folder("INBOX")
        idler.idle()
        try:
            imap.append("support", RAW)
            appended = time.monotonic()
            responses: list[tuple[object, ...]] = []
            while time.monotonic() - appended < 30 and not responses:
                responses = [r for r in idler.idle_check(timeout=0.25) if b"EXISTS" in r]
            print(f"IDLE: EXISTS {time.monotonic() - appended:.2f} s after the append")
        finally:
            idler.idle_done()
    assert responses, "no EXISTS within 30 s"
    assert responses[0][0] == 1


@pytest.mark.parametrize("run", [1, 2])
def test_imap_fixture_isolates_tests(imap: Dovecot, run: int) -> None:
    # Both runs leave mail and a folder behind; the second proves the fixture removed them.
    assert imap.folder_uids("support", "INBOX") == []
    imap.create_folder("support", f"Left.Behind{run}")
    imap.append("support", RAW)


def test_reset_removes_folders_and_mail(imap: Dovecot) -> None:
    imap.create_folder("support", "Quarantine")
    imap.create_folder("support", "Quarantine.Deep")
    imap.append("support", RAW)
    imap.append("support", RAW, folder="Quarantine.Deep")

    imap.reset("support")

    with imap.client("support") as client:
        assert [name for _f, _d, name in client.list_folders()] == ["INBOX"]
    assert imap.folder_uids("support", "INBOX") == []


def test_reset_leaves_other_users_alone(imap: Dovecot) -> None:
    imap.reset("alice")
    uid = imap.append("alice", RAW)
    imap.reset("support")
    assert imap.folder_uids("alice", "INBOX") == [uid]
    imap.reset("alice")


def test_stop_refuses_and_restart_keeps_port_and_mail(imap: Dovecot) -> None:
    uid = imap.append("support", RAW)
    port = imap.port

    imap.stop()
    assert not imap.running
    assert _refused(imap.host, port)

    imap.start()
    assert imap.port == port
    assert imap.fetch_all("support", "INBOX") == {uid: RAW}

    imap.restart()
    assert imap.port == port
    assert imap.fetch_all("support", "INBOX") == {uid: RAW}


@pytest.mark.parametrize("folder", ["INBOX", "Archive"])
def test_change_uidvalidity_keeps_messages(imap: Dovecot, folder: str) -> None:
    if folder != "INBOX":
        imap.create_folder("support", folder)
    uid = imap.append("support", RAW, folder=folder)
    before = imap.uidvalidity("support", folder)

    after = imap.change_uidvalidity("support", folder)

    assert after != before
    with imap.client("support") as client:
        assert client.select_folder(folder, readonly=True)[b"UIDVALIDITY"] == after
    # doveadm keeps the messages (and here even their UIDs); clients must not rely on that.
    assert imap.fetch_all("support", folder) == {uid: RAW}


def test_bad_password_is_refused_without_a_penalty(imap: Dovecot) -> None:
    """A wrong password is refused, and the server is configured not to delay the answer
    (auth_failure_delay, which would cost every login-failure test 2 s); asserted on the
    configuration Dovecot reads, not on a stopwatch."""
    client = IMAPClient(imap.host, port=imap.port, ssl=False, timeout=5)
    try:
        with pytest.raises(LoginError):
            client.login("support", "wrong-password")
    finally:
        client.shutdown()
    assert "\nauth_failure_delay = 0\n" in imap.conf_path.read_text()


def test_add_user_can_log_in_at_once(imap: Dovecot) -> None:
    imap.add_user("carol", "carol-pass")
    with imap.client("carol") as client:
        assert client.select_folder("INBOX")[b"EXISTS"] == 0


def test_missing_binary_skips_locally(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DOVECOT_BINARY", "/nonexistent/dovecot")
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match="dovecot-imapd"):
        Dovecot()


def test_missing_binary_fails_on_ci(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DOVECOT_BINARY", "/nonexistent/dovecot")
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="dovecot-imapd"):
        Dovecot()


def test_unsearchable_parent_is_reported(tmp_path: Path) -> None:
    private = tmp_path / "private"
    private.mkdir(mode=0o700)
    (private / "dovecot-x").mkdir(mode=0o755)
    with pytest.raises(DovecotError, match="o\\+x"):
        dovecot_module._check_searchable(private / "dovecot-x")


# -- SMTP ------------------------------------------------------------------------------------


def test_smtp_records_envelope_bytes_and_headers(smtp_server: SmtpSink) -> None:
    with _smtp(smtp_server) as client:
        client.sendmail("ticketd@example.com", ["req@example.com", "cc@example.com"], RAW)

    [got] = smtp_server.wait_for(1)
    assert got.mail_from == "ticketd@example.com"
    assert got.rcpt_tos == ("req@example.com", "cc@example.com")
    assert got.data == RAW
    assert got.message["Message-ID"] == "<servers-1@example.com>"
    assert got.message["Subject"] == "你好"
    assert got.auth_login is None


def test_smtp_fail_next_451_then_success(smtp_server: SmtpSink) -> None:
    smtp_server.fail_next(1, 451)
    with _smtp(smtp_server) as client:
        with pytest.raises(smtplib.SMTPDataError) as excinfo:
            client.sendmail("ticketd@example.com", ["req@example.com"], RAW)
        assert excinfo.value.smtp_code == 451
        client.sendmail("ticketd@example.com", ["req@example.com"], RAW)

    assert [r.data for r in smtp_server.wait_for(1)] == [RAW]
    assert len(smtp_server.rejected) == 1


def test_smtp_fail_next_550_is_permanent(smtp_server: SmtpSink) -> None:
    smtp_server.fail_next(1, 550, "5.1.1 No such user")
    with _smtp(smtp_server) as client, pytest.raises(smtplib.SMTPDataError) as excinfo:
        client.sendmail("ticketd@example.com", ["nobody@example.com"], RAW)
    assert excinfo.value.smtp_code == 550
    assert b"No such user" in excinfo.value.smtp_error
    assert smtp_server.received == []


def test_smtp_fail_next_rejects_bad_codes(smtp_server: SmtpSink) -> None:
    with pytest.raises(ValueError, match="4xx or 5xx"):
        smtp_server.fail_next(1, 250)


def test_smtp_stop_refuses_start_accepts_on_same_port(smtp_server: SmtpSink) -> None:
    port = smtp_server.port
    smtp_server.stop()
    with pytest.raises(ConnectionRefusedError):
        _smtp(smtp_server)

    smtp_server.start()
    assert smtp_server.port == port
    with _smtp(smtp_server) as client:
        client.sendmail("ticketd@example.com", ["req@example.com"], RAW)
    assert len(smtp_server.wait_for(1)) == 1


def test_smtp_wait_for_times_out_with_a_count(smtp_server: SmtpSink) -> None:
    with pytest.raises(TimeoutError, match="got 0 message"):
        smtp_server.wait_for(1, timeout=0.05)


@pytest.mark.parametrize("mechanism", ["PLAIN", "LOGIN"])
def test_smtp_auth(smtp_server_factory: Callable[..., SmtpSink], mechanism: str) -> None:
    sink = smtp_server_factory(auth=("ticketd", "s3cret"), require_auth=True)
    with _smtp(sink) as client:
        with pytest.raises(smtplib.SMTPSenderRefused) as excinfo:
            client.sendmail("ticketd@example.com", ["req@example.com"], RAW)
        assert excinfo.value.smtp_code == 530

        client.user, client.password = "ticketd", "wrong"
        with pytest.raises(smtplib.SMTPAuthenticationError):
            client.auth(mechanism, getattr(client, f"auth_{mechanism.lower()}"))

        client.user, client.password = "ticketd", "s3cret"
        code, _text = client.auth(mechanism, getattr(client, f"auth_{mechanism.lower()}"))
        assert code == 235
        client.sendmail("ticketd@example.com", ["req@example.com"], RAW)

    [got] = sink.wait_for(1)
    assert got.auth_login == "ticketd"
    assert got.data == RAW
