"""Logging set-up: one line per event that matters, as plain text or JSON, never a secret.

Each concern has its own named logger (``ticketd.intake``, ``ticketd.imap``, ``ticketd.outbox``,
``ticketd.templates`` ...), so an operator can filter by it.
"""

from __future__ import annotations

import json
import logging
import sys
import threading
from datetime import UTC, datetime, tzinfo
from typing import TYPE_CHECKING

from daemon.clock import format_time, iso_time

if TYPE_CHECKING:
    from daemon.config import Config


class TextFormatter(logging.Formatter):
    """``2023-10-27 09:30:00 +08:00 INFO ticketd.intake: ...``: the site's zone, one format."""

    def __init__(self, zone: tzinfo = UTC) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")
        self.zone = zone

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        return format_time(datetime.fromtimestamp(record.created, UTC), self.zone)


class JsonFormatter(logging.Formatter):
    def __init__(self, zone: tzinfo = UTC) -> None:
        super().__init__()
        self.zone = zone

    def format(self, record: logging.LogRecord) -> str:
        data = {
            "at": iso_time(datetime.fromtimestamp(record.created, UTC), self.zone),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        extra = getattr(record, "fields", None)
        if isinstance(extra, dict):
            data.update(extra)
        if record.exc_info:
            data["exception"] = self.formatException(record.exc_info)
        return json.dumps(data, ensure_ascii=False, default=str)


def setup(*, debug: bool, cfg: Config | None, quiet: bool = False) -> None:
    root = logging.getLogger("ticketd")
    for handler in list(root.handlers):
        root.removeHandler(handler)
    handler = logging.StreamHandler(sys.stderr)
    fmt = cfg.logging.format if cfg else "text"
    zone = cfg.support.zone if cfg else UTC
    handler.setFormatter(JsonFormatter(zone) if fmt == "json" else TextFormatter(zone))
    root.addHandler(handler)
    level = "debug" if debug else (cfg.logging.level if cfg else "info")
    number = getattr(logging, level.upper())
    root.setLevel(number if debug or not quiet else max(number, logging.WARNING))
    root.propagate = False
    # The scheduler's own warnings ("run time was missed", job errors) in the same format.
    scheduler = logging.getLogger("apscheduler")
    for old in list(scheduler.handlers):
        scheduler.removeHandler(old)
    scheduler.addHandler(handler)
    scheduler.setLevel(logging.DEBUG if debug else logging.WARNING)
    scheduler.propagate = False


class Outage:
    """A problem that comes back on every try (a server down, a password refused), logged
    when it starts or changes, summarised at DEBUG while it lasts, and logged when it ends:
    one line per outage, not one per try or per waiting mail.

    Shared by the threads that try the same server (a mailbox's IDLE worker and poll job).
    """

    def __init__(self, logger: logging.Logger, what: str) -> None:
        self.log = logger
        self.what = what
        self._lock = threading.Lock()
        self._problem: str | None = None
        self._since: datetime | None = None
        self.tries = 0

    @property
    def problem(self) -> str | None:
        with self._lock:
            return self._problem

    @property
    def since(self) -> datetime | None:
        with self._lock:
            return self._since

    def failed(self, problem: str, at: datetime, *, level: int = logging.WARNING,
               again: int = logging.INFO, detail: str = "") -> bool:
        """Record a failed try; True (and one log line at ``level``) when the outage is new
        or its cause changed, else a shorter line at ``again`` (DEBUG: logged only once)."""
        with self._lock:
            self.tries += 1
            new = problem != self._problem
            if self._problem is None:
                self._since = at
            self._problem = problem
        tail = f"; {detail}" if detail else ""
        if new:
            self.log.log(level, "%s%s", problem, tail)
        else:
            since = self.since
            self.log.log(again, "%s still failing since %s (try %d)%s", self.what,
                         f"{since:%Y-%m-%d %H:%M:%S}" if since else "?", self.tries, tail)
        return new

    def ended(self, at: datetime) -> bool:
        """Record a success; True (and one INFO line) when it ends an outage."""
        with self._lock:
            problem, since, tries = self._problem, self._since, self.tries
            self._problem, self._since, self.tries = None, None, 0
        if problem is None:
            return False
        seconds = int((at - since).total_seconds()) if since else 0
        self.log.info("%s works again after %d s and %d failed tries (was: %s)", self.what,
                      seconds, tries, problem)
        return True
