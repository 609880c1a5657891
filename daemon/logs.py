"""Logging set-up: one line per event that matters, as plain text or JSON, never a secret.

Each concern has its own named logger (``ticketd.intake``, ``ticketd.imap``, ``ticketd.outbox``,
``ticketd.templates`` ...), so an operator can filter by it.
"""

from __future__ import annotations

import json
import logging
import sys
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
