"""Named, expiring leases in the database: which instance does a shared job.

Why: several ``ticketd run`` processes may share one database and the same mailboxes (that is
how a site outgrows one machine). Deduplication already makes a second sighting of a message
harmless, but two pollers on one folder would race on every MOVE and double the IMAP load. So
each mailbox (and each site-wide job such as the SLA sweep) has a lease row in ``leases``:
``name`` -> ``holder`` until ``expires_at``. Only the holder does the job; it renews the lease
well before it runs out, and an instance that dies simply stops renewing, so another takes the
job over once ``expires_at`` has passed.

Taking and renewing are one atomic statement on SQLite and PostgreSQL alike::

    INSERT INTO leases (name, holder, expires_at) VALUES (:name, :me, :until)
    ON CONFLICT (name) DO UPDATE SET holder = :me, expires_at = :until
        WHERE leases.expires_at < :now OR leases.holder = :me
    RETURNING holder

A row comes back exactly when we hold the lease afterwards; two instances racing for a free
lease are serialised by the primary key, and only one of them gets a row. Time comes from the
injected clock, so tests move it instead of sleeping; across hosts the clocks must agree to
well within a third of ``lease_seconds`` (NTP does that).
"""

from __future__ import annotations

import logging
import os
import secrets
import socket
import threading
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import delete, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import OperationalError

from daemon.app import App
from daemon.errors import TransientError
from daemon.models import Lease

log = logging.getLogger("ticketd.leases")


def holder_id() -> str:
    """``host:pid:random``: unique per process start, readable in ``ticketd status``."""
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"


@dataclass(frozen=True)
class LeaseInfo:
    name: str
    holder: str
    expires_at: datetime


def acquire(app: App, name: str, holder: str, seconds: int) -> bool:
    """Take the lease ``name`` if it is free or expired, or renew it if ``holder`` has it.

    Returns True when ``holder`` holds the lease until now + ``seconds`` afterwards.
    Raises :class:`TransientError` when the database cannot be reached.
    """
    now = app.clock.now()
    until = now + timedelta(seconds=seconds)
    db = app.ready_db()
    dialect = postgresql if not db.is_sqlite else sqlite
    stmt = dialect.insert(Lease).values(name=name, holder=holder, expires_at=until)
    stmt = stmt.on_conflict_do_update(
        index_elements=[Lease.name],
        set_={"holder": holder, "expires_at": until},
        where=(Lease.expires_at < now) | (Lease.holder == holder),
    ).returning(Lease.holder)
    try:
        with db.transaction() as session:
            got = session.execute(stmt).scalar_one_or_none()
    except OperationalError as exc:
        raise TransientError(f"database unavailable, cannot take lease {name}: {exc.orig}") \
            from exc
    return got == holder


def release(app: App, name: str, holder: str) -> bool:
    """Give the lease up (clean shutdown) so another instance takes over at once."""
    try:
        with app.ready_db().transaction() as session:
            gone = session.execute(
                delete(Lease).where(Lease.name == name, Lease.holder == holder)
                .returning(Lease.name)).first()
    except OperationalError as exc:
        raise TransientError(f"database unavailable, cannot release lease {name}: {exc.orig}") \
            from exc
    return gone is not None


def current(app: App, name: str) -> LeaseInfo | None:
    """Who holds ``name`` and until when (an expired row is still returned: check it)."""
    with app.ready_db().transaction() as session:
        row = session.scalars(select(Lease).where(Lease.name == name)).first()
        return LeaseInfo(row.name, row.holder, row.expires_at) if row else None


def all_leases(app: App) -> dict[str, LeaseInfo]:
    with app.ready_db().transaction() as session:
        return {r.name: LeaseInfo(r.name, r.holder, r.expires_at)
                for r in session.scalars(select(Lease))}


class Keeper:
    """One lease held by this process, renewed only when a third of its time has passed.

    Several threads of one process (a mailbox's IDLE worker and its poll job) share a Keeper;
    :meth:`hold` is cheap when nothing is due, so it can be asked after every message.
    """

    def __init__(self, app: App, name: str, holder: str, seconds: int) -> None:
        self.app = app
        self.name = name
        self.holder = holder
        self.seconds = seconds
        self._lock = threading.Lock()
        self._renewed_at: datetime | None = None

    @property
    def held(self) -> bool:
        with self._lock:
            return self._valid()

    def _valid(self) -> bool:
        return (self._renewed_at is not None and
                self.app.clock.now() < self._renewed_at + timedelta(seconds=self.seconds))

    def hold(self) -> bool:
        """True if we hold the lease (taking or renewing it in the database when due)."""
        with self._lock:
            now = self.app.clock.now()
            if (self._renewed_at is not None and
                    now < self._renewed_at + timedelta(seconds=self.seconds / 3)):
                return True
            was_held = self._valid()
            if acquire(self.app, self.name, self.holder, self.seconds):
                if not was_held:
                    log.info("lease %s taken by %s", self.name, self.holder)
                self._renewed_at = now
                return True
            if was_held:
                log.warning("lease %s lost: another instance holds it", self.name)
            self._renewed_at = None
            return False

    def release(self) -> None:
        with self._lock:
            if self._renewed_at is None:
                return
            self._renewed_at = None
            if release(self.app, self.name, self.holder):
                log.info("lease %s released by %s", self.name, self.holder)
