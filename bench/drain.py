"""How fast does `ticketd poll --once` drain a backlog, next to the bare fetch-and-parse floor?

Starts a throwaway Dovecot (the test server), generates the corpus (:mod:`bench.corpus`) and
then, ``--rounds`` times, alternately:

* **floor**: imapclient ``UID FETCH BODY.PEEK[]`` in batches of 50 + ``mailparser`` parse of
  each message, nothing else (what any IMAP-to-ticket tool must at least do);
* **ticketd**: ``python -m daemon poll --once`` as a subprocess on a fresh database (SQLite file
  or a new PostgreSQL schema) with the file mail backend: every root a ticket, every
  acceptance composed and written out as .eml before the command exits.

Each run gets its own mailbox holding the whole corpus (appended before the clock starts), so
both see the same bytes from the same server. Alternating runs in one process keeps the ratio
honest on a machine that others load: the absolute numbers move, the ratio much less.

    .venv/bin/python -m bench.drain --mails 1000 --rounds 3 --db sqlite
    TICKETD_BENCH_PG=postgresql+psycopg://postgres@127.0.0.1:5432/test \\
        .venv/bin/python -m bench.drain --mails 1000 --rounds 3 --db postgresql
    .venv/bin/python -m bench.drain --mails 300 --rounds 1 --profile /tmp/drain.html

``--baseline DIR`` runs a second checkout of ticketd in every round too (before and after in
one run: ``git archive <commit> | tar -x -C DIR``). ``--profile FILE`` runs the ticketd side
under pyinstrument (``pip install -e '.[bench]'``) and writes its report (HTML, or text for a
``.txt`` name). ``--big N`` puts N attachments of 10-25 MB into the corpus; the peak RSS of
the ticketd process is printed for every run.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import quote

import mailparser
from imapclient import IMAPClient
from sqlalchemy import create_engine, text

from bench.corpus import generate
from tests.servers.dovecot import Dovecot

REPO = Path(__file__).resolve().parents[1]
# Runs `python -m daemon ARGS` and writes its peak RSS (VmHWM, KiB) and the CPU seconds of
# its own (main) process, workers excluded, to the file named first: the rusage of a forked
# child would count the pages it shared with this big process.
PEAK = """
import atexit, resource, runpy, sys
out = sys.argv.pop(1)
def peak():
    with open("/proc/self/status") as status:
        kib = next(line.split()[1] for line in status if line.startswith("VmHWM:"))
    own = resource.getrusage(resource.RUSAGE_SELF)
    with open(out, "w") as fh:
        fh.write(f"{kib} {own.ru_utime + own.ru_stime}")
atexit.register(peak)
phases_out = os.environ.get("BENCH_PHASES")
if phases_out:  # wall and CPU seconds of the main thread's phases (--phases)
    import importlib, time
    spent = {}
    def timed(owner, name, label):
        inner = getattr(owner, name)
        def wrapper(*args, **kwargs):
            wall, cpu = time.perf_counter(), time.thread_time()
            try:
                return inner(*args, **kwargs)
            finally:
                got = spent.setdefault(label, [0.0, 0.0, 0])
                got[0] += time.perf_counter() - wall
                got[1] += time.thread_time() - cpu
                got[2] += 1
        setattr(owner, name, wrapper)
    started = time.perf_counter()
    for path, label in PHASES:
        module, _, attr = path.partition(":")
        owner = importlib.import_module(module)
        *outer, name = attr.split(".")
        for part in outer:
            owner = getattr(owner, part)
        timed(owner, name, label)
    spent["imports"] = [time.perf_counter() - started, time.thread_time(), 1]
    def report():
        total = time.perf_counter() - started
        with open(phases_out, "w") as fh:
            for label, (wall, cpu, count) in spent.items():
                fh.write(f"{label:<28} {wall:7.2f} s wall {cpu:7.2f} s CPU  x{count}\\n")
            fh.write(f"{'whole run (after imports)':<28} {total:7.2f} s\\n")
    atexit.register(report)
sys.argv[0] = "daemon"
runpy.run_module("daemon", run_name="__main__", alter_sys=True)
"""
PEAK = PEAK.replace("import atexit, resource, runpy, sys",
                    "import atexit, os, resource, runpy, sys\nPHASES = " + repr([
                        ("daemon.intake.imap:_batches", "IMAP sizes (batch plan)"),
                        ("daemon.intake.imap:_fetched", "IMAP fetch"),
                        ("daemon.intake.parsing:ParseAhead.submit", "hand to worker / parse"),
                        ("daemon.intake.parsing:Pending.result", "wait for parsed batch"),
                        ("daemon.intake.pipeline:Intake.ingest_batch", "intake (write batch)"),
                        ("sqlalchemy.orm.session:SessionTransaction.commit",
                         "  of which: commits"),
                        ("daemon.blobs:BlobStore.put", "  of which: attachment files"),
                        ("daemon.intake.imap:_settle", "IMAP move"),
                        ("daemon.replies.outbox:Prewriter.after_batch", "prewriter"),
                        ("daemon.cli:_flush_outbox", "final flush (send)"),
                    ]))
PASSWORD = "bench-pass"
BATCH = 50


def floor(imap: Dovecot, user: str, untraced: bool = False) -> int:
    """Fetch and parse every message of the user's INBOX; the number parsed.

    ``untraced``: with imaplib's protocol trace off, as ticketd fetches (imapclient turns it
    on, and imaplib then formats every response for a logger that drops it)."""
    client = IMAPClient(imap.host, port=imap.port, ssl=False, timeout=60)
    if untraced:
        client._imap.debug = 0
    client.login(user, PASSWORD)
    try:
        client.select_folder("INBOX", readonly=True)
        uids = sorted(client.search("ALL"))
        done = 0
        for start in range(0, len(uids), BATCH):
            fetched = client.fetch(uids[start:start + BATCH], ["BODY.PEEK[]"])
            for data in fetched.values():
                mailparser.parse_from_bytes(bytes(data[b"BODY[]"]))
                done += 1
        return done
    finally:
        client.logout()


def fill(imap: Dovecot, user: str, corpus: Iterable[bytes]) -> None:
    with imap.client(user) as client:
        for raw in corpus:
            client.append("INBOX", raw)


@contextmanager
def database(kind: str, folder: Path) -> Iterator[str]:
    """A fresh, empty database URL for one ticketd run."""
    if kind == "sqlite":
        yield f"sqlite:///{folder / 'tickets.db'}"
        return
    base = os.environ.get("TICKETD_BENCH_PG") or os.environ.get("TICKETD_TEST_DATABASE_URL")
    if not base:
        sys.exit("--db postgresql: set TICKETD_BENCH_PG to a PostgreSQL URL")
    schema = f"bench_{uuid.uuid4().hex[:10]}"
    admin = create_engine(base)
    with admin.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    try:
        sep = "&" if "?" in base else "?"
        yield f"{base}{sep}options={quote(f'-csearch_path={schema}')}"
    finally:
        with admin.begin() as conn:
            conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


class TreeCPU:
    """CPU seconds of each process under ``pid`` (the parse worker, the composing worker,
    the forkserver...), read from /proc every 20 ms while it runs: which process is busy,
    which core is the bottleneck. A process's last reading stands for its total (up to 20 ms
    of it may be missed)."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.seen: dict[int, tuple[str, float]] = {}
        self._stop = threading.Event()
        self._tick = os.sysconf("SC_CLK_TCK")
        self._thread = threading.Thread(target=self._watch, daemon=True)
        self._thread.start()

    def _children(self) -> dict[int, list[int]]:
        kids: dict[int, list[int]] = {}
        for entry in os.listdir("/proc"):
            if entry.isdigit():
                try:
                    stat = Path(f"/proc/{entry}/stat").read_text()
                except OSError:
                    continue
                parent = int(stat.rpartition(")")[2].split()[1])
                kids.setdefault(parent, []).append(int(entry))
        return kids

    def _read(self, pid: int) -> None:
        try:
            stat = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
            command = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            return
        cpu = (int(stat[11]) + int(stat[12])) / self._tick
        known = self.seen.get(pid)
        if known is not None:  # an exited process's command line reads empty
            self.seen[pid] = (known[0], cpu)
            return
        parent = int(stat[1])
        if "forkserver import main" in command and self.seen.get(parent, ("",))[0] == \
                "forkserver":
            role = "composing worker"
        elif "forkserver import main" in command:
            role = "forkserver"
        elif "resource_tracker" in command:
            role = "resource tracker"
        elif "spawn_main" in command or "--multiprocessing-fork" in command:
            role = "parse worker"
        elif pid == self.pid:
            role = "main"
        else:
            role = command[:40]
        self.seen[pid] = (role, cpu)

    def _watch(self) -> None:
        while not self._stop.wait(0.02):
            kids = self._children()
            todo = [self.pid]
            while todo:
                pid = todo.pop()
                self._read(pid)
                todo.extend(kids.get(pid, []))

    def report(self) -> str:
        self._stop.set()
        self._thread.join()
        return ", ".join(f"{role} {cpu:.2f}" for role, cpu in
                         sorted(self.seen.values(), key=lambda rc: -rc[1]) if cpu >= 0.05)


def ticketd(imap: Dovecot, user: str, db_kind: str, profile: Path | None,
            repo: Path = REPO, batch_size: int | None = None, phases: bool = False
            ) -> tuple[float, float, int, float, float]:
    """(seconds, peak RSS MiB, acceptance mails written, CPU seconds, main process's CPU
    seconds) of one `poll --once`."""
    with tempfile.TemporaryDirectory(prefix="drain-") as tmp, \
            database(db_kind, Path(tmp)) as url:
        folder = Path(tmp)
        config = folder / "config.toml"
        config.write_text(
            '[support]\naddress = "support@corp.example"\nname = "Corp Support"\n'
            f'[database]\nurl = "{url}"\n'
            f'[imap]\nhost = "{imap.host}"\nport = {imap.port}\nsecurity = "none"\n'
            f'username = "{user}"\npassword_env = "BENCH_IMAP_PW"\n'
            + (f"batch_size = {batch_size}\n" if batch_size else "") +
            f'[smtp]\nbackend = "file"\nfile_dir = "{folder / "out"}"\n'
            '[[teams]]\nname = "ops"\nlabel_zh = "运维组"\nlabel_en = "Operations"\n'
            'members = ["ops1@corp.example", "ops2@corp.example"]\n'
            '[[teams]]\nname = "dev"\nlabel_zh = "开发组"\nlabel_en = "Development"\n'
            'members = ["dev1@corp.example"]\n'
            '[[teams]]\nname = "admins"\nlabel_zh = "系统管理员组"\nlabel_en = "Administrators"\n'
            'members = ["adm1@corp.example"]\n', encoding="utf-8")
        # Schema creation is setup, not drain: run it before the clock starts.
        env = {**os.environ, "PYTHONPATH": str(repo), "BENCH_IMAP_PW": PASSWORD}
        if phases:
            env["BENCH_PHASES"] = str(folder / "phases")
        # cwd: `python -c` and `-m` put the working directory first on sys.path, so run each
        # contender from its own checkout (from this one, a --baseline ran this code).
        subprocess.run([sys.executable, "-m", "daemon", "--config", str(config), "db",
                        "upgrade"], env=env, check=True, capture_output=True, cwd=repo)
        peak = folder / "peak"
        command = [sys.executable, "-c", PEAK, str(peak), "--config", str(config), "poll",
                   "--once"]
        if profile is not None and profile.suffix == ".folded":
            # where the wall time goes, waits included (py-spy: pip install py-spy)
            command = [str(Path(sys.executable).with_name("py-spy")), "record", "--idle",
                       "--subprocesses", "--rate", "250", "--format", "raw", "-o",
                       str(profile), "--", sys.executable, "-m", "daemon", *command[4:]]
        elif profile is not None:
            renderer = "text" if profile.suffix == ".txt" else "html"
            command = [sys.executable, "-m", "pyinstrument", "-r", renderer, "-o", str(profile),
                       "-m", "daemon", *command[4:]]
        started = time.monotonic()
        proc = subprocess.Popen(command, env=env, cwd=repo, stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE)
        watch = TreeCPU(proc.pid) if phases else None
        assert proc.stderr is not None
        err = proc.stderr.read()
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
        elapsed = time.monotonic() - started
        cpu = usage.ru_utime + usage.ru_stime
        if proc.returncode != 0:
            sys.exit(f"ticketd poll --once failed ({proc.returncode}):\n"
                     f"{err.decode(errors='replace')[-3000:]}")
        written = len(list((folder / "out").glob("*.eml")))
        if phases and (folder / "phases").exists():
            print((folder / "phases").read_text(), end="", flush=True)
        if watch is not None:
            print(f"CPU by process (s): {watch.report()}", flush=True)
        kib, main_cpu = peak.read_text().split() if peak.exists() else ("nan", "nan")
        return elapsed, int(kib) / 1024 if kib != "nan" else float("nan"), written, cpu, \
            float(main_cpu)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mails", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--db", choices=("sqlite", "postgresql"), default="sqlite")
    parser.add_argument("--big", type=int, default=0, help="attachments of 10-25 MB")
    parser.add_argument("--batch-size", type=int, help="[imap] batch_size (default: ticketd's)")
    parser.add_argument("--profile", type=Path,
                        help="pyinstrument report of ticketd (.html, .txt), or py-spy "
                             "collapsed stacks with waits (.folded)")
    parser.add_argument("--phases", action="store_true",
                        help="print where ticketd's main thread spends its wall and CPU time")
    parser.add_argument("--baseline", type=Path,
                        help="another ticketd checkout (e.g. `git archive` of an older commit) "
                             "run in every round too, between the floor and this one")
    args = parser.parse_args()

    def corpus() -> Iterator[bytes]:   # generated again for each mailbox, never all in memory
        return generate(args.mails, big=args.big)

    megabytes = sum(len(raw) for raw in corpus()) / 1e6
    contenders = ([("baseline", args.baseline.resolve())] if args.baseline else []) + \
        [("ticketd", REPO)]
    # An installed package has its bytecode compiled; this checkout may not (with
    # PYTHONDONTWRITEBYTECODE set, every start would compile every module again)
    for _name, repo in contenders:
        subprocess.run([sys.executable, "-m", "compileall", "-q", str(repo / "daemon")],
                       check=True, capture_output=True)
    per_round = 2 + len(contenders)
    users = {f"run{n}": PASSWORD for n in range(per_round * args.rounds)}
    print(f"corpus: {args.mails} mails, {megabytes:.1f} MB; database: {args.db}; "
          f"{os.cpu_count()} cores, load {os.getloadavg()[0]:.1f}", flush=True)
    floors: list[float] = []
    untraced: list[float] = []   # the floor without imaplib's protocol trace
    drains: dict[str, list[float]] = {name: [] for name, _ in contenders}
    # CPU seconds of the floor (this process) and of each poll --once (its own rusage): the
    # ratio of these moves less than the wall-clock ratio when other work loads the machine
    floor_cpus: list[float] = []
    cpus: dict[str, list[float]] = {name: [] for name, _ in contenders}
    with Dovecot(users) as imap:
        for n in range(args.rounds):
            boxes = [f"run{per_round * n + k}" for k in range(per_round)]
            for box in boxes:
                fill(imap, box, corpus())
            started, cpu_started = time.monotonic(), time.process_time()
            parsed = floor(imap, boxes[0])
            floors.append(time.monotonic() - started)
            floor_cpu = time.process_time() - cpu_started
            floor_cpus.append(floor_cpu)
            assert parsed == args.mails, parsed
            started = time.monotonic()
            floor(imap, boxes[1], untraced=True)
            untraced.append(time.monotonic() - started)
            line = [f"round {n + 1}: floor {floors[-1]:6.2f} s "
                    f"({args.mails / floors[-1]:4.0f} msg/s, CPU {floor_cpu:5.2f} s; "
                    f"untraced {untraced[-1]:5.2f} s)"]
            for (name, repo), box in zip(contenders, boxes[2:], strict=True):
                seconds, rss, written, cpu, main_cpu = ticketd(
                    imap, box, args.db, args.profile, repo, args.batch_size,
                    args.phases and name == "ticketd")
                drains[name].append(seconds)
                cpus[name].append(cpu)
                left = len(imap.folder_uids(box))
                line.append(f"{name} {seconds:6.2f} s ({args.mails / seconds:4.0f} msg/s, "
                            f"ratio {floors[-1] / seconds:.2f}, CPU {cpu:5.2f} s "
                            f"(main process {main_cpu:5.2f} s), "
                            f"CPU ratio {floor_cpu / cpu:.2f}, peak RSS {rss:.0f} MiB, "
                            f"{written} mails written, {left} left)")
            print(" | ".join(line), flush=True)
    for name, times in drains.items():
        ratios = [f / d for f, d in zip(floors, times, strict=True)]
        cpu_ratios = [f / c for f, c in zip(floor_cpus, cpus[name], strict=True)]
        print(f"median {name}: floor {args.mails / statistics.median(floors):.0f} msg/s, "
              f"{name} {args.mails / statistics.median(times):.0f} msg/s, ratio "
              f"{statistics.median(ratios):.2f} (each round's floor / its time); CPU "
              f"{statistics.median(cpus[name]):.2f} s, CPU ratio "
              f"{statistics.median(cpu_ratios):.2f}; ratio to the untraced floor "
              f"{statistics.median(u / d for u, d in zip(untraced, times, strict=True)):.2f}")
    print(f"bench process peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f}"
          " MiB")


if __name__ == "__main__":
    main()
