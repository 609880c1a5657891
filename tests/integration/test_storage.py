"""Storage on every configured database: migrations, atomic ticket numbers, the event log."""

from __future__ import annotations

import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import select

from daemon import db as dbmod
from daemon import ticket_numbers, tickets
from daemon.app import App
from daemon.models import Event, TicketCounter

EXPECTED_TABLES = {"tickets", "messages", "attachments", "events", "intake_log", "quarantine",
                   "mailbox_cursors", "ticket_counters", "outbox", "leases", "alembic_version"}


def test_migrations_run_up_from_empty_and_are_idempotent(database_url: str, tmp_path: Path) -> None:
    database = dbmod.connect(database_url, tmp_path)
    assert dbmod.current_revision(database) is None
    dbmod.upgrade(database)
    assert dbmod.current_revision(database) == dbmod.head_revision()
    assert set(dbmod.table_names(database)) >= EXPECTED_TABLES
    dbmod.upgrade(database)  # second run changes nothing
    assert dbmod.current_revision(database) == dbmod.head_revision()
    database.dispose()


def test_numbers_follow_the_local_day(app: App) -> None:
    fmt = app.numbers
    day1 = datetime(2023, 10, 27, 1, 0, tzinfo=UTC)
    with app.db.transaction() as s:
        got = [ticket_numbers.allocate(s, fmt, day1) for _ in range(3)]
        nxt = ticket_numbers.allocate(s, fmt, day1 + timedelta(days=1))
    assert got == ["TS20231027000001", "TS20231027000002", "TS20231027000003"]
    assert nxt == "TS20231028000001"


def test_rolled_back_allocation_gives_its_serial_back(app: App) -> None:
    at = datetime(2023, 10, 27, 1, 0, tzinfo=UTC)
    try:
        with app.db.transaction() as s:
            ticket_numbers.allocate(s, app.numbers, at)
            raise RuntimeError("intake failed")
    except RuntimeError:
        pass
    with app.db.transaction() as s:
        assert ticket_numbers.allocate(s, app.numbers, at) == "TS20231027000001"


def test_serial_widens_past_999999(app: App) -> None:
    at = datetime(2023, 10, 27, 1, 0, tzinfo=UTC)
    with app.db.transaction() as s:
        s.add(TicketCounter(prefix="TS", day="20231027", last_serial=999999))
    with app.db.transaction() as s:
        assert ticket_numbers.allocate(s, app.numbers, at) == "TS202310271000000"


WORKER = """
import sys
from datetime import UTC, datetime
from pathlib import Path
from daemon import db, ticket_numbers
url, count = sys.argv[1], int(sys.argv[2])
database = db.connect(url, Path("."))
fmt = ticket_numbers.NumberFormat("TS", 6, "Asia/Shanghai")
at = datetime(2023, 10, 27, 1, 0, tzinfo=UTC)
out = []
for _ in range(count):
    with database.transaction() as s:
        out.append(ticket_numbers.allocate(s, fmt, at))
print("\\n".join(out))
"""


def test_eight_processes_get_4000_distinct_numbers(app: App, database_url: str) -> None:
    procs = [
        subprocess.Popen([sys.executable, "-c", WORKER, database_url, "500"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for _ in range(8)
    ]
    numbers: list[str] = []
    for proc in procs:
        out, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err
        numbers.extend(out.split())
    assert len(numbers) == 4000
    assert len(set(numbers)) == 4000
    serials = sorted(int(n[10:]) for n in numbers)
    assert serials == list(range(1, 4001))


def test_every_change_leaves_an_event_with_before_and_after(app: App) -> None:
    at = app.clock.now()
    with app.db.transaction() as s:
        t = tickets.create(s, number="TS20231027000001", subject="打印机故障",
                           requester_name="张三", requester_email="Zhang@Corp.example", at=at,
                           cc=["boss@corp.example", "zhang@corp.example"], language="zh")
        tickets.change(s, t, at=at + timedelta(minutes=5), actor="ops@corp.example",
                       action="priority", priority="P1")
        assert tickets.change(s, t, at=at, actor="x", action="priority", priority="P1") is None
    with app.db.transaction() as s:
        t = tickets.get(s, "ts20231027000001")
        assert t.requester_email == "zhang@corp.example"
        assert t.cc == ["boss@corp.example"]
        assert tickets.participants(t) == {"zhang@corp.example", "boss@corp.example"}
        events = list(s.scalars(select(Event).order_by(Event.id)))
        assert [(e.action, e.actor) for e in events] == [
            ("created", "zhang@corp.example"), ("priority", "ops@corp.example")]
        assert events[1].before == {"priority": "P2"} and events[1].after == {"priority": "P1"}
        data = tickets.to_dict(t, zone=app.config.support.zone)
        assert data["created_at"] == "2023-10-27T09:30:00+08:00"
        assert data["updated_at"] == "2023-10-27T09:35:00+08:00"
        assert data["events"][1]["at"] == "2023-10-27T09:35:00+08:00"
