"""`ticketd run`: the long-running daemon that polls, IDLEs, sends and sweeps for months.

This module is the lifecycle only: start, serve, reload, stop. The work is elsewhere: the
IDLE worker in :mod:`daemon.intake.idle`, polling in :mod:`daemon.intake.imap`, sending in
:mod:`daemon.replies.outbox`, the periodic site-wide jobs in :mod:`daemon.jobs`, health in
:mod:`daemon.status`.

Why it is shaped this way:

* **Threads**: an APScheduler 3 ``BackgroundScheduler`` runs one poll job per mailbox (every
  ``[imap] poll_interval`` seconds) and the sweep (:func:`daemon.jobs.sweep`, every
  ``SWEEP_INTERVAL``). Every job has ``max_instances=1`` and ``coalesce=True`` and catches its
  own errors: one log line, a failure counter, and the next run comes at its next time. One
  IDLE worker per mailbox (when the server offers IDLE) answers new mail at once; the poll
  job remains the safety net, on its own connection.
* **Sending never blocks receiving**: one sender thread flushes the outbox every
  ``FLUSH_INTERVAL`` seconds, and at once when a poll brought new mail (:meth:`on_new_mail`
  only wakes it). An IDLE worker or a poll therefore never waits on SMTP: a server that
  drops packets costs the sender one connection timeout per try, and the sender then backs off
  (up to ``OUTAGE_BACKOFF_CAP``) until the server answers again.
* **Several instances** share the work through leases (:mod:`daemon.leases`): only the holder
  of ``mailbox:<key>`` polls or IDLEs that mailbox; the outbox is claimed row by row with
  ``FOR UPDATE SKIP LOCKED``; the sweep holds ``job:sla-sweep``. An instance that dies stops
  renewing, and another takes over when the lease expires (``[imap] lease_seconds``).
* **Signals**: SIGTERM and SIGINT ask every loop to stop after the batch in hand (one
  transaction), then connections close, leases are released, and :func:`run` returns 0.
  SIGHUP re-reads the config file; a bad file is logged and the running config kept.
* **Testable**: :class:`Service` works without threads too. :meth:`Service.run_until_idle`
  polls every mailbox, flushes and sweeps until a round brings nothing new (Mailman's
  ``make_testable_runner``); the daemon loop is the same steps on a schedule.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import logging
import signal
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from types import FrameType
from typing import Any

from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.schedulers.background import BackgroundScheduler
from imapclient import IMAPClient
from sqlalchemy.exc import OperationalError, SQLAlchemyError

from daemon import config as configmod
from daemon import jobs, leases, logs, status
from daemon.app import App
from daemon.clock import Backoff
from daemon.errors import ConfigError, LoginRefused, TicketdError, TransientError
from daemon.httpd import HealthServer, HttpSettings, settings_from
from daemon.intake import imap
from daemon.intake.idle import IDLE_CHECK, IdleWorker
from daemon.intake.lmtp import LmtpServer
from daemon.intake.pipeline import Intake
from daemon.logs import Outage
from daemon.metrics import Metrics
from daemon.outcomes import FlushReport, IntakeResult, PollReport
from daemon.replies import outbox, templates
from daemon.replies.composers import WorkerPool
from daemon.replies.notify import Notify
from daemon.replies.outbox import flush
from daemon.replies.transports import Transport

log = logging.getLogger("ticketd.service")

FLUSH_INTERVAL = 5            # seconds between outbox flushes (plus one after new mail)
OUTAGE_BACKOFF_CAP = 300.0    # the longest wait between tries while SMTP cannot be reached
BACKOFF_CAP = 60.0            # the longest wait between database connection attempts
STOP_GRACE = 8.0              # seconds the threads get to finish after SIGTERM (< 10 s)


def lease_name(spec: imap.MailboxSpec) -> str:
    return f"mailbox:{spec.key}"


@dataclass
class Mailbox:
    """One mailbox as this process serves it: what to poll, its intake, its lease."""

    spec: imap.MailboxSpec
    intake: Intake
    keeper: leases.Keeper
    outage: Outage        # a refused login, shared by the IDLE worker and the poll job
    lock: threading.Lock = field(default_factory=threading.Lock)  # one poll at a time
    halt: threading.Event = field(default_factory=threading.Event)  # removed on reload
    worker: IdleWorker | None = None

    @property
    def label(self) -> str:
        return self.spec.label


class Sender(threading.Thread):
    """Flushes the outbox every ``interval`` seconds and whenever :meth:`wake` is called;
    while SMTP is down, waits with backoff instead (wake-ups do not shorten it)."""

    def __init__(self, flush_once: Callable[[], FlushReport], halt: threading.Event,
                 interval: float = FLUSH_INTERVAL) -> None:
        super().__init__(name="ticketd-sender", daemon=True)
        self._flush = flush_once
        self._halt = halt
        self._wanted = threading.Event()
        self.interval = interval
        self._outage = Backoff(base=interval, cap=OUTAGE_BACKOFF_CAP)

    def wake(self) -> None:
        self._wanted.set()

    def run(self) -> None:
        while not self._halt.is_set():
            self._wanted.clear()
            delay = self.interval
            try:
                report = self._flush()
            except (TransientError, OperationalError) as exc:
                log.warning("outbox: %s (next try in %.0f s)", _one_line(exc), delay)
            except Exception:
                log.exception("outbox flush failed unexpectedly (next try in %.0f s)", delay)
            else:
                if report.problem is not None:
                    delay = self._outage.next()
                else:
                    self._outage.reset()
            if delay > self.interval:
                self._halt.wait(delay)  # SMTP is down: new mail does not make it come back
            else:
                self._wanted.wait(delay)


class Service:
    """The daemon: mailboxes, jobs, IDLE workers, the sender, the HTTP endpoint; lifecycle."""

    def __init__(self, app: App, *, metrics: Metrics | None = None,
                 http: HttpSettings | None = None, transport: Transport | None = None,
                 holder: str | None = None, idle_check: float = IDLE_CHECK,
                 lmtp_only: bool = False) -> None:
        self.app = app
        self.lmtp_only = lmtp_only   # `ticketd lmtp`: LMTP, sender and sweep; no mailboxes
        self.metrics = metrics or Metrics()
        self.http_settings = http if http is not None else settings_from(app)
        self.transport = transport
        self.holder = holder or leases.holder_id()
        self.idle_check = idle_check
        self.started_at = app.clock.now()
        self.boxes: dict[str, Mailbox] = {}
        self.smtp = Outage(logging.getLogger("ticketd.outbox"), "smtp")
        self._stop = threading.Event()
        self._reload = threading.Event()
        self._scheduler: BackgroundScheduler | None = None
        self._sender: Sender | None = None
        self._http: HealthServer | None = None
        self._lmtp: LmtpServer | None = None
        self._sweep_keeper: leases.Keeper | None = None
        self._composer: WorkerPool | None = None
        self._started = False
        root = logging.getLogger("ticketd")
        # Started with --debug (more verbose than the config asks): keep that across SIGHUP.
        self._debug = (root.level == logging.DEBUG and app.config.logging.level != "debug")

    # ------------------------------------------------------------------ state

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    def request_stop(self) -> None:
        self._stop.set()

    def request_reload(self) -> None:
        self._reload.set()

    def sleep(self, seconds: float, box: Mailbox | None = None) -> None:
        """Wait, but wake at once for a stop request (of the service or of ``box``)."""
        deadline = time.monotonic() + seconds
        while not self._box_stopping(box):
            left = deadline - time.monotonic()
            if left <= 0:
                return
            self._stop.wait(min(left, 0.5))

    def _box_stopping(self, box: Mailbox | None) -> bool:
        return self._stop.is_set() or (box is not None and box.halt.is_set())

    def _make_boxes(self) -> dict[str, Mailbox]:
        boxes: dict[str, Mailbox] = {}
        cfg = self.app.config.imap
        notifier = Notify(self.app)
        for spec in imap.mailboxes(cfg):
            if spec.key in boxes:
                log.warning("mailbox %s is configured twice; polling it once", spec.key)
                continue
            boxes[spec.key] = Mailbox(
                spec, Intake(self.app, notifier=notifier, origin_mailbox=spec.label,
                             default_team=spec.team),
                leases.Keeper(self.app, lease_name(spec), self.holder, cfg.lease_seconds),
                Outage(logging.getLogger("ticketd.imap"), f"imap {spec.label}"))
        return boxes

    def _ensure_boxes(self) -> None:
        if not self.boxes:
            self.boxes = self._make_boxes()

    # ------------------------------------------------------------------ one step each

    def poll(self, box: Mailbox, client: IMAPClient | None = None, *,
             wait: bool = False) -> PollReport | None:
        """Poll ``box`` once if we hold its lease; None when another poll or instance has it.

        ``wait``: wait for a poll of the same mailbox in another thread to end (the IDLE
        worker does) instead of skipping (the scheduled job does). New mail wakes the sender;
        the poll never sends itself.
        """
        if wait:
            while not box.lock.acquire(timeout=0.5):
                if self._box_stopping(box):
                    return None
        elif not box.lock.acquire(blocking=False):
            log.debug("%s: a poll is already running; skipped", box.label)
            return None
        try:
            if self._box_stopping(box) or not box.keeper.hold():
                return None
            started = time.monotonic()
            try:
                report = imap.poll_once(self.app, box.intake, box.spec, client=client,
                                        stop=lambda: self._stop_after_batch(box))
            except LoginRefused as exc:
                box.outage.failed(str(exc), self.app.clock.now(), level=logging.ERROR,
                                  again=logging.DEBUG,
                                  detail="mail stays in the folder; trying again quietly")
                self.metrics.failure(f"poll {box.label}")
                return None
            box.outage.ended(self.app.clock.now())
            self.metrics.poll(box.label, report, time.monotonic() - started,
                              self.app.clock.now())
        finally:
            box.lock.release()
        if report.results:
            log.debug("%s: %d message(s) in %.2f s", box.label, len(report.results),
                      time.monotonic() - started)
            if any(r.action in ("created", "appended") for r in report.results):
                self.on_new_mail()
        return report

    def on_new_mail(self) -> None:
        """Mail was queued: wake the sender (never send here; without threads, no-op)."""
        if self._sender is not None:
            self._sender.wake()

    def _stop_after_batch(self, box: Mailbox) -> bool:
        """poll_once asks after every batch: stop requested, or the lease lost?"""
        if self._box_stopping(box):
            return True
        try:
            return not box.keeper.hold()
        except TicketdError as exc:
            log.warning("%s: cannot renew the lease (%s); pausing this mailbox", box.label, exc)
            return True

    def flush(self) -> FlushReport:
        """Send what is due (safe beside other flushes: rows are claimed one by one).

        Once a backlog of mails to write builds up (``outbox.WORKER_BACKLOG``), they are
        written in a worker process from then on, so composing takes the other core rather
        than the intake threads' share of this one."""
        if self._composer is None and outbox.unwritten(self.app) >= outbox.WORKER_BACKLOG:
            self._composer = WorkerPool(self.app)
        report = flush(self.app, self.transport, stop=self._stop.is_set, outage=self.smtp,
                       composer=self._composer)
        self.metrics.flush(report)
        return report

    def sweep(self) -> jobs.SweepReport | None:
        """Run the periodic jobs if this instance holds the sweep lease (None: another does)."""
        if self._sweep_keeper is None:
            self._sweep_keeper = leases.Keeper(self.app, jobs.SWEEP_LEASE, self.holder,
                                               self.app.config.imap.lease_seconds)
        if not self._sweep_keeper.hold():
            return None
        report = jobs.sweep(self.app, self.app.clock.now())
        for failed in report.failed:
            self.metrics.failure(f"sweep {failed.name}")
        breaches, ratings = status.process_gauges(self.app)
        self.metrics.process(breaches, ratings, breach_mails=len(
            next((j.tickets for j in report.jobs if j.name == "sla-breach"), ())))
        if report.changed:
            self.on_new_mail()
        return report

    def run_until_idle(self, rounds: int = 100) -> list[IntakeResult]:
        """Poll every mailbox, flush and sweep, until a round brings nothing new.

        The whole daemon as one synchronous call, for tests and for a cron-style run.
        """
        self._ensure_boxes()
        results: list[IntakeResult] = []
        for _ in range(rounds):
            got: list[IntakeResult] = []
            for box in self.boxes.values():
                report = self.poll(box, wait=True)
                if report is not None:
                    got.extend(report.results)
            self.sweep()
            self.flush()
            results.extend(got)
            if not got or self.stopping:
                break
        return results

    # ------------------------------------------------------------------ jobs

    def _job(self, name: str, step: Callable[[], object]) -> Callable[[], None]:
        """Wrap a step: a failure is one log line and a counter; the next run comes anyway."""

        def run() -> None:
            if self.stopping:
                return
            try:
                step()
            except (TransientError, OperationalError) as exc:
                # OperationalError: the database went away; the pool reconnects next time.
                self.metrics.failure(name)
                log.warning("%s: %s (next try at its next run)", name, _one_line(exc))
            except TicketdError as exc:
                self.metrics.failure(name)
                log.error("%s: %s", name, exc)
            except Exception:
                self.metrics.failure(name)
                log.exception("%s failed unexpectedly (next try at its next run)", name)

        return run

    def _start_scheduler(self) -> None:
        workers = len(self.boxes) + 2
        scheduler = BackgroundScheduler(
            executors={"default": ThreadPoolExecutor(max_workers=workers)},
            job_defaults={"max_instances": 1, "coalesce": True, "misfire_grace_time": 30},
            timezone=UTC)
        now = datetime.now(UTC)
        scheduler.add_job(self._job("sweep", self.sweep), "interval",
                          seconds=jobs.SWEEP_INTERVAL, id="sweep", name="sweep",
                          next_run_time=now + timedelta(seconds=5))
        self._scheduler = scheduler
        self._add_poll_jobs()
        scheduler.start()
        self._sender = Sender(self.flush, self._stop)
        self._sender.start()

    def _add_poll_jobs(self) -> None:
        assert self._scheduler is not None
        interval = self.app.config.imap.poll_interval
        now = datetime.now(UTC)
        for box in self.boxes.values():
            # With an IDLE worker catching up right away, the safety-net poll starts later.
            first = now + timedelta(seconds=interval) if box.worker is not None else now
            self._scheduler.add_job(
                self._job(f"poll {box.label}", functools.partial(self.poll, box)), "interval",
                seconds=interval, id=f"poll:{box.spec.key}", name=f"poll {box.label}",
                next_run_time=first)

    def _idle_worker(self, box: Mailbox) -> IdleWorker:
        cfg = self.app.config.imap
        return IdleWorker(
            box.spec, poll=lambda client: self.poll(box, client, wait=True),
            holding=box.keeper.hold, stopping=lambda: self._box_stopping(box),
            sleep=lambda seconds: self.sleep(seconds, box),
            standby=max(1, min(cfg.poll_interval, box.keeper.seconds // 2)),
            poll_interval=cfg.poll_interval, outage=box.outage,
            on_failure=lambda: self.metrics.failure("imap"), now=self.app.clock.now,
            idle_check=self.idle_check)

    def _start_mailboxes(self) -> None:
        self.boxes = self._make_boxes()
        if self.app.config.imap.idle:
            for box in self.boxes.values():
                box.worker = self._idle_worker(box)
                box.worker.start()
        if self._scheduler is not None:
            self._add_poll_jobs()

    def _stop_mailboxes(self, deadline: float) -> None:
        """Halt every mailbox's worker and job; release the leases."""
        boxes = list(self.boxes.values())
        for box in boxes:
            box.halt.set()
            if self._scheduler is not None:
                with contextlib.suppress(Exception):  # JobLookupError: already gone
                    self._scheduler.remove_job(f"poll:{box.spec.key}")
        for box in boxes:
            if box.worker is not None:
                box.worker.join(max(0.1, deadline - time.monotonic()))
                if box.worker.is_alive():
                    log.warning("%s: IDLE worker did not stop in time; closing its socket",
                                box.label)
                    box.worker.abort()
                    box.worker.join(1.0)
        for box in boxes:
            # Wait for a poll job in hand to end before giving the mailbox away.
            if box.lock.acquire(timeout=max(0.1, deadline - time.monotonic())):
                box.lock.release()
            try:
                box.keeper.release()
            except TicketdError as exc:
                log.warning("%s: lease not released (%s); it expires by itself", box.label, exc)
        self.boxes = {}

    # ------------------------------------------------------------------ lifecycle

    def _wait_for_database(self) -> bool:
        """Migrate the schema, retrying while the database is down; False if stopped."""
        backoff = Backoff(cap=BACKOFF_CAP)
        while not self.stopping:
            try:
                self.app.ready_db()
                return True
            except (TransientError, SQLAlchemyError) as exc:
                # SQLAlchemyError too: two instances migrating a fresh schema at once race,
                # and the loser finds the tables there on its next try.
                delay = backoff.next()
                log.warning("database not ready (%s); retrying in %.0f s",
                            str(exc).splitlines()[0], delay)
                self.sleep(delay)
        return False

    def start(self) -> bool:
        """Start everything in the background; False when stopped before the database came."""
        configmod.check_secrets(self.app.config)
        if not self._wait_for_database():
            return False
        if self.http_settings is not None:
            self._http = HealthServer(self.http_settings, self.health, self.metrics)
            self._http.start()
        if self.lmtp_only or self.app.config.lmtp.enabled:
            self._lmtp = LmtpServer(self.app, notifier=Notify(self.app),
                                    on_delivered=self.on_new_mail)
            try:
                self._lmtp.start()
            except ConfigError:
                self._lmtp = None
                raise
        if not self.lmtp_only:
            self._start_mailboxes()
        self._start_scheduler()
        templates.store(self.app).problems()  # logs each broken template and its fallback now
        self._started = True
        names = ", ".join(b.label for b in self.boxes.values()) or (
            "none (LMTP only)" if self.lmtp_only else "none (outbox and sweep only)")
        log.info("ticketd running as %s; mailboxes: %s; IDLE %s; poll every %d s",
                 self.holder, names, "on" if self.app.config.imap.idle else "off",
                 self.app.config.imap.poll_interval)
        return True

    def shutdown(self) -> None:
        """Finish the batch in hand, close connections, release leases (within ~8 s)."""
        self._stop.set()
        deadline = time.monotonic() + STOP_GRACE
        if self._scheduler is not None:
            # Running jobs end after their batch in hand (they see the stop flag).
            self._scheduler.shutdown(wait=True)
            self._scheduler = None
        if self._lmtp is not None:
            self._lmtp.stop()   # the message in hand commits (or rolls back) first
            self._lmtp = None
        self._stop_mailboxes(deadline)
        if self._sender is not None:
            self._sender.wake()
            self._sender.join(max(0.1, deadline - time.monotonic()))
            self._sender = None
        self._close_composer()
        if self._sweep_keeper is not None:
            with contextlib.suppress(TicketdError):
                self._sweep_keeper.release()
        if self._http is not None:
            self._http.stop()
            self._http = None
        if self._started:
            self._started = False
            log.info("ticketd stopped")

    def _close_composer(self) -> None:
        """Stop the composing worker (each job names its template directory, so a reload
        needs no new worker)."""
        if self._composer is not None:
            self._composer.close()
            self._composer = None

    def serve(self) -> None:
        """The main thread's loop: wait for a signal; apply SIGHUP reloads."""
        while not self._stop.wait(0.2):
            if self._reload.is_set():
                self._reload.clear()
                self.reload()

    def run(self) -> int:
        """Start, serve until SIGTERM/SIGINT, stop cleanly; the exit status."""
        with self._signals():
            try:
                if self.start():
                    self.serve()
            finally:
                self.shutdown()
        return 0

    @contextlib.contextmanager
    def _signals(self) -> Iterator[None]:
        if threading.current_thread() is not threading.main_thread():
            yield
            return

        def on_stop(signum: int, _frame: FrameType | None) -> None:
            if not self._stop.is_set():
                log.info("%s: stopping after the message in hand",
                         signal.Signals(signum).name)
            self._stop.set()

        def on_hup(_signum: int, _frame: FrameType | None) -> None:
            self._reload.set()

        previous = {sig: signal.signal(sig, handler) for sig, handler in (
            (signal.SIGTERM, on_stop), (signal.SIGINT, on_stop), (signal.SIGHUP, on_hup))}
        try:
            yield
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)

    def reload(self) -> None:
        """SIGHUP: re-read the config file; keep the running config when the new one is bad."""
        old = self.app.config
        if old.path is None:
            log.warning("SIGHUP: running on built-in defaults; there is no file to reload")
            return
        try:
            new = configmod.load(old.path)
            mailboxes_changed = (imap.mailboxes(new.imap) != imap.mailboxes(old.imap) or
                                 new.imap.idle != old.imap.idle or
                                 new.imap.lease_seconds != old.imap.lease_seconds)
            if mailboxes_changed:
                configmod.check_secrets(new)
        except ConfigError as exc:
            log.error("SIGHUP: %s; keeping the running configuration", exc)
            return
        if new.database != old.database:
            log.warning("SIGHUP: [database] changes take effect at the next restart")
            new = dataclasses.replace(new, database=old.database)
        self.app.config = new
        for cached, section in (("numbers", "tickets"), ("templates", "templates")):
            if getattr(new, section) != getattr(old, section) or (
                    cached == "templates" and new.support.locale != old.support.locale):
                self.app.__dict__.pop(cached, None)
        if new.logging != old.logging:
            logs.setup(debug=self._debug, cfg=new)
        if mailboxes_changed and self._scheduler is not None:
            self._stop_mailboxes(time.monotonic() + STOP_GRACE)
            if not self.stopping:
                self._start_mailboxes()
        elif new.imap.poll_interval != old.imap.poll_interval and self._scheduler is not None:
            for box in self.boxes.values():
                self._scheduler.reschedule_job(f"poll:{box.spec.key}", trigger="interval",
                                               seconds=new.imap.poll_interval)
        http = settings_from(self.app)
        if http != self.http_settings:
            if self._http is not None:
                self._http.stop()
                self._http = None
            self.http_settings = http
            if http is not None:
                try:
                    self._http = HealthServer(http, self.health, self.metrics)
                    self._http.start()
                except ConfigError as exc:
                    log.error("SIGHUP: %s", exc)
                    self._http = None
        log.info("configuration reloaded from %s", old.path)

    # ------------------------------------------------------------------ health

    def health(self) -> dict[str, Any]:
        """What ``/healthz`` answers (:func:`daemon.status.health`) with this instance's view."""
        here = self.metrics.last_polls()
        boxes = [status.MailboxState(
            key=box.spec.key, label=box.label, lease_held=box.keeper.held,
            idling=bool(box.worker and box.worker.idling),
            last_poll_here=here.get(box.label), problem=box.outage.problem)
            for box in list(self.boxes.values())]
        return status.health(self.app, instance=self.holder, started_at=self.started_at,
                             stopping=self.stopping, mailboxes=boxes,
                             smtp_problem=self.smtp.problem)


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def run(app: App) -> int:
    """`ticketd run`: serve until SIGTERM/SIGINT; 0 after a clean stop."""
    return Service(app).run()


def run_lmtp(app: App) -> int:
    """`ticketd lmtp`: the LMTP server with the sender and the sweep, no IMAP mailboxes."""
    return Service(app, lmtp_only=True).run()
