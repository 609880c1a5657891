"""SIGKILL `ticketd poll --once` inside a batch transaction; the restart loses and doubles nothing.

The kill comes while the process holds a write transaction open (SQLite: our own
``BEGIN IMMEDIATE`` finds the database busy; PostgreSQL: its backend holds a row lock on
``intake_log``, which only a batch transaction takes). Whatever that batch had written is
rolled back by the database, nothing of it was moved on the IMAP server, and the next
`poll --once` gives every message exactly one outcome.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from sqlalchemy import ColumnElement, Engine, Select, create_engine, func, select, text
from sqlalchemy.exc import OperationalError

from daemon.models import IntakeRecord, Message, OutboxMail, Quarantined, Ticket
from tests import messages
from tests.e2e.conftest import REPO, Run
from tests.servers.dovecot import Dovecot

MAILS = 36


def in_batch_transaction(engine: Engine) -> Callable[[], bool]:
    """A probe: is another process inside a write transaction right now?"""
    if engine.dialect.name == "sqlite":
        def busy() -> bool:
            with engine.connect() as conn:
                try:
                    conn.exec_driver_sql("BEGIN IMMEDIATE")
                except OperationalError:
                    return True
                conn.exec_driver_sql("ROLLBACK")
                return False
        return busy

    def locked() -> bool:
        with engine.connect() as conn:
            return bool(conn.execute(text(
                "SELECT count(*) FROM pg_locks l JOIN pg_class c ON c.oid = l.relation "
                "WHERE c.relname = 'intake_log' AND l.mode = 'RowExclusiveLock' "
                "AND c.relnamespace = (SELECT oid FROM pg_namespace "
                "WHERE nspname = current_schema()) AND l.pid <> pg_backend_pid()")).scalar())
    return locked


def test_sigkill_inside_a_batch_transaction_then_restart_gives_one_outcome_each(
        ticketd: Run, site: Path, imap: Dovecot, database_url: str) -> None:
    with (site / "config.toml").open("a", encoding="utf-8") as fh:
        fh.write(f'[imap]\nhost = "127.0.0.1"\nport = {imap.port}\nsecurity = "none"\n'
                 'username = "support"\npassword_env = "T_IMAP_PW"\nbatch_size = 6\n')
    ids = []
    for n in range(MAILS):
        if n == 7:
            imap.append("support", messages.GARBAGE)   # a poison message in a batch
            continue
        body = "日志如下：\n" + f"第 {n} 行：连接超时，重试中。\n" * 400
        if n % 5 == 4:
            imap.append("support", messages.auto_reply(sender=f"u{n}@corp.example"))
        else:
            ids.append(f"<kill.{n}@client.example>")
            imap.append("support", messages.mail(sender=f"u{n}@corp.example",
                                                 subject=f"问题 {n}", body=body,
                                                 message_id=ids[-1]))
    assert ticketd("db", "upgrade").returncode == 0
    probe_engine = create_engine(database_url, connect_args={"timeout": 0}
                                 if database_url.startswith("sqlite") else {})
    probe = in_batch_transaction(probe_engine)
    env = {**os.environ, "PYTHONPATH": str(REPO), "T_IMAP_PW": "support-pass"}
    proc = subprocess.Popen([sys.executable, "-m", "daemon", "poll", "--once"], cwd=site,
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        while proc.poll() is None and time.monotonic() < deadline:
            if probe():
                proc.send_signal(signal.SIGKILL)
                break
            time.sleep(0.002)   # polling for a state, not waiting for time
    finally:
        proc.kill()
        proc.wait(30)
    assert proc.returncode == -signal.SIGKILL, "poll --once ended before it could be killed"
    if not database_url.startswith("sqlite"):
        # Killed with a batch uncommitted: that batch is still in the folder.
        assert imap.folder_uids("support", "INBOX") != []

    res = ticketd("poll", "--once", env={"T_IMAP_PW": "support-pass"})
    assert res.returncode == 0, res.stderr
    assert imap.folder_uids("support", "INBOX") == []
    assert len(imap.folder_uids("support", "Processed")) == MAILS - 1
    assert len(imap.folder_uids("support", "Quarantine")) == 1
    engine = create_engine(database_url)
    try:
        with engine.connect() as conn:
            def count(model: type, *where: ColumnElement[bool]) -> int:
                query: Select[int] = select(func.count()).select_from(model).where(*where)
                return int(conn.execute(query).scalar() or 0)

            roots = ids
            # One outcome per message: one intake record each (the auto-replies share no
            # Message-ID with anything, the poison one is its own), one ticket per request.
            assert count(IntakeRecord) == MAILS
            assert count(Quarantined) == 1
            assert count(Ticket) == len(roots)
            assert count(Message, Message.direction == "in") == len(roots)
            for message_id in roots:
                assert count(IntakeRecord, IntakeRecord.message_id ==
                             message_id.strip("<>")) == 1
            # One mail to each requester (acceptance or need_info), none twice.
            assert count(OutboxMail) == len(roots)
            assert conn.scalar(select(func.count(OutboxMail.ticket_id.distinct()))) == len(roots)
    finally:
        engine.dispose()
        probe_engine.dispose()
