"""CPU, SQL statements and commits per mail of ``outbox.flush`` on a backlog, in one process.

    .venv/bin/python -m bench.flush_cost --mails 500
    TICKETD_BENCH_PG=postgresql+psycopg://postgres@127.0.0.1:5432/test \\
        .venv/bin/python -m bench.flush_cost --mails 500 --db postgresql
    .venv/bin/python -m bench.flush_cost --mails 500 --baseline main --rounds 3

The drain corpus (:mod:`bench.corpus`) is ingested by ``Intake.ingest_batch`` in batches of
50, as ``poll --once`` does, into a fresh database; the mails it queued are then written and
stored on their rows (``outbox.write_pending``: what the Prewriter does during a drain, so the
final flush mostly just sends; ``--unwritten`` leaves them to the flush) and the clock starts:
``flush`` with the file transport. Prints the flush's CPU per mail (``time.process_time``),
its wall time, and the SQL statements and commits it sent per mail.

``--baseline REV`` runs the ``daemon/replies/outbox.py`` of git revision REV too, in the same
process and alternating with this checkout's, each on its own fresh database: before and after
in one run on a noisy machine. Only that one module is taken from REV; everything it imports
is this checkout's, so REV must be one whose outbox fits today's neighbours.
"""

from __future__ import annotations

import argparse
import importlib.util
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

from sqlalchemy import event

from bench.corpus import generate
from bench.drain import database
from bench.intake_cost import BATCH, bench_config
from daemon.app import App
from daemon.intake.pipeline import Intake
from daemon.intake.sources import RawMail
from daemon.replies import outbox
from daemon.replies.notify import Notify
from daemon.replies.transports import FileTransport

REPO = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Run:
    mails: int       # mails the flush sent
    cpu: float       # seconds of CPU (this process) inside flush
    wall: float
    statements: int
    commits: int


def baseline_module(rev: str, folder: Path) -> ModuleType:
    """``daemon/replies/outbox.py`` as of git revision ``rev``, imported under another name."""
    source = subprocess.run(["git", "-C", str(REPO), "show", f"{rev}:daemon/replies/outbox.py"],
                            check=True, capture_output=True).stdout
    path = folder / "baseline_outbox.py"
    path.write_bytes(source)
    spec = importlib.util.spec_from_file_location("bench_baseline_outbox", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def one_run(raws: list[RawMail], db_kind: str, flush: Callable[..., Any],
            unwritten: bool) -> Run:
    """Queue the corpus's mails on a fresh database, then time one flush of them all."""
    with tempfile.TemporaryDirectory(prefix="flushcost-") as tmp, \
            database(db_kind, Path(tmp)) as url:
        base = Path(tmp)
        app = App(bench_config(url, base))
        try:
            app.ready_db()
            intake = Intake(app, notifier=Notify(app))
            for start in range(0, len(raws), BATCH):
                intake.ingest_batch(raws[start:start + BATCH])
            if not unwritten:
                outbox.write_pending(app)
            counts = {"statements": 0, "commits": 0}

            def statement(*_args: Any) -> None:
                counts["statements"] += 1

            def commit(*_args: Any) -> None:
                counts["commits"] += 1

            event.listen(app.db.engine, "before_cursor_execute", statement)
            event.listen(app.db.engine, "commit", commit)
            transport = FileTransport(base / "out")
            wall, cpu = time.perf_counter(), time.process_time()
            report = flush(app, transport)
            cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
            event.remove(app.db.engine, "before_cursor_execute", statement)
            event.remove(app.db.engine, "commit", commit)
            assert report.failed == 0 and report.held == 0, report
            return Run(report.sent, cpu, wall, counts["statements"], counts["commits"])
        finally:
            app.close()


def show(name: str, runs: list[Run]) -> float:
    n = runs[0].mails
    cpu = statistics.median(r.cpu for r in runs) / n * 1000
    wall = statistics.median(r.wall for r in runs) / n * 1000
    print(f"{name:>9}: {n} mails; flush CPU {cpu:.3f} ms/mail (median of {len(runs)}; runs "
          f"{', '.join(f'{r.cpu / n * 1000:.3f}' for r in runs)}), wall {wall:.3f} ms/mail, "
          f"{runs[0].statements / n:.2f} statements/mail, {runs[0].commits / n:.2f} "
          "commits/mail")
    return cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mails", type=int, default=500)
    parser.add_argument("--db", choices=("sqlite", "postgresql"), default="sqlite")
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--baseline", metavar="REV",
                        help="also run daemon/replies/outbox.py of this git revision")
    parser.add_argument("--unwritten", action="store_true",
                        help="leave the mails unwritten: the flush writes them in-process")
    args = parser.parse_args()
    raws = [RawMail(raw, f"bench:{n}") for n, raw in enumerate(generate(args.mails))]
    with tempfile.TemporaryDirectory(prefix="flushcost-rev-") as tmp:
        contenders: list[tuple[str, Callable[..., Any]]] = []
        if args.baseline:
            contenders.append(("baseline", baseline_module(args.baseline, Path(tmp)).flush))
        contenders.append(("this", outbox.flush))
        results: dict[str, list[Run]] = {name: [] for name, _ in contenders}
        for _ in range(args.rounds):
            for name, flush in contenders:
                results[name].append(one_run(raws, args.db, flush, args.unwritten))
    print(f"{args.db}, {'unwritten' if args.unwritten else 'written ahead'}:")
    cpu = {name: show(name, runs) for name, runs in results.items()}
    if "baseline" in cpu:
        print(f"CPU per mail: {cpu['this'] / cpu['baseline']:.2f} of the baseline's")


if __name__ == "__main__":
    main()
