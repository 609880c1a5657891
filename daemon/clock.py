"""Time as an injected dependency, so nothing in the tests sleeps.

Every piece of ticketd that needs "now" takes a :class:`Clock`. Production uses
:class:`SystemClock`; tests use :class:`FixedClock` and move it with :meth:`FixedClock.advance`.

Showing a time is here too, so every output agrees: people read :func:`format_time`
(``2023-10-27 09:30:00 +08:00``: the ``[support] timezone``, to the second, with the offset);
JSON carries :func:`iso_time`, the same instant in the same zone as ISO 8601.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, tzinfo
from typing import Protocol


def _local(at: datetime, zone: tzinfo) -> datetime:
    """``at`` in ``zone``; a naive time is UTC (how the database stores every time)."""
    return (at if at.tzinfo is not None else at.replace(tzinfo=UTC)).astimezone(zone)


def format_time(at: datetime, zone: tzinfo) -> str:
    """A moment as people read it everywhere: ``2023-10-27 09:30:00 +08:00``."""
    local = _local(at, zone)
    offset = local.strftime("%z") or "+0000"
    return f"{local:%Y-%m-%d %H:%M:%S} {offset[:-2]}:{offset[-2:]}"


def iso_time(at: datetime, zone: tzinfo) -> str:
    """The same moment for JSON: ``2023-10-27T09:30:00+08:00``."""
    return _local(at, zone).isoformat(timespec="seconds")


class Clock(Protocol):
    """Tells the current time as an aware UTC datetime."""

    def now(self) -> datetime: ...


class SystemClock:
    """The wall clock."""

    def now(self) -> datetime:
        return datetime.now(UTC)


class FixedClock:
    """A clock that stands still until told to move; for tests and replays."""

    def __init__(self, at: datetime | None = None) -> None:
        self._at = at or datetime(2023, 10, 27, 1, 0, tzinfo=UTC)
        if self._at.tzinfo is None:
            raise ValueError("FixedClock needs an aware datetime")

    def now(self) -> datetime:
        return self._at

    def advance(self, delta: timedelta) -> None:
        self._at += delta

    def set(self, at: datetime) -> None:
        self._at = at


class Backoff:
    """Exponential delays in seconds (base, 2 base, 4 base ...) up to ``cap``; ``reset()``
    after a success. Pure arithmetic: the caller waits, on whatever it can be woken from."""

    def __init__(self, base: float = 1.0, cap: float = 60.0) -> None:
        self.base = base
        self.cap = cap
        self.failures = 0

    def next(self) -> float:
        delay = min(self.cap, self.base * 2.0 ** self.failures)
        self.failures += 1
        return delay

    def reset(self) -> None:
        self.failures = 0
