"""LMTP: the site's MTA hands mail straight to intake (what Mailman 3 does), no IMAP in between.

Why: through IMAP a mail waits for the server's push (IDLE answers in ~0.6 s, 0.5 s of it
Dovecot's own delay). A site that runs its own MTA (Postfix, Exim) can deliver to ticketd over
LMTP (RFC 2033) instead, and the acceptance is queued within the LMTP transaction.

The contract with the MTA is what makes it lossless, as the IMAP move after commit is:

* ``RCPT TO`` an address that is none of ours (``[support] address``, ``aliases``, a mailbox's
  ``address``; ``+tag`` ignored) is refused with 550, so the MTA bounces it at once.
* After ``DATA`` the message goes through :meth:`~daemon.intake.pipeline.Intake.ingest_batch`
  (one message, one transaction) and each recipient gets ``250`` only once it has committed.
  A message that cannot be processed is quarantined (committed too): 250, it is ours now.
* The database unreachable (or anything unexpected): ``451`` for every recipient, so the MTA
  keeps the mail in its queue and tries again; nothing was committed, nothing is lost.

Intake runs on one worker thread, one message at a time (the asyncio loop only talks LMTP);
``on_delivered()`` is called after each commit that queued mail, so the daemon's sender goes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller, UnixSocketController
from aiosmtpd.lmtp import LMTP
from aiosmtpd.smtp import Envelope, Session

from daemon.addresses import normalize
from daemon.app import App
from daemon.errors import ConfigError, TransientError
from daemon.intake import imap
from daemon.intake.pipeline import Intake, Notifier
from daemon.intake.sources import RawMail
from daemon.outcomes import IntakeResult

log = logging.getLogger("ticketd.lmtp")


class LmtpHandler:
    """aiosmtpd's handler hooks (``handle_RCPT``, ``handle_DATA``) for ticketd's intake."""

    def __init__(self, app: App, *, notifier: Notifier | None = None,
                 on_delivered: Callable[[], None] | None = None) -> None:
        self.app = app
        self.notifier = notifier
        self.on_delivered = on_delivered or (lambda: None)
        self._work = ThreadPoolExecutor(max_workers=1, thread_name_prefix="ticketd-lmtp")
        self._intakes: dict[str | None, Intake] = {}

    def close(self) -> None:
        self._work.shutdown(wait=True)

    def _boxes(self) -> dict[str, imap.MailboxSpec]:
        """Each configured mailbox by its normalised address (for its team and label)."""
        return {normalize(s.address): s for s in imap.mailboxes(self.app.config.imap)
                if s.address}

    def is_ours(self, address: str) -> bool:
        """Our mailbox with any ``+tag`` (a VERP address for bounces, or a tag someone wrote)."""
        return self.app.config.is_own(address)

    async def handle_RCPT(self, server: Any, session: Session, envelope: Envelope,
                          address: str, rcpt_options: list[str]) -> str:
        if not self.is_ours(address):
            return f"550 5.1.1 <{address}>: not a support address of this ticketd"
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(rcpt_options)
        return "250 2.1.5 OK"

    async def handle_DATA(self, server: Any, session: Session, envelope: Envelope) -> str:
        raw = envelope.original_content or b""
        if isinstance(envelope.content, bytes) and not raw:
            raw = envelope.content
        where: Any = session.peer
        peer = where if isinstance(where, str) else ":".join(str(p) for p in where or ())
        origin = f"lmtp:{peer or 'local'};from=<{envelope.mail_from or ''}>"
        rcpts = list(envelope.rcpt_tos)
        loop = asyncio.get_running_loop()
        try:
            result = await loop.run_in_executor(self._work, self.deliver, raw, origin, rcpts)
        except TransientError as exc:
            log.warning("lmtp: %s; the MTA keeps the mail (451)", exc)
            return _each(rcpts, "451 4.3.0 database unavailable, try again later")
        except Exception:
            log.exception("lmtp: intake failed unexpectedly; the MTA keeps the mail (451)")
            return _each(rcpts, "451 4.3.0 temporary failure, try again later")
        return _each(rcpts, f"250 2.0.0 {result.action}"
                            f"{' ' + result.number if result.number else ''}")

    def deliver(self, raw: bytes, origin: str, rcpts: list[str]) -> IntakeResult:
        """One message through intake (the worker thread); raises TransientError."""
        boxes = self._boxes()
        spec = next((boxes[normalize(r)] for r in rcpts if normalize(r) in boxes), None)
        key = spec.key if spec is not None else None
        intake = self._intakes.get(key)
        if intake is None or intake.app.config is not self.app.config:
            intake = Intake(self.app, notifier=self.notifier,
                            origin_mailbox=spec.label if spec is not None else None,
                            default_team=spec.team if spec is not None else None)
            self._intakes[key] = intake
        [result] = intake.ingest_batch([RawMail(raw, origin, envelope_to=tuple(rcpts))])
        if result.action in ("created", "appended"):
            self.on_delivered()
        return result


def _each(rcpts: list[str], line: str) -> str:
    """LMTP answers DATA once per accepted recipient (RFC 2033 section 4.2)."""
    return "\r\n".join(line for _ in rcpts) if rcpts else line


class _InetController(Controller):
    def factory(self) -> LMTP:
        return LMTP(self.handler, **self.SMTP_kwargs)


class _UnixController(UnixSocketController):
    def factory(self) -> LMTP:
        return LMTP(self.handler, **self.SMTP_kwargs)


class LmtpServer:
    """The LMTP listener in its own thread (``[lmtp]`` host and port, or socket)."""

    def __init__(self, app: App, *, notifier: Notifier | None = None,
                 on_delivered: Callable[[], None] | None = None) -> None:
        cfg = app.config.lmtp
        self.handler = LmtpHandler(app, notifier=notifier, on_delivered=on_delivered)
        limit = 2 * app.config.attachments.max_message_bytes + 1024 * 1024  # base64 + headers
        kwargs: dict[str, Any] = {"data_size_limit": limit, "enable_SMTPUTF8": True,
                                  "ident": "ticketd LMTP"}
        self.where = cfg.socket or f"{cfg.host}:{cfg.port}"
        self._controller: Controller | UnixSocketController
        if cfg.socket:
            Path(cfg.socket).unlink(missing_ok=True)
            self._controller = _UnixController(self.handler, unix_socket=cfg.socket, **kwargs)
        else:
            self._controller = _InetController(self.handler, hostname=cfg.host, port=cfg.port,
                                               **kwargs)

    def start(self) -> None:
        try:
            self._controller.start()
        except (OSError, RuntimeError, TimeoutError) as exc:
            raise ConfigError(f"[lmtp] cannot listen on {self.where}: {exc}") from exc
        log.info("LMTP listening on %s", self.where)

    def stop(self) -> None:
        with contextlib.suppress(AssertionError):  # never started
            self._controller.stop()
        self.handler.close()
