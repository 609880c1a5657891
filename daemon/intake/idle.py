"""The IMAP IDLE worker: one thread per mailbox that keeps a connection selected and waiting.

Why a worker of its own: polling every ``poll_interval`` seconds answers a mail a minute late;
IDLE (RFC 2177) lets the server push ``EXISTS`` the moment a mail lands. The worker catches up
with a poll, IDLEs, and on ``EXISTS`` polls again. It re-issues IDLE every ``IDLE_RENEW``
(well inside the 29-minute limit of RFC 2177) and waits in ``idle_check`` slices so that a stop
request is seen within a second. A dropped connection is re-established with exponential
backoff (one log line per try); a refused login is a configuration problem, logged once
(:class:`~daemon.logs.Outage`) and tried again quietly until an admin fixes it.

The worker only knows the callables it is given (``poll``, ``holding``, ``stopping``,
``sleep``), never the daemon object: it never sends mail and never waits on SMTP. What the poll
brings in is handed on by ``poll`` itself (the daemon wakes its sender), so a slow or silent
SMTP server cannot keep the mailbox from being watched.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from imapclient import IMAPClient
from imapclient.exceptions import IMAPClientError
from sqlalchemy.exc import OperationalError

from daemon.clock import Backoff
from daemon.errors import LoginRefused, MailboxUnavailable, TicketdError
from daemon.intake import imap
from daemon.logs import Outage
from daemon.outcomes import PollReport

log = logging.getLogger("ticketd.idle")

IDLE_CHECK = 1.0              # seconds per idle_check slice: how soon a stop is noticed
IDLE_RENEW = 25 * 60          # re-issue IDLE after this long (servers drop it after 29 min)
BACKOFF_CAP = 60.0            # the longest wait between reconnection attempts

Poll = Callable[[IMAPClient], "PollReport | None"]


class IdleWorker(threading.Thread):
    """Holds one mailbox's IMAP connection in IDLE while this instance holds its lease.

    ``poll(client)`` polls the mailbox over this connection (None: stopping, or the lease is
    gone); ``holding()`` says whether this instance holds the mailbox's lease (renewing it);
    ``stopping()`` whether to end; ``sleep(seconds)`` waits but wakes for a stop request;
    ``standby`` is how long to wait while another instance holds the lease; ``outage`` is the
    mailbox's shared record of a refused login; ``on_failure`` counts a failed connection;
    ``now`` is the injected clock.
    """

    def __init__(self, spec: imap.MailboxSpec, *, poll: Poll, holding: Callable[[], bool],
                 stopping: Callable[[], bool], sleep: Callable[[float], None],
                 standby: float, poll_interval: int, outage: Outage | None = None,
                 on_failure: Callable[[], None] | None = None,
                 now: Callable[[], datetime] | None = None,
                 idle_check: float = IDLE_CHECK) -> None:
        super().__init__(name=f"ticketd-idle-{spec.label}", daemon=True)
        self.spec = spec
        self._poll = poll
        self._holding = holding
        self._stopping = stopping
        self._sleep = sleep
        self.standby = standby
        self.poll_interval = poll_interval
        self.outage = outage or Outage(log, f"imap {spec.label}")
        self._on_failure = on_failure or (lambda: None)
        self._now = now or (lambda: datetime.now(UTC))
        self.idle_check = idle_check
        self.idling = False
        self._client: IMAPClient | None = None
        self._backoff = Backoff(cap=BACKOFF_CAP)

    def abort(self) -> None:
        """From another thread: break a blocked socket read so the thread can end."""
        client = self._client
        if client is not None:
            with contextlib.suppress(OSError):
                client.socket().shutdown(socket.SHUT_RDWR)

    def run(self) -> None:
        label = self.spec.label
        failing = False
        while not self._stopping():
            try:
                if not self._holding():
                    self._sleep(self.standby)  # another instance has it
                    continue
                if not self._session(reconnected=failing):
                    return  # no IDLE on this server: the poll job does the work
                failing = False
            except LoginRefused as exc:
                failing = True
                delay = self._backoff.next()
                self._on_failure()
                self.outage.failed(str(exc), self._now(), level=logging.ERROR,
                                   again=logging.DEBUG,
                                   detail="mail stays in the folder; trying again quietly")
                self._sleep(delay)
            except (TicketdError, OSError, IMAPClientError, OperationalError) as exc:
                if self._stopping():
                    break
                failing = True
                delay = self._backoff.next()
                self._on_failure()
                why = _one_line(exc)
                where = "" if why.startswith("imap ") else f"{label}: "
                log.warning("%s%s; reconnecting in %.0f s", where, why, delay)
                self._sleep(delay)
            except Exception:
                failing = True
                delay = self._backoff.next()
                self._on_failure()
                log.exception("%s: IDLE worker failed; restarting in %.0f s", label, delay)
                self._sleep(delay)

    def _session(self, *, reconnected: bool) -> bool:
        """One connection: catch up, then IDLE / poll until told to stop or the lease is
        lost. False when the server has no IDLE."""
        spec = self.spec
        client = imap.connect(spec)
        self.outage.ended(self._now())
        self._client = client
        try:
            if not client.has_capability("IDLE"):
                log.info("%s: the server does not offer IDLE; polling every %d s", spec.label,
                         self.poll_interval)
                return False
            first = True
            while not self._stopping():
                report = self._poll(client)
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
                responses = client.idle_check(timeout=self.idle_check)
                if any(_is(r, b"BYE") for r in responses):
                    raise MailboxUnavailable(f"imap {self.spec.key}: server closed the "
                                             "connection (BYE)")
                if not responses and time.monotonic() - t0 < self.idle_check / 2 and \
                        _at_eof(client):
                    raise MailboxUnavailable(f"imap {self.spec.key}: connection closed")
                if any(_is(r, b"EXISTS") for r in responses):
                    break
                if time.monotonic() - began > IDLE_RENEW or not self._holding():
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
