"""Time as an injected dependency, so nothing in the tests sleeps.

Every piece of ticketd that needs "now" takes a :class:`Clock`. Production uses
:class:`SystemClock`; tests use :class:`FixedClock` and move it with :meth:`FixedClock.advance`.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Protocol


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
