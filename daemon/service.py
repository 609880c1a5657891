"""`ticketd run`: the long-running daemon that polls, IDLEs, sends and sweeps for months.

Why it is shaped this way:

* **Jobs** run on an APScheduler 3 ``BackgroundScheduler``: one poll job per mailbox (every
  ``[imap] poll_interval`` seconds), the outbox flush (every few seconds) and the SLA sweep.
  Every job has ``max_instances=1`` and ``coalesce=True`` (never overlaps itself, never runs a
  backlog of missed runs), and catches its own errors: one log line, a failure counter, and
  the next run comes at its next time.
* **IMAP IDLE**: a thread per mailbox (when the server offers IDLE) keeps one connection
  selected on the folder: catch up with a poll, IDLE, and on ``EXISTS`` poll again and flush
  the outbox at once, so a new mail gets its acceptance within about a second. The IDLE is
  re-issued every ``IDLE_RENEW`` (well inside the 29-minute limit of RFC 2177), and waits in
  ``IDLE_CHECK`` slices so a stop request is seen within a second. A dropped connection is
  re-established with exponential backoff (capped at ``BACKOFF_CAP``), one log line per try.
  The poll job remains the safety net, on its own connection.
* **Several instances** share the work through leases (:mod:`daemon.leases`): only the holder
  of ``mailbox:<key>`` polls or IDLEs that mailbox; the outbox is claimed row by row with
  ``FOR UPDATE SKIP LOCKED``; the SLA sweep holds ``job:sla-sweep``. An instance that dies
  stops renewing, and another takes over when the lease expires (``[imap] lease_seconds``).
* **Signals**: SIGTERM and SIGINT ask every loop to stop after the message in hand (the
  ``stop`` callable of :func:`~daemon.intake.imap.poll_once`), then connections close, leases
  are released, and :func:`run` returns 0. SIGHUP re-reads the config file; a bad file is
  logged and the running config kept.
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
import socket
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
from imapclient.exceptions import IMAPClientError
from sqlalchemy import select
from sqlalchemy.exc import OperationalError, SQLAlchemyError

from daemon import autoclose, leases, logs, sla, tickets
from daemon import config as configmod
from daemon.app import App
from daemon.errors import ConfigError, MailboxUnavailable, TicketdError, TransientError
from daemon.httpd import HealthServer, HttpSettings, settings_from
from daemon.intake import imap
from daemon.intake.pipeline import Intake, IntakeResult
from daemon.metrics import Metrics
from daemon.models import Event, MailboxCursor, Ticket
from daemon.replies.notify import Notify
from daemon.replies.outbox import FlushReport, flush
from daemon.replies.transports import Transport
from daemon.status import sla_breaches

log = logging.getLogger("ticketd.service")

IDLE_CHECK = 1.0              # seconds per idle_check slice: how soon a stop is noticed
IDLE_RENEW = 25 * 60          # re-issue IDLE after this long (servers drop it after 29 min)
FLUSH_INTERVAL = 5            # seconds between outbox flushes (plus one after every ingest)
SLA_INTERVAL = 60             # seconds between SLA sweeps
AUTO_CLOSE_INTERVAL = 3600    # seconds between auto-close sweeps
BACKOFF_BASE = 1.0
BACKOFF_CAP = 60.0            # the longest wait between reconnection attempts
STOP_GRACE = 8.0              # seconds the threads get to finish after SIGTERM (< 10 s)
SLA_LEASE = "job:sla-sweep"
SLA_EVENT = "sla-breach"


def lease_name(spec: imap.MailboxSpec) -> str:
    return f"mailbox:{spec.key}"


class Backoff:
    """Exponential delays: 1, 2, 4 ... seconds, capped; reset after a success."""

    def __init__(self, base: float = BACKOFF_BASE, cap: float = BACKOFF_CAP) -> None:
        self.base = base
        self.cap = cap
        self.failures = 0

    def next(self) -> float:
        delay = min(self.cap, self.base * 2.0 ** self.failures)
        self.failures += 1
        return delay

    def reset(self) -> None:
        self.failures = 0


@dataclass
class Mailbox:
    """One mailbox as this process serves it: what to poll, its intake, its lease."""

    spec: imap.MailboxSpec
    intake: Intake
    keeper: leases.Keeper
    lock: threading.Lock = field(default_factory=threading.Lock)  # one poll at a time
    halt: threading.Event = field(default_factory=threading.Event)  # removed on reload
    worker: IdleWorker | None = None

    @property
    def label(self) -> str:
        return self.spec.label


class Service:
    """The daemon: mailboxes, jobs, IDLE workers, the HTTP endpoint and their lifecycle."""

    def __init__(self, app: App, *, metrics: Metrics | None = None,
                 http: HttpSettings | None = None, transport: Transport | None = None,
                 holder: str | None = None, idle_check: float = IDLE_CHECK) -> None:
        self.app = app
        self.metrics = metrics or Metrics()
        self.http_settings = http if http is not None else settings_from(app)
        self.transport = transport
        self.holder = holder or leases.holder_id()
        self.idle_check = idle_check
        self.started_at = app.clock.now()
        self.boxes: dict[str, Mailbox] = {}
        self._stop = threading.Event()
        self._reload = threading.Event()
        self._scheduler: BackgroundScheduler | None = None
        self._http: HealthServer | None = None
        self._sla_keeper: leases.Keeper | None = None
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
                leases.Keeper(self.app, lease_name(spec), self.holder, cfg.lease_seconds))
        return boxes

    def _ensure_boxes(self) -> None:
        if not self.boxes:
            self.boxes = self._make_boxes()

    # ------------------------------------------------------------------ one step each

    def poll(self, box: Mailbox, client: IMAPClient | None = None, *,
             wait: bool = False) -> imap.PollReport | None:
        """Poll ``box`` once if we hold its lease; None when another poll or instance has it.

        ``wait``: wait for a poll of the same mailbox in another thread to end (the IDLE
        worker does) instead of skipping (the scheduled job does).
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
            report = imap.poll_once(self.app, box.intake, box.spec, client=client,
                                    stop=lambda: self._stop_after_message(box))
            self.metrics.poll(box.label, report, time.monotonic() - started,
                              self.app.clock.now())
        finally:
            box.lock.release()
        if report.results:
            log.debug("%s: %d message(s) in %.2f s", box.label, len(report.results),
                      time.monotonic() - started)
            if any(r.action in ("created", "appended") for r in report.results):
                self.flush()
        return report

    def _stop_after_message(self, box: Mailbox) -> bool:
        """poll_once asks after every message: stop requested, or the lease lost?"""
        if self._box_stopping(box):
            return True
        try:
            return not box.keeper.hold()
        except TicketdError as exc:
            log.warning("%s: cannot renew the lease (%s); pausing this mailbox", box.label, exc)
            return True

    def flush(self) -> FlushReport:
        """Send what is due (safe beside other flushes: rows are claimed one by one)."""
        report = flush(self.app, self.transport, stop=self._stop.is_set)
        self.metrics.flush(report)
        return report

    def sweep_sla(self) -> list[str]:
        """Record an ``sla-breach`` event (once) on every open ticket past its assign deadline
        without a handler; returns their numbers. One instance sweeps (a lease)."""
        if self._sla_keeper is None:
            self._sla_keeper = leases.Keeper(self.app, SLA_LEASE, self.holder,
                                             self.app.config.imap.lease_seconds)
        if not self._sla_keeper.hold():
            return []
        now = self.app.clock.now()
        zone = self.app.config.support.zone
        marked: list[str] = []
        with self.app.ready_db().transaction() as session:
            breaches = sla_breaches(session, now)
            if not breaches:
                return []
            ids = [b.ticket_id for b in breaches]
            done = set(session.scalars(select(Event.ticket_id).where(
                Event.action == SLA_EVENT, Event.ticket_id.in_(ids))))
            for breach in breaches:
                if breach.ticket_id in done:
                    continue
                ticket = session.get(Ticket, breach.ticket_id)
                assert ticket is not None
                within = sla.assign_within(breach.priority)
                tickets.record(
                    session, ticket, at=now, actor=tickets.SYSTEM, action=SLA_EVENT,
                    detail=f"{breach.priority} ticket not assigned within "
                           f"{int(within.total_seconds() // 60)} min (deadline "
                           f"{breach.deadline.astimezone(zone):%Y-%m-%d %H:%M %Z})")
                marked.append(breach.number)
        for number in marked:
            log.warning("SLA breach: %s has no handler past its assign deadline", number)
        return marked

    def auto_close(self) -> list[str]:
        """Close resolved tickets nobody answered in time (the sweep lease's holder does)."""
        if self._sla_keeper is None:
            self._sla_keeper = leases.Keeper(self.app, SLA_LEASE, self.holder,
                                             self.app.config.imap.lease_seconds)
        if not self._sla_keeper.hold():
            return []
        closed = autoclose.close_due(self.app)
        if closed:
            self.flush()
        return closed

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
            self.flush()
            self.sweep_sla()
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
        workers = len(self.boxes) + 4
        scheduler = BackgroundScheduler(
            executors={"default": ThreadPoolExecutor(max_workers=workers)},
            job_defaults={"max_instances": 1, "coalesce": True, "misfire_grace_time": 30},
            timezone=UTC)
        now = datetime.now(UTC)
        scheduler.add_job(self._job("outbox", self.flush), "interval", seconds=FLUSH_INTERVAL,
                          id="outbox", name="outbox flush", next_run_time=now)
        scheduler.add_job(self._job("auto-close", self.auto_close), "interval",
                          seconds=AUTO_CLOSE_INTERVAL, id="auto-close", name="auto-close",
                          next_run_time=now + timedelta(seconds=10))
        scheduler.add_job(self._job("sla", self.sweep_sla), "interval", seconds=SLA_INTERVAL,
                          id="sla", name="SLA sweep", next_run_time=now + timedelta(seconds=5))
        self._scheduler = scheduler
        self._add_poll_jobs()
        scheduler.start()

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

    def _start_mailboxes(self) -> None:
        self.boxes = self._make_boxes()
        if self.app.config.imap.idle:
            for box in self.boxes.values():
                box.worker = IdleWorker(self, box)
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
        backoff = Backoff()
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

    def _check_secrets(self) -> None:
        """A missing password is a config error now, not a reconnect loop later."""
        for spec in imap.mailboxes(self.app.config.imap):
            spec.password.reveal()
        smtp = self.app.config.smtp
        if smtp.backend == "smtp" and smtp.password.configured:
            smtp.password.reveal()

    def start(self) -> bool:
        """Start everything in the background; False when stopped before the database came."""
        self._check_secrets()
        if not self._wait_for_database():
            return False
        if self.http_settings is not None:
            self._http = HealthServer(self.http_settings, self.health, self.metrics)
            self._http.start()
        self._start_mailboxes()
        self._start_scheduler()
        self.app.templates.problems()  # logs each broken template and its fallback now
        self._started = True
        names = ", ".join(b.label for b in self.boxes.values()) or "none (outbox and SLA only)"
        log.info("ticketd running as %s; mailboxes: %s; IDLE %s; poll every %d s",
                 self.holder, names, "on" if self.app.config.imap.idle else "off",
                 self.app.config.imap.poll_interval)
        return True

    def shutdown(self) -> None:
        """Finish the message in hand, close connections, release leases (within ~8 s)."""
        self._stop.set()
        deadline = time.monotonic() + STOP_GRACE
        if self._scheduler is not None:
            # Running jobs end after their message in hand (they see the stop flag).
            self._scheduler.shutdown(wait=True)
            self._scheduler = None
        self._stop_mailboxes(deadline)
        if self._sla_keeper is not None:
            with contextlib.suppress(TicketdError):
                self._sla_keeper.release()
        if self._http is not None:
            self._http.stop()
            self._http = None
        if self._started:
            self._started = False
            log.info("ticketd stopped")

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
                for spec in imap.mailboxes(new.imap):
                    spec.password.reveal()
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
        """What ``/healthz`` answers: ok unless the database is down or a mailbox went stale.

        Stale: no poll by any instance for three poll intervals (or two lease periods, when
        that is longer: a takeover after a dead instance takes that long).
        """
        now = self.app.clock.now()
        cfg = self.app.config.imap
        stale = timedelta(seconds=max(3 * cfg.poll_interval, 2 * cfg.lease_seconds))
        problems: list[str] = []
        cursors: dict[str, datetime | None] = {}
        try:
            with self.app.db.transaction() as session:
                cursors = {c.mailbox: c.last_poll_at
                           for c in session.scalars(select(MailboxCursor))}
        except SQLAlchemyError as exc:
            problems.append(f"database: {str(exc).splitlines()[0]}")
        here = self.metrics.last_polls()
        boxes: dict[str, Any] = {}
        for box in list(self.boxes.values()):
            last = cursors.get(box.spec.key)
            if not problems:
                if last is None and now - self.started_at > stale:
                    problems.append(f"{box.label}: never polled")
                elif last is not None and now - last > stale:
                    problems.append(f"{box.label}: last poll {int((now - last).total_seconds())}"
                                    " s ago")
            worker = box.worker
            boxes[box.label] = {
                "last_poll_at": last.isoformat() if last else None,
                "last_poll_here_at": here[box.label].isoformat() if box.label in here else None,
                "lease_held": box.keeper.held,
                "idle": bool(worker and worker.idling),
            }
        problems += [f"mail template broken: {broken}" for broken in self.app.templates.problems()]
        return {"ok": not problems and not self.stopping, "problems": problems,
                "instance": self.holder, "started_at": self.started_at.isoformat(),
                "stopping": self.stopping, "mailboxes": boxes}


class IdleWorker(threading.Thread):
    """Holds one mailbox's IMAP connection in IDLE while this instance holds its lease."""

    def __init__(self, service: Service, box: Mailbox) -> None:
        super().__init__(name=f"ticketd-idle-{box.label}", daemon=True)
        self.service = service
        self.box = box
        self.idling = False
        self._client: IMAPClient | None = None
        self._backoff = Backoff()

    def _stopping(self) -> bool:
        return self.service._box_stopping(self.box)

    def abort(self) -> None:
        """From another thread: break a blocked socket read so the thread can end."""
        client = self._client
        if client is not None:
            with contextlib.suppress(OSError):
                client.socket().shutdown(socket.SHUT_RDWR)

    def run(self) -> None:
        label = self.box.label
        standby = max(1, min(self.service.app.config.imap.poll_interval,
                             self.box.keeper.seconds // 2))
        failing = False
        while not self._stopping():
            try:
                if not self.box.keeper.hold():
                    self.service.sleep(standby, self.box)  # another instance has it
                    continue
                if not self._session(reconnected=failing):
                    return  # no IDLE on this server: the poll job does the work
                failing = False
            except (TicketdError, OSError, IMAPClientError, OperationalError) as exc:
                if self._stopping():
                    break
                failing = True
                delay = self._backoff.next()
                self.service.metrics.failure("imap")
                why = _one_line(exc)
                where = "" if why.startswith("imap ") else f"{label}: "
                log.warning("%s%s; reconnecting in %.0f s", where, why, delay)
                self.service.sleep(delay, self.box)
            except Exception:
                failing = True
                delay = self._backoff.next()
                self.service.metrics.failure("imap")
                log.exception("%s: IDLE worker failed; restarting in %.0f s", label, delay)
                self.service.sleep(delay, self.box)

    def _session(self, *, reconnected: bool) -> bool:
        """One connection: catch up, then IDLE / poll / flush until told to stop or the lease
        is lost. False when the server has no IDLE."""
        spec = self.box.spec
        client = imap.connect(spec)
        self._client = client
        try:
            if not client.has_capability("IDLE"):
                log.info("%s: the server does not offer IDLE; polling every %d s", spec.label,
                         self.service.app.config.imap.poll_interval)
                return False
            first = True
            while not self._stopping():
                report = self.service.poll(self.box, client, wait=True)
                if report is None or self._stopping():  # stopping, or the lease went away
                    return True
                self._backoff.reset()
                if first:
                    log.info("%s: %s; waiting for mail with IDLE", spec.label,
                             "reconnected" if reconnected else "connected")
                    first = False
                self._idle(client)
            return True
        finally:
            self._client = None
            self.idling = False
            imap.quiet_logout(client)

    def _idle(self, client: IMAPClient) -> None:
        """IDLE until new mail, the renewal time, a lost lease or a stop request."""
        client.idle()
        self.idling = True
        began = time.monotonic()
        try:
            while not self._stopping():
                t0 = time.monotonic()
                responses = client.idle_check(timeout=self.service.idle_check)
                if any(_is(r, b"BYE") for r in responses):
                    raise MailboxUnavailable(f"imap {self.box.spec.key}: server closed the "
                                             "connection (BYE)")
                if not responses and time.monotonic() - t0 < self.service.idle_check / 2 and \
                        _at_eof(client):
                    raise MailboxUnavailable(f"imap {self.box.spec.key}: connection closed")
                if any(_is(r, b"EXISTS") for r in responses):
                    break
                if time.monotonic() - began > IDLE_RENEW or not self.box.keeper.hold():
                    break
        except BaseException:
            self.idling = False
            raise  # the connection is unusable; no DONE
        self.idling = False
        client.idle_done()


def _is(response: Any, kind: bytes) -> bool:
    """An idle_check response such as ``(3, b'EXISTS')`` or ``(b'BYE', b'...')``."""
    return isinstance(response, tuple) and kind in response[:2]


def _at_eof(client: IMAPClient) -> bool:
    """idle_check returns [] on EOF; tell that apart from a quiet timeout."""
    sock = client.socket()
    timeout = sock.gettimeout()
    try:
        sock.setblocking(False)
        try:
            return bool(sock.recv(1, socket.MSG_PEEK) == b"")
        finally:
            sock.settimeout(timeout)
    except BlockingIOError:
        return False
    except OSError:
        return True


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def run(app: App) -> int:
    """`ticketd run`: serve until SIGTERM/SIGINT; 0 after a clean stop."""
    return Service(app).run()
