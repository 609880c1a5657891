"""A loopback SMTP sink (aiosmtpd ``Controller``) that records what it received.

Why: the outbox and the SMTP transport must be tested against a real SMTP conversation
(smtplib's exceptions, 4xx versus 5xx, connection refused, AUTH), not a patched ``smtplib``.
Faults are injected by the handler itself, the way aiosmtpd's own ``ErroringDataHandler``
does it: ``fail_next(n, code)`` answers the next ``n`` DATA commands with that code.

Tests assert on ``received`` (or ``wait_for(count)``, which blocks on a condition variable
until the server thread has recorded the mail: an event, not a sleep).

:class:`SilentServer` is the other kind of broken server: it accepts TCP connections and never
says a word, as a host behind a firewall that drops packets after the handshake does.
"""

from __future__ import annotations

import contextlib
import errno
import socket
import threading
from collections import deque
from dataclasses import dataclass
from email import message_from_bytes, policy
from email.message import EmailMessage
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session

from tests.servers.dovecot import HOST, free_port

SERVER_HOSTNAME = "smtp.ticketd.test"
"""Name the sink gives in its greeting; set so aiosmtpd never calls ``socket.getfqdn()``."""


@dataclass(frozen=True)
class Received:
    """One message as the server got it: envelope, the exact DATA bytes, and a parse."""

    mail_from: str
    rcpt_tos: tuple[str, ...]
    data: bytes
    message: EmailMessage
    auth_login: str | None
    """The user that authenticated on this connection, or None without SMTP AUTH."""


@dataclass(frozen=True)
class _Fault:
    code: int
    text: str


class RecordingHandler:
    """aiosmtpd handler: records accepted mail and plays back injected DATA failures.

    Hooks run on the controller's event-loop thread; tests read from theirs, hence the lock.
    """

    def __init__(self, *, require_auth: bool = False) -> None:
        self._cond = threading.Condition()
        self._received: list[Received] = []
        self._rejected: list[Received] = []
        self._faults: deque[_Fault] = deque()
        # Enforced here rather than with SMTP(auth_required=True), which warns (UserWarning,
        # an error under filterwarnings=error) when TLS is not also required.
        self.require_auth = require_auth

    # -- aiosmtpd hooks ------------------------------------------------------------------

    async def handle_MAIL(
        self,
        server: SMTP,
        session: Session,
        envelope: Envelope,
        address: str,
        mail_options: list[str],
    ) -> str:
        if self.require_auth and not session.authenticated:
            return "530 5.7.0 Authentication required"
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        data = envelope.original_content or b""
        login = None
        auth_data: Any = session.auth_data  # aiosmtpd types it as None; it holds our AuthResult's
        if isinstance(auth_data, LoginPassword):
            login = auth_data.login.decode("utf-8", "replace")
        message = message_from_bytes(data, policy=policy.default)
        assert isinstance(message, EmailMessage)
        item = Received(
            mail_from=envelope.mail_from or "",
            rcpt_tos=tuple(envelope.rcpt_tos),
            data=data,
            message=message,
            auth_login=login,
        )
        with self._cond:
            if self._faults:
                fault = self._faults.popleft()
                self._rejected.append(item)
                self._cond.notify_all()
                return f"{fault.code} {fault.text}"
            self._received.append(item)
            self._cond.notify_all()
        return "250 2.0.0 OK"

    # -- test side -----------------------------------------------------------------------

    def fail_next(self, n: int, code: int = 451, text: str = "Try again later") -> None:
        if not 400 <= code <= 599:
            raise ValueError(f"fault code must be 4xx or 5xx, got {code}")
        if n < 0:
            raise ValueError(f"n must be >= 0, got {n}")
        with self._cond:
            self._faults.extend([_Fault(code, text)] * n)

    @property
    def received(self) -> list[Received]:
        with self._cond:
            return list(self._received)

    @property
    def rejected(self) -> list[Received]:
        with self._cond:
            return list(self._rejected)

    def clear(self) -> None:
        with self._cond:
            self._received.clear()
            self._rejected.clear()
            self._faults.clear()

    def wait_for(self, count: int, timeout: float = 5.0) -> list[Received]:
        with self._cond:
            if not self._cond.wait_for(lambda: len(self._received) >= count, timeout):
                raise TimeoutError(
                    f"SMTP sink got {len(self._received)} message(s) in {timeout} s,"
                    f" expected {count} (rejected: {len(self._rejected)})"
                )
            return list(self._received)


class Authenticator:
    """Accepts exactly one user/password pair over AUTH PLAIN or LOGIN."""

    def __init__(self, user: str, password: str) -> None:
        self._expected = LoginPassword(user.encode(), password.encode())

    def __call__(
        self,
        server: SMTP,
        session: Session,
        envelope: Envelope,
        mechanism: str,
        auth_data: Any,
    ) -> AuthResult:
        ok = isinstance(auth_data, LoginPassword) and tuple(auth_data) == tuple(self._expected)
        # handled=False lets aiosmtpd send the standard 535 on failure.
        return AuthResult(success=ok, handled=False, auth_data=auth_data)


class SmtpSink:
    """The controller plus its handler, restartable on the same port.

    aiosmtpd closes a controller's event loop on ``stop()``, so ``start()`` builds a new
    ``Controller`` each time; the handler (and so the record of received mail) is kept.

    ``auth=(user, password)`` offers AUTH PLAIN/LOGIN over plain TCP (``auth_require_tls``
    off: loopback only); ``require_auth=True`` makes MAIL FROM answer 530 until AUTH.
    """

    host: str = HOST

    def __init__(
        self,
        *,
        auth: tuple[str, str] | None = None,
        require_auth: bool = False,
        port: int = 0,
    ) -> None:
        if require_auth and auth is None:
            raise ValueError("require_auth needs auth=(user, password)")
        self.handler = RecordingHandler(require_auth=require_auth)
        self.port = port
        self._auth = auth
        self._controller: Controller | None = None

    def __enter__(self) -> SmtpSink:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def running(self) -> bool:
        return self._controller is not None

    def start(self) -> None:
        """Listen on 127.0.0.1 (a fresh free port first, then always the same one)."""
        if self._controller is not None:
            raise RuntimeError("SMTP sink already running")
        keep_port = self.port != 0
        for _attempt in range(1 if keep_port else 5):
            port = self.port if keep_port else free_port()
            try:
                self._controller = self._start_controller(port)
            except OSError as err:
                if err.errno != errno.EADDRINUSE or keep_port:
                    raise
                continue
            self.port = port
            return
        raise RuntimeError("no free port for the SMTP sink after 5 tries")

    def _start_controller(self, port: int) -> Controller:
        kwargs: dict[str, Any] = {}
        if self._auth is not None:
            kwargs["authenticator"] = Authenticator(*self._auth)
            kwargs["auth_require_tls"] = False
        controller = Controller(
            self.handler,
            hostname=HOST,
            port=port,
            server_hostname=SERVER_HOSTNAME,
            ready_timeout=5.0,
            **kwargs,
        )
        try:
            controller.start()
        except BaseException:
            # The failed thread never ran the loop to completion: join it and close the loop
            # ourselves, or it leaks as a ResourceWarning.
            controller.stop(no_assert=True)
            with contextlib.suppress(Exception):
                controller.loop.close()
            raise
        return controller

    def stop(self) -> None:
        """Close the listener and every connection: clients now get connection refused."""
        if self._controller is None:
            return
        self._controller.stop()
        self._controller = None

    def restart(self) -> None:
        self.stop()
        self.start()

    # -- delegated to the handler --------------------------------------------------------

    def fail_next(self, n: int, code: int = 451, text: str = "Try again later") -> None:
        """Answer the next ``n`` DATA commands with ``code text`` (4xx or 5xx) instead of 250."""
        self.handler.fail_next(n, code, text)

    @property
    def received(self) -> list[Received]:
        """Accepted messages, oldest first (a copy)."""
        return self.handler.received

    @property
    def rejected(self) -> list[Received]:
        """Messages whose DATA was answered by an injected fault, oldest first (a copy)."""
        return self.handler.rejected

    def clear(self) -> None:
        self.handler.clear()

    def wait_for(self, count: int, timeout: float = 5.0) -> list[Received]:
        """Block until ``count`` messages were accepted; return all of them (TimeoutError)."""
        return self.handler.wait_for(count, timeout)

    def __repr__(self) -> str:
        state = "running" if self.running else "stopped"
        return f"<SmtpSink {self.host}:{self.port} {state} received={len(self.received)}>"


class SilentServer:
    """A real loopback socket that accepts TCP connections and never answers (no greeting).

    ``accepted`` lists the connections taken, so a test can count how often a client tried;
    ``close()`` closes them all, which ends a client's blocked read at once.
    """

    host: str = HOST

    def __init__(self) -> None:
        self.listener = socket.create_server((HOST, 0))
        self.port: int = self.listener.getsockname()[1]
        self._lock = threading.Lock()
        self._accepted: list[socket.socket] = []
        self._thread = threading.Thread(target=self._accept, name="silent-smtp", daemon=True)
        self._thread.start()

    @property
    def accepted(self) -> list[socket.socket]:
        with self._lock:
            return list(self._accepted)

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            with self._lock:
                self._accepted.append(conn)

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.listener.shutdown(socket.SHUT_RDWR)  # wakes the accept() (close alone does not)
        self.listener.close()
        with self._lock:
            for conn in self._accepted:
                conn.close()
        self._thread.join(5)

    def __enter__(self) -> SilentServer:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
