"""Ticket numbers: prefix + local date YYYYMMDD + daily serial (TS20231027000001).

Allocation is one atomic upsert on the ``ticket_counters`` row of (prefix, day), so any number
of processes on SQLite or PostgreSQL get distinct numbers. The serial is zero-padded to
``serial_width`` and simply grows wider past 999999: it never wraps and never repeats.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from zoneinfo import ZoneInfo

from sqlalchemy import text
from sqlalchemy.orm import Session


@dataclass(frozen=True)
class NumberFormat:
    """How numbers look for one deployment; validated by the config loader."""

    prefix: str = "TS"
    serial_width: int = 6
    timezone: str = "Asia/Shanghai"

    @property
    def pattern(self) -> re.Pattern[str]:
        """Finds a number anywhere in a subject (case-insensitive prefix, not inside a word)."""
        return re.compile(
            rf"(?<![A-Za-z0-9]){re.escape(self.prefix)}(\d{{8}})(\d{{{self.serial_width},}})"
            r"(?![0-9])",
            re.IGNORECASE,
        )

    def day(self, at: datetime) -> str:
        return at.astimezone(ZoneInfo(self.timezone)).strftime("%Y%m%d")

    def format(self, day: str, serial: int) -> str:
        return f"{self.prefix}{day}{serial:0{self.serial_width}d}"

    def find(self, subject: str) -> list[str]:
        """Every well-formed number in a subject, normalised to the configured prefix case."""
        return [f"{self.prefix}{m.group(1)}{m.group(2)}" for m in self.pattern.finditer(subject)]

    def parse(self, number: str) -> tuple[str, int] | None:
        """(day, serial) of a number, or None when it is not one of ours."""
        m = self.pattern.fullmatch(number.strip())
        return (m.group(1), int(m.group(2))) if m else None


_UPSERT = text(
    "INSERT INTO ticket_counters (prefix, day, last_serial) VALUES (:prefix, :day, 1) "
    "ON CONFLICT (prefix, day) DO UPDATE SET last_serial = ticket_counters.last_serial + 1 "
    "RETURNING last_serial"
)


def allocate(session: Session, fmt: NumberFormat, at: datetime) -> str:
    """Hand out the next number for the local day of ``at``, inside the caller's transaction.

    Both SQLite (>= 3.35) and PostgreSQL run the upsert atomically; the counter row stays
    locked until the caller commits, so a rolled-back intake gives its serial back.
    """
    day = fmt.day(at)
    # on the session's connection, not through the session: the counter is no ORM object,
    # so what the session has not written yet (an autoflush) cannot change the answer
    serial = session.connection().execute(_UPSERT, {"prefix": fmt.prefix,
                                                    "day": day}).scalar_one()
    return fmt.format(day, int(serial))
