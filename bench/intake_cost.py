"""CPU and SQL statements per message of intake alone (no IMAP, no sending), in one process.

    .venv/bin/python -m bench.intake_cost --mails 500
    TICKETD_BENCH_PG=postgresql+psycopg://postgres@127.0.0.1:5432/test \\
        .venv/bin/python -m bench.intake_cost --mails 500 --db postgresql

The drain corpus (:mod:`bench.corpus`) and the drain's three teams, ingested by
``Intake.ingest_batch`` in batches of 50 as ``poll --once`` does, with the outgoing mail
queued but not sent. Prints the parse and intake CPU per message (``time.process_time``) and
the statements intake sent per message (an SQLAlchemy ``before_cursor_execute`` counter):
the two numbers a change to intake's hot path should move, measured apart from the noise of
the IMAP server and of the other processes on the machine.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

from sqlalchemy import event
from sqlalchemy.orm import Session

from bench.corpus import generate
from bench.drain import database
from daemon.app import App
from daemon.config import Config, from_mapping
from daemon.intake.pipeline import Intake
from daemon.intake.prepare import parse_or_reason
from daemon.intake.sources import RawMail
from daemon.replies.notify import Notify

TEAMS = [
    {"name": "ops", "label_zh": "运维组", "label_en": "Operations",
     "members": ["ops1@corp.example", "ops2@corp.example"]},
    {"name": "dev", "label_zh": "开发组", "label_en": "Development",
     "members": ["dev1@corp.example"]},
    {"name": "admins", "label_zh": "系统管理员组", "label_en": "Administrators",
     "members": ["adm1@corp.example"]},
]
BATCH = 50


def bench_config(url: str, base: Path) -> Config:
    """The drain's site: the support address, the three teams, mail written to files."""
    return from_mapping({"support": {"address": "support@corp.example",
                                     "name": "Corp Support"},
                         "database": {"url": url}, "teams": TEAMS,
                         "smtp": {"backend": "file", "file_dir": str(base / "out")}},
                        where="bench", base=base)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mails", type=int, default=500)
    parser.add_argument("--db", choices=("sqlite", "postgresql"), default="sqlite")
    parser.add_argument("--kinds", action="store_true", help="statements by their first words")
    args = parser.parse_args()
    raws = [RawMail(raw, f"bench:{n}") for n, raw in enumerate(generate(args.mails))]
    with tempfile.TemporaryDirectory(prefix="cost-") as tmp, \
            database(args.db, Path(tmp)) as url:
        app = App(bench_config(url, Path(tmp)))
        app.ready_db()
        intake = Intake(app, notifier=Notify(app))
        kinds: Counter[str] = Counter()

        def count(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
            words = statement.split()[:3]
            kinds[" ".join(w.rstrip("0123456789") for w in words)] += 1

        event.listen(app.db.engine, "before_cursor_execute", count)
        flushes: list[int] = []

        def flushed(*_args: Any) -> None:
            flushes.append(1)

        event.listen(Session, "after_flush", flushed)
        parse_cpu = 0.0
        started = time.process_time()
        for start in range(0, len(raws), BATCH):
            batch = raws[start:start + BATCH]
            before = time.process_time()
            for raw in batch:
                parse_or_reason(raw)
            parse_cpu += time.process_time() - before
            intake.ingest_batch(batch)
        total = time.process_time() - started
        statements = sum(kinds.values())
        n = len(raws)
        print(f"{args.db}: {n} mails; parse {parse_cpu / n * 1000:.2f} ms/msg, intake "
              f"{(total - 2 * parse_cpu) / n * 1000:.2f} ms/msg (CPU, parse excluded); "
              f"{statements / n:.1f} statements/msg, {len(flushes) / n:.1f} flushes/msg")
        if args.kinds:
            for kind, k in kinds.most_common(25):
                print(f"{k / n:7.2f}  {kind}")
        app.close()


if __name__ == "__main__":
    main()
