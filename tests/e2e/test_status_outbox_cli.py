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
