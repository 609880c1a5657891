"""Service levels: how soon a ticket of each priority must be assigned to a handler.

The standard process: P0 within 15 minutes, P1 30 minutes, P2 1 hour, P3 2 hours. Time always
comes from the injected clock, never from the wall.
"""

from __future__ import annotations

from datetime import datetime, timedelta

ASSIGN_WITHIN: dict[str, timedelta] = {
    "P0": timedelta(minutes=15),
    "P1": timedelta(minutes=30),
    "P2": timedelta(hours=1),
    "P3": timedelta(hours=2),
}


def assign_within(priority: str) -> timedelta:
    return ASSIGN_WITHIN.get(priority, ASSIGN_WITHIN["P2"])


def assign_deadline(priority: str, opened_at: datetime) -> datetime:
    return opened_at + assign_within(priority)
