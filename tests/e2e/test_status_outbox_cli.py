"""`ticketd status` and `ticketd outbox list|flush` as subprocesses, on SQLite and PostgreSQL.

Every command runs where it runs in production (STYLE 20): ``status`` once failed on every
PostgreSQL database, even an empty one, with a GROUP BY that SQLite accepts.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests import messages
from tests.e2e.conftest import Run
from tests.servers.dovecot import free_port

pytestmark = pytest.mark.e2e


def test_status_on_an_empty_database(ticketd: Run) -> None:
    text = ticketd("status")
    assert text.returncode == 0, text.stderr
    assert "outbox: 0 queued, 0 retrying, 0 sending, 0 failed" in text.stdout
    assert "open tickets: 0" in text.stdout
    as_json = ticketd("status", "--json")
    assert as_json.returncode == 0, as_json.stderr
    data = json.loads(as_json.stdout)
    assert data["outbox"] == {"queued": 0, "retrying": 0, "held": 0, "sending": 0, "failed": 0,
                              "sent": 0}
    assert data["problems"] == []
    assert data["tickets"]["open"] == 0 and data["sla"]["breaches"] == 0
    assert data["mailboxes"] == []


def test_status_and_outbox_after_ingest(ticketd: Run, site: Path) -> None:
    mails = []
    for n in range(2):
        path = site / f"m{n}.eml"
        path.write_bytes(messages.mail(subject=f"打印机 {n}", sender=f"u{n}@corp.example",
                                       message_id=f"<status.{n}@client.example>"))
        mails.append(str(path))
    # ingest sends at once; `outbox flush` then finds nothing more to send.
    ingested = ticketd("ingest", *mails)
    assert ingested.returncode == 0, ingested.stderr
    flushed = ticketd("outbox", "flush")
    assert (flushed.returncode, flushed.stdout.strip()) == (0, "0 sent, 0 to retry, 0 failed")

    listed = ticketd("outbox", "list")
    assert (listed.returncode, listed.stdout.strip()) == (0, "outbox is empty")
    every = ticketd("outbox", "list", "--all", "--json")
    assert every.returncode == 0, every.stderr
    rows = json.loads(every.stdout)
    assert [r["status"] for r in rows] == ["sent", "sent"]
    assert {r["kind"] for r in rows} == {"acceptance"}

    data = json.loads(ticketd("status", "--json").stdout)
    assert data["outbox"]["sent"] == 2 and data["outbox"]["queued"] == 0
    assert data["tickets"]["open"] == 2
    assert sum(data["tickets"]["by_priority"].values()) == 2
    text = ticketd("status")
    assert text.returncode == 0, text.stderr
    assert "open tickets: 2" in text.stdout


def test_mail_held_by_an_unreachable_server_shows_in_status(ticketd: Run, site: Path) -> None:
    port = free_port()  # nothing listens there: connection refused
    config = site / "config.toml"
    config.write_text(config.read_text() + f'[smtp]\nbackend = "smtp"\nhost = "127.0.0.1"\n'
                      f'port = {port}\nsecurity = "none"\n', encoding="utf-8")
    mail = site / "m.eml"
    mail.write_bytes(messages.mail(message_id="<held@client.example>"))
    ingested = ticketd("ingest", str(mail))
    assert ingested.returncode == 0, ingested.stderr
    assert "outbox: 1 held" in ingested.stderr

    flushed = ticketd("outbox", "flush")
    assert flushed.returncode == 1
    assert flushed.stdout.strip() == "0 sent, 0 to retry, 0 failed, 1 held"
    [line] = flushed.stderr.strip().splitlines()  # the outage, once
    assert f"WARNING ticketd.outbox: smtp 127.0.0.1:{port}: cannot connect" in line
    assert line.endswith("1 mail(s) held, no attempt counted; trying again later")

    data = json.loads(ticketd("status", "--json").stdout)
    assert data["outbox"]["held"] == 1 and data["outbox"]["retrying"] == 0
    [problem] = data["problems"]
    assert problem.startswith(f"outbox: 1 mail(s) held: smtp 127.0.0.1:{port}: cannot connect")
    text = ticketd("status").stdout
    assert text.startswith("PROBLEM: outbox: 1 mail(s) held")
    assert "outbox: 0 queued, 0 retrying, 1 held," in text
    listed = json.loads(ticketd("outbox", "list", "--json").stdout)
    assert [(r["status"], r["attempts"]) for r in listed] == [("queued", 0)]
