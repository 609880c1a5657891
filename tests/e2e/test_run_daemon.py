"""`ticketd run` against real Dovecot and a real SMTP sink: IDLE latency, a mail server
restart, SIGTERM mid-batch, and two instances sharing one mailbox on PostgreSQL.

The daemon runs as a subprocess (``python -m daemon --config X run``) exactly as systemd runs
it; its stdout/stderr go to files that are printed when a test fails. A few in-process tests
drive :class:`daemon.service.Service` directly (``run_until_idle``, the HTTP endpoint,
``status``). Nothing sleeps for time: tests wait for the sink (``wait_for``), for a log line,
or for a database condition checked every 0.1 s up to a deadline.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from sqlalchemy import create_engine, func, select, text
from sqlalchemy.exc import OperationalError, ProgrammingError

from daemon import status
from daemon.app import App
from daemon.clock import FixedClock
from daemon.config import load
from daemon.httpd import HttpSettings
from daemon.models import Event, IntakeRecord, OutboxMail, Ticket
from daemon.service import Service
from tests import messages
from tests.conftest import IN_CI, PG_URL, make_config
from tests.e2e.conftest import REPO
from tests.servers.dovecot import Dovecot
from tests.servers.smtp import Received, SmtpSink

PASSWORD_ENV = "TICKETD_TEST_IMAP_PASSWORD"
# Not "support": other suites count on support's UIDs starting at 1 in the session's Dovecot,
# and the UIDs of a Dovecot user only ever grow.
USER, PASSWORD = "bob", "bob-pass"
NUMBER = re.compile(r"TS\d{14}")

pytestmark = pytest.mark.e2e


# ---------------------------------------------------------------------- helpers


def write_config(folder: Path, database_url: str, imap: Dovecot, sink: SmtpSink,
                 **imap_extra: object) -> Path:
    imap_keys = {"host": imap.host, "port": imap.port, "security": "none",
                 "username": USER, "password_env": PASSWORD_ENV, **imap_extra}
    lines = ['[support]', 'address = "support@corp.example"', 'name = "Corp Support"',
             '[database]', f'url = "{database_url}"', '[imap]']
    lines += [f"{k} = {json.dumps(v)}" for k, v in imap_keys.items()]
    lines += ['[smtp]', 'backend = "smtp"', f'host = "{sink.host}"', f"port = {sink.port}",
              'security = "none"', "retry_base = 1", '[attachments]',
              f'dir = "{folder / "attachments"}"']
    path = folder / "config.toml"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


@dataclass
class Daemon:
    """One `ticketd run` subprocess with its output in files."""

    proc: subprocess.Popen[bytes]
    log_path: Path

    def log(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def wait_log(self, needle: str, timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        while needle not in self.log():
            if self.proc.poll() is not None:
                raise AssertionError(f"ticketd exited with {self.proc.returncode} before "
                                     f"logging {needle!r}")
            if time.monotonic() > deadline:
                raise AssertionError(f"ticketd did not log {needle!r} in {timeout} s")
            time.sleep(0.05)

    def terminate(self, timeout: float = 15.0) -> tuple[int, float]:
        """SIGTERM; (exit status, seconds until it exited)."""
        started = time.monotonic()
        self.proc.send_signal(signal.SIGTERM)
        code = self.proc.wait(timeout)
        return code, time.monotonic() - started


@pytest.fixture
def start_daemon(tmp_path: Path) -> Iterator[Callable[..., Daemon]]:
    """Start `ticketd run` processes; every one is killed at teardown and its log printed
    (pytest shows it when the test failed)."""
    started: list[Daemon] = []

    def start(config: Path, name: str = "ticketd") -> Daemon:
        log_path = tmp_path / f"{name}-{len(started)}.log"
        env = {**os.environ, "PYTHONPATH": str(REPO), PASSWORD_ENV: PASSWORD}
        env.pop("TICKETD_CONFIG", None)
        with log_path.open("wb") as out:
            proc = subprocess.Popen([sys.executable, "-m", "daemon", "--config", str(config),
                                     "run"], cwd=config.parent, env=env,
                                    stdin=subprocess.DEVNULL, stdout=out,
                                    stderr=subprocess.STDOUT)
        daemon = Daemon(proc, log_path)
        started.append(daemon)
        return daemon

    try:
        yield start
    finally:
        for daemon in started:
            if daemon.proc.poll() is None:
                daemon.proc.kill()
                daemon.proc.wait(10)
            print(f"----- {daemon.log_path.name} (exit {daemon.proc.returncode}) -----")
            print(daemon.log())


def wait_until(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.1)


def count(app: App, model: type[Any]) -> int:
    """Rows in ``model``'s table; 0 while the daemon has not created the schema yet."""
    try:
        with app.db.transaction() as session:
            return int(session.scalar(select(func.count()).select_from(model)) or 0)
    except (OperationalError, ProgrammingError):
        return 0


def bulk_append(imap: Dovecot, raws: list[bytes]) -> None:
    """MULTIAPPEND in chunks: 300 messages load in well under a second."""
    with imap.client(USER) as client:
        for start in range(0, len(raws), 100):
            client.multiappend("INBOX", raws[start:start + 100])


def numbered_mails(n: int, tag: str) -> list[bytes]:
    # A sender per message: the loop brake allows only a few automatic mails per address.
    return [messages.mail(subject=f"打印机无法打印 {tag} {i}",
                          sender=f"用户{i} <u{i}@corp.example>",
                          message_id=f"<{tag}.{i}@client.example>") for i in range(n)]


def acceptances(received: list[Received]) -> list[Received]:
    return [r for r in received if "工单已受理" in str(r.message["Subject"])]


def assert_each_once(received: list[Received], expected: int) -> None:
    """Every acceptance arrived exactly once: by Message-ID and per ticket number."""
    accepted = acceptances(received)
    ids = Counter(str(r.message["Message-ID"]) for r in received)
    assert [i for i, c in ids.items() if c > 1] == []
    numbers = Counter(NUMBER.search(str(r.message["Subject"])).group(0)  # type: ignore[union-attr]
                      for r in accepted)
    assert len(numbers) == expected
    assert [n for n, c in numbers.items() if c > 1] == []


@pytest.fixture
def imap(imap: Dovecot) -> Dovecot:
    """The session's Dovecot with this file's users emptied."""
    imap.reset(USER)
    imap.reset("alice")
    return imap


@pytest.fixture
def sqlite_site(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'tickets.db'}"


@pytest.fixture
def pg_schema_url() -> Iterator[str]:
    """A PostgreSQL URL on a throwaway schema (skipped without PostgreSQL, never under CI)."""
    if not PG_URL:
        if IN_CI:
            pytest.fail("CI=true but TICKETD_TEST_DATABASE_URL is not set")
        pytest.skip("TICKETD_TEST_DATABASE_URL not set: two-instance test needs PostgreSQL")
    schema = f"t_{uuid.uuid4().hex[:12]}"
    admin = create_engine(PG_URL)
    with admin.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    sep = "&" if "?" in PG_URL else "?"
    try:
        yield f"{PG_URL}{sep}options={quote(f'-csearch_path={schema}')}"
    finally:
        with admin.begin() as conn:
            conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


@pytest.fixture
def reader() -> Iterator[Callable[[Path], App]]:
    """Apps over a daemon's config, for the test's own queries; closed at teardown."""
    apps: list[App] = []

    def make(config: Path) -> App:
        app = App(load(config))
        apps.append(app)
        return app

    yield make
    for app in apps:
        app.close()


# ---------------------------------------------------------------------- the daemon itself


@pytest.mark.slow
def test_idle_delivers_acceptance_before_the_next_poll(
        tmp_path: Path, sqlite_site: str, imap: Dovecot, smtp_server: SmtpSink,
        start_daemon: Callable[..., Daemon], reader: Callable[[Path], App]) -> None:
    """With the poll 600 s away, only IDLE can bring the mail in: the acceptance arriving at
    all proves the push path. How fast it comes is printed, not asserted (a loaded machine
    would flake); bench/idle_latency.py measures it."""
    config = write_config(tmp_path, sqlite_site, imap, smtp_server, poll_interval=600)
    daemon = start_daemon(config)
    daemon.wait_log("waiting for mail with IDLE")  # caught up, connection in IDLE
    polls = daemon.log().count("waiting for mail with IDLE")

    started = time.monotonic()
    imap.append(USER, messages.mail(sender="王五 <wang.wu@corp.example>"))
    got = smtp_server.wait_for(1, timeout=60)
    print(f"IDLE: appended -> acceptance received in {time.monotonic() - started:.2f} s")
    assert daemon.log().count("waiting for mail with IDLE") == polls  # no reconnect between
    assert got[0].rcpt_tos == ("wang.wu@corp.example",)
    assert "工单已受理" in str(got[0].message["Subject"])

    config.write_text(config.read_text().replace("poll_interval = 600", "poll_interval = 300"))
    daemon.proc.send_signal(signal.SIGHUP)
    daemon.wait_log("configuration reloaded")
    good = config.read_text()
    config.write_text(good + "not_a_key = 1\n")
    daemon.proc.send_signal(signal.SIGHUP)
    daemon.wait_log("keeping the running configuration")
    assert daemon.proc.poll() is None
    config.write_text(good)

    code, seconds = daemon.terminate()
    print(f"SIGTERM -> exit {code} in {seconds:.2f} s")
    assert code == 0 and seconds < 10
    app = reader(config)
    assert count(app, Ticket) == 1
    assert "sent acceptance" in daemon.log()


@pytest.mark.slow
def test_mail_server_restart_is_survived(
        tmp_path: Path, sqlite_site: str, imap: Dovecot, smtp_server: SmtpSink,
        start_daemon: Callable[..., Daemon], reader: Callable[[Path], App]) -> None:
    config = write_config(tmp_path, sqlite_site, imap, smtp_server, poll_interval=600)
    daemon = start_daemon(config)
    daemon.wait_log("waiting for mail with IDLE")
    imap.append(USER, messages.mail(subject="重启前", sender="a@corp.example"))
    smtp_server.wait_for(1, timeout=5)

    imap.stop()
    imap.start()  # same port, same mail
    started = time.monotonic()
    imap.append(USER, messages.mail(subject="重启后", sender="b@corp.example"))
    received = smtp_server.wait_for(2, timeout=20)
    print(f"Dovecot restart: mail after restart answered in {time.monotonic() - started:.2f} s")
    daemon.wait_log("reconnected; waiting for mail with IDLE")
    assert daemon.proc.poll() is None, "the daemon died with the mail server"
    assert "reconnecting in" in daemon.log()
    assert_each_once(received, 2)
    code, _ = daemon.terminate()
    assert code == 0
    app = reader(config)
    assert count(app, Ticket) == 2 and count(app, IntakeRecord) == 2
    assert imap.folder_uids(USER, "INBOX") == []


@pytest.mark.slow
def test_sigterm_mid_batch_exits_clean_and_loses_nothing(
        tmp_path: Path, sqlite_site: str, imap: Dovecot, smtp_server: SmtpSink,
        start_daemon: Callable[..., Daemon], reader: Callable[[Path], App]) -> None:
    total = 50
    config = write_config(tmp_path, sqlite_site, imap, smtp_server, poll_interval=600,
                          batch_size=10)
    bulk_append(imap, numbered_mails(total, "term"))
    app = reader(config)
    daemon = start_daemon(config)
    wait_until(lambda: count(app, IntakeRecord) >= 5, 30, "the first messages")
    code, seconds = daemon.terminate()
    done_first = count(app, IntakeRecord)
    print(f"SIGTERM mid-batch: exit {code} in {seconds:.2f} s after {done_first}/{total} "
          "messages")
    assert code == 0 and seconds < 10
    assert "stopping after the message in hand" in daemon.log()

    again = start_daemon(config)
    again.wait_log("ticketd running as")  # its signal handlers are in place
    wait_until(lambda: count(app, IntakeRecord) >= total, 60, f"{total} intake results")
    smtp_server.wait_for(total, timeout=30)
    code, _ = again.terminate()
    assert code == 0
    assert count(app, Ticket) == total and count(app, IntakeRecord) == total
    with app.db.transaction() as session:
        assert set(session.scalars(select(IntakeRecord.action))) == {"created"}
        statuses = Counter(session.scalars(select(OutboxMail.status)))
    assert statuses == {"sent": total}
    received = smtp_server.received  # both processes have exited: nothing more can come
    assert len(received) == total
    assert_each_once(received, total)
    assert imap.folder_uids(USER, "INBOX") == []
    assert len(imap.folder_uids(USER, "Processed")) == total

    shown = subprocess.run([sys.executable, "-m", "daemon", "--config", str(config), "status",
                            "--json"], env={**os.environ, "PYTHONPATH": str(REPO),
                                            PASSWORD_ENV: PASSWORD},
                           capture_output=True, text=True, timeout=60, check=False)
    assert shown.returncode == 0, shown.stderr
    data = json.loads(shown.stdout)
    assert data["outbox"]["sent"] == total and data["outbox"]["queued"] == 0
    assert data["tickets"]["open"] == total
    [box] = data["mailboxes"]
    assert box["last_poll_at"] and box["waiting"] == 0 and box["lease"] is None  # released


@pytest.mark.slow
def test_two_instances_on_postgresql_share_one_mailbox(
        tmp_path: Path, pg_schema_url: str, imap: Dovecot, smtp_server: SmtpSink,
        start_daemon: Callable[..., Daemon], reader: Callable[[Path], App]) -> None:
    total = 300
    config = write_config(tmp_path, pg_schema_url, imap, smtp_server, poll_interval=5,
                          lease_seconds=10)
    bulk_append(imap, numbered_mails(total, "pair"))
    started = time.monotonic()
    first = start_daemon(config, "first")
    second = start_daemon(config, "second")  # both migrate the fresh schema at once
    app = reader(config)
    wait_until(lambda: count(app, Ticket) >= total, 75, f"{total} tickets")
    received = smtp_server.wait_for(total, timeout=30)
    elapsed = time.monotonic() - started
    codes = [first.terminate()[0], second.terminate()[0]]
    senders = [d.log().count("sent acceptance") for d in (first, second)]
    print(f"two instances: {total} messages -> {total} acceptances in {elapsed:.1f} s; "
          f"mails sent per instance {senders}")
    assert codes == [0, 0]
    assert count(app, IntakeRecord) == total
    assert count(app, Ticket) == total
    with app.db.transaction() as session:
        numbers = list(session.scalars(select(Ticket.number)))
        statuses = Counter(session.scalars(select(OutboxMail.status)))
    assert len(set(numbers)) == total
    assert statuses == {"sent": total}
    received = smtp_server.received
    assert len(received) == total
    assert_each_once(received, total)
    assert sum(senders) == total


# ---------------------------------------------------------------------- in process


@pytest.fixture
def service_app(tmp_path: Path, sqlite_site: str, imap: Dovecot, clock: FixedClock,
                monkeypatch: pytest.MonkeyPatch) -> Iterator[App]:
    monkeypatch.setenv(PASSWORD_ENV, PASSWORD)
    monkeypatch.setenv("TICKETD_TEST_ALICE_PASSWORD", "alice-pass")
    cfg = make_config(tmp_path, sqlite_site, imap={
        "host": imap.host, "port": imap.port, "security": "none", "username": USER,
        "password_env": PASSWORD_ENV, "mailboxes": [
            {"name": "sales", "username": "alice", "address": "sales@corp.example",
             "team": "sales", "password_env": "TICKETD_TEST_ALICE_PASSWORD"}]})
    app = App(cfg, clock=clock)
    app.ready_db()
    yield app
    app.close()


def test_one_mail_to_two_mailboxes_makes_one_ticket(service_app: App, imap: Dovecot) -> None:
    raw = messages.mail(to="support@corp.example, sales@corp.example",
                        message_id="<both@client.example>")
    imap.append("alice", raw)
    imap.append(USER, raw)
    service = Service(service_app)
    results = service.run_until_idle()
    assert sorted(r.action for r in results) == ["created", "duplicate"]
    assert count(service_app, Ticket) == 1
    with service_app.db.transaction() as session:
        ticket = session.scalars(select(Ticket)).one()
        assert ticket.team == "ops"  # [imap] itself (polled first) has no team of its own
        assert ticket.mailbox == f"{USER}@127.0.0.1:{imap.port}/INBOX"
    outbox = Path(service_app.config.smtp.file_dir)
    assert len(list(outbox.glob("*.eml"))) == 1
    metrics = service.metrics.render().decode()
    assert 'ticketd_messages_total{action="created"} 1.0' in metrics
    assert 'ticketd_messages_total{action="duplicate"} 1.0' in metrics
    assert "ticketd_mails_sent_total 1.0" in metrics
    assert service.run_until_idle() == []


def test_status_and_sla_sweep(service_app: App, imap: Dovecot, clock: FixedClock) -> None:
    imap.append("alice", messages.mail(sender="li@corp.example"))
    service = Service(service_app)
    [result] = service.run_until_idle()
    data = status.collect(service_app)
    json.dumps(data)  # JSON-safe
    boxes = {b["name"]: b for b in data["mailboxes"]}
    assert boxes["sales"]["last_poll_at"] == clock.now().isoformat()
    assert boxes["sales"]["waiting"] == 0 and boxes["sales"]["team"] == "sales"
    assert boxes["sales"]["lease"]["holder"] == service.holder
    assert data["outbox"]["queued"] == 0 and data["outbox"]["sent"] >= 1
    assert data["tickets"]["open"] == 1 and data["sla"]["breaches"] == 0
    with service_app.db.transaction() as session:
        assert session.scalars(select(Ticket.team)).one() == "sales"  # the mailbox's team
    report = service.sweep()
    assert report is not None and report.done("sla-breach") == ()

    clock.advance(timedelta(hours=3))  # past every assign deadline
    report = service.sweep()
    assert report is not None and report.done("sla-breach") == (result.number,)
    report = service.sweep()
    assert report is not None and report.done("sla-breach") == ()  # recorded once
    with service_app.db.transaction() as session:
        events = session.scalars(select(Event.detail).where(Event.action == "sla-breach"))
        assert len(list(events)) == 1
    data = status.collect(service_app)
    assert data["sla"]["breaches"] == 1
    assert data["sla"]["tickets"][0]["number"] == result.number
    assert data["sla"]["by_team_and_priority"] == {"sales": {data["sla"]["tickets"][0][
        "priority"]: 1}}
    assert data["sla"]["tickets"][0]["lead_told"] is True
    metrics = service.metrics.render().decode()
    assert 'ticketd_sla_breaches_open{priority="' in metrics and 'team="sales"} 1.0' in metrics
    assert "ticketd_sla_breach_mails_total 1.0" in metrics
    text_form = status.render(data)
    assert "SLA breaches: 1" in text_form and str(result.number) in text_form
    assert "sales [team sales]: last poll" in text_form

    imap.stop()
    try:
        down = status.collect(service_app)
    finally:
        imap.start()
    assert down["mailboxes"][0]["waiting"] is None
    assert "cannot connect" in down["mailboxes"][0]["waiting_error"]
    assert "waiting unknown" in status.render(down)


def test_service_threads_serve_healthz_and_metrics_and_stop(
        service_app: App, imap: Dovecot, smtp_server: SmtpSink) -> None:
    app = App(make_config(Path(service_app.config.attachments.dir).parent,
                          service_app.config.database.url,
                          imap={"host": imap.host, "port": imap.port, "security": "none",
                                "username": USER, "password_env": PASSWORD_ENV},
                          smtp={"backend": "smtp", "host": smtp_server.host,
                                "port": smtp_server.port, "security": "none"}))
    service = Service(app, http=HttpSettings("127.0.0.1", 0))
    try:
        assert service.start()
        imap.append(USER, messages.mail(sender="zhao@corp.example"))
        smtp_server.wait_for(1, timeout=10)
        assert service._http is not None
        base = f"http://127.0.0.1:{service._http.port}"
        with urllib.request.urlopen(base + "/healthz", timeout=5) as answer:
            health = json.load(answer)
        assert health["ok"] is True and health["mailboxes"]
        [box] = health["mailboxes"].values()
        assert box["lease_held"] is True and box["last_poll_at"]
        with urllib.request.urlopen(base + "/metrics", timeout=5) as answer:
            body = answer.read().decode()
        assert 'ticketd_messages_total{action="created"} 1.0' in body
        assert "ticketd_tickets_created_total 1.0" in body
        assert "ticketd_poll_duration_seconds_bucket" in body
        with pytest.raises(urllib.error.HTTPError) as missing:
            urllib.request.urlopen(base + "/nope", timeout=5)
        missing.value.close()
        assert missing.value.code == 404
    finally:
        started = time.monotonic()
        service.shutdown()
        app.close()
    assert time.monotonic() - started < 10
    assert all(box.worker is None or not box.worker.is_alive()
               for box in service.boxes.values())


def test_sighup_reload_keeps_running_config_when_the_new_one_is_bad(
        tmp_path: Path, sqlite_site: str, imap: Dovecot, smtp_server: SmtpSink,
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(PASSWORD_ENV, PASSWORD)
    config = write_config(tmp_path, sqlite_site, imap, smtp_server, poll_interval=600)
    app = App(load(config))
    service = Service(app)
    try:
        config.write_text(config.read_text() + "bogus = 1\n")
        service.reload()
        assert app.config.imap.poll_interval == 600
        config.write_text(config.read_text().replace("bogus = 1\n", "")
                          .replace("poll_interval = 600", "poll_interval = 30"))
        service.reload()
        assert app.config.imap.poll_interval == 30
    finally:
        app.close()


@pytest.mark.slow
def test_database_connections_killed_under_the_daemon_are_reestablished(
        tmp_path: Path, pg_schema_url: str, imap: Dovecot, smtp_server: SmtpSink,
        start_daemon: Callable[..., Daemon], reader: Callable[[Path], App]) -> None:
    app_name = f"ticketd-test-{uuid.uuid4().hex[:8]}"
    config = write_config(tmp_path, f"{pg_schema_url}&application_name={app_name}", imap,
                          smtp_server, poll_interval=600)
    daemon = start_daemon(config)
    daemon.wait_log("waiting for mail with IDLE")
    imap.append(USER, messages.mail(subject="断开前", sender="a@corp.example"))
    smtp_server.wait_for(1, timeout=5)

    admin = create_engine(PG_URL)
    try:
        with admin.begin() as conn:
            killed = conn.execute(text(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                "WHERE application_name = :name"), {"name": app_name}).scalar_one()
    finally:
        admin.dispose()
    assert killed >= 1, "the daemon held no database connection to kill"

    started = time.monotonic()
    imap.append(USER, messages.mail(subject="断开后", sender="b@corp.example"))
    received = smtp_server.wait_for(2, timeout=30)
    print(f"{killed} database connections killed: next mail answered in "
          f"{time.monotonic() - started:.2f} s")
    assert daemon.proc.poll() is None, "the daemon died with its database connections"
    assert_each_once(received, 2)
    code, _ = daemon.terminate()
    assert code == 0
    app = reader(config)
    assert count(app, Ticket) == 2 and count(app, IntakeRecord) == 2
