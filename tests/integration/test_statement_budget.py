"""How many SQL statements intake sends per message, bounded so that a change that adds a
query per message fails here instead of slowing the backlog drain silently (SQLite and
PostgreSQL). Counted with an SQLAlchemy ``before_cursor_execute`` listener over two batches:
ten new tickets from ten senders (classified, routed round robin, acceptance and assigned mail
queued), then their requesters' ten replies."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event

from daemon.app import App
from daemon.clock import FixedClock
from daemon.config import from_mapping
from daemon.intake.pipeline import Intake
from daemon.intake.sources import RawMail
from daemon.replies.notify import Notify
from tests.messages import mail

# Statements per message (savepoints included) when the bounds were set: new tickets 3.1 on
# SQLite / 3.4 on PostgreSQL, replies 1.8 / 1.7: a batch is written together, each table's
# new rows in one executemany (ids handed out before the flush, daemon.row_ids), the
# threader's lookups answered for the batch; what is left per new ticket is its number (one
# upsert on the day's counter). Before: 13.7 / 10.6 and 9.6 / 9.5 (one flush per message);
# before that 17.6 / 13.5 and 11.4 / 9.3, and 23.3 / 23.2 and 14.3 / 12.4 before the batch
# answers, the single dedup query, the kept ticket and rotation row and the deferred flush.
BOUNDS = {"sqlite": (4, 2), "postgresql": (4, 2)}   # (new ticket, reply)


@pytest.fixture
def routed(tmp_path: Path, database_url: str, clock: FixedClock) -> Iterator[App]:
    cfg = from_mapping({
        "support": {"address": "support@corp.example", "name": "Corp Support"},
        "database": {"url": database_url},
        "smtp": {"backend": "file", "file_dir": str(tmp_path / "outbox")},
        "attachments": {"dir": str(tmp_path / "attachments")},
        "teams": [
        {"name": "ops", "label_zh": "运维组", "label_en": "Operations",
         "members": ["ops1@corp.example", "ops2@corp.example"]},
        {"name": "dev", "label_zh": "开发组", "label_en": "Development",
         "members": ["dev1@corp.example"]},
        {"name": "admins", "label_zh": "系统管理员组", "label_en": "Administrators",
         "members": ["adm1@corp.example"]}]}, where="test.toml", base=tmp_path)
    application = App(cfg, clock=clock)
    application.ready_db()
    yield application
    application.close()


def _count(app: App) -> tuple[Counter[str], Any]:
    seen: Counter[str] = Counter()

    def count(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        seen[" ".join(w.rstrip("0123456789") for w in statement.split()[:4])] += 1

    event.listen(app.db.engine, "before_cursor_execute", count)
    return seen, count


def test_statements_per_message_stay_bounded(routed: App) -> None:
    intake = Intake(routed, notifier=Notify(routed))
    roots = [mail(subject=f"VPN 无法连接 {n}", sender=f"user{n}@corp.example",
                  message_id=f"<root-{n}@client.example>") for n in range(10)]
    seen, listener = _count(routed)
    results = intake.ingest_batch([RawMail(r, f"root:{n}") for n, r in enumerate(roots)])
    new_total = sum(seen.values())
    new_kinds = dict(seen)
    seen.clear()
    replies = [mail(subject=f"Re: VPN 无法连接 {n}", sender=f"user{n}@corp.example",
                    body="补充：工号 A1234，分机 6631。", in_reply_to=f"<root-{n}@client.example>",
                    references=f"<root-{n}@client.example>") for n in range(10)]
    appended = intake.ingest_batch([RawMail(r, f"reply:{n}") for n, r in enumerate(replies)])
    event.remove(routed.db.engine, "before_cursor_execute", listener)

    assert [r.action for r in results] == ["created"] * 10
    assert [r.action for r in appended] == ["appended"] * 10
    new_bound, reply_bound = BOUNDS[routed.db.engine.dialect.name]
    assert new_total / 10 <= new_bound, new_kinds
    assert sum(seen.values()) / 10 <= reply_bound, dict(seen)
    # a new ticket is written once, with its final values; the batch's events, tickets,
    # messages, log records in one statement each
    assert not [k for k in new_kinds if k.startswith("UPDATE tickets")], new_kinds
    for kinds in (new_kinds, seen):
        for table in ("events", "messages", "intake_log"):
            assert sum(n for k, n in kinds.items() if k.startswith(f"INSERT INTO {table}")) \
                == 1, (table, kinds)
    assert sum(n for k, n in new_kinds.items() if k.startswith("INSERT INTO tickets")) == 1
    # the per-address questions are asked once per batch, not once per message
    for kinds in (new_kinds, seen):
        assert sum(n for k, n in kinds.items() if "count(" in k or "suppressions" in k) <= 3
