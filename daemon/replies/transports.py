"""How a composed mail leaves: the Transport protocol, SMTP, and a folder of .eml files.

A transport is used as a context manager around one batch, so SMTP reuses a single connection
for every mail of a flush. ``send`` returns normally when the mail was accepted and raises

* :class:`~daemon.errors.TransportUnavailable` when the server cannot be reached at all
  (refused, timed out, no greeting, no STARTTLS): nothing about this mail was tried, and the
  outbox gives the whole batch back without counting an attempt;
* :class:`~daemon.errors.LoginRefused` when the server refuses our credentials: the same, and
  it is a configuration error an admin must fix;
* :class:`~daemon.errors.TransportTemporary` for this mail only (4xx, connection dropped
  mid-send: try again later, one attempt counted);
* :class:`~daemon.errors.TransportPermanent` (5xx: retrying will not help).
"""

from __future__ import annotations

import os
import re
import smtplib
import ssl
import tempfile
from collections.abc import Sequence
from email.utils import getaddresses
from pathlib import Path
from types import TracebackType
from typing import Protocol, Self

from daemon.config import SmtpConfig
from daemon.errors import (
    LoginRefused,
    TransportPermanent,
    TransportTemporary,
    TransportUnavailable,
)


class Transport(Protocol):
    """Delivers raw RFC 5322 bytes to recipients; one batch per ``with`` block."""

    def __enter__(self) -> Self: ...

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None: ...

    def send(self, sender: str, recipients: Sequence[str], raw: bytes) -> dict[str, str]:
        """Deliver; returns the recipients refused while others were accepted (usually {})."""
        ...


class FileTransport:
    """Writes each mail as ``<message-id>.eml`` into a folder: the quick-start backend.

    Writing is atomic (temporary file + rename), and the file name comes from the Message-ID,
    so sending the same mail twice after a crash leaves one file. The envelope is recorded as
    a delivering MTA records it: a ``Return-Path`` line with the envelope sender on top. A
    copy sent to only some of the mail's To/Cc (one envelope per recipient with ``[mail]
    verp``) is ``<message-id>+<recipients>.eml``, so the copies do not overwrite each other.
    """

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def __enter__(self) -> Self:
        self.folder.mkdir(parents=True, exist_ok=True)
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        return None

    @staticmethod
    def file_name(raw: bytes, recipients: Sequence[str] = ()) -> str:
        match = re.search(rb"^Message-ID:\s*<([^>\r\n]+)>", raw, re.IGNORECASE | re.MULTILINE)
        stem = match.group(1).decode("ascii", "replace") if match else "mail"
        wanted = {r.strip().lower() for r in recipients}
        if wanted and wanted != _header_recipients(raw):
            stem += "+" + ",".join(sorted(wanted))
        return re.sub(r"[^A-Za-z0-9._@+,-]", "_", stem)[:200] + ".eml"

    def send(self, sender: str, recipients: Sequence[str], raw: bytes) -> dict[str, str]:
        target = self.folder / self.file_name(raw, recipients)
        try:
            fd, tmp = tempfile.mkstemp(dir=self.folder, prefix=".tmp-")
            with os.fdopen(fd, "wb") as fh:
                fh.write(f"Return-Path: <{sender}>\r\n".encode())
                fh.write(raw)
            os.replace(tmp, target)
        except OSError as exc:
            raise TransportTemporary(f"cannot write {target}: {exc.strerror}") from exc
        return {}


# A To or Cc field of a header block, with its folded lines (RFC 5322 3.2.2)
_ADDRESS_FIELD = re.compile(rb"^(?:to|cc)[ \t]*:(.*(?:\r?\n[ \t].*)*)",
                            re.IGNORECASE | re.MULTILINE)
_FOLD = re.compile(rb"\r?\n(?=[ \t])")


def _header_recipients(raw: bytes) -> set[str]:
    """The addresses of a mail's To and Cc (the whole mail's recipients)."""
    end = raw.find(b"\r\n\r\n")
    head = raw[:end] if end >= 0 else raw
    # Read as UTF-8: a mail to an internationalised address has UTF-8 headers (RFC 6532),
    # whose addresses must compare equal to the envelope's. Only the two fields are read
    # (the mail is ours: one header block, no parser needed), each unfolded.
    fields = [_FOLD.sub(b"", m.group(1)).decode("utf-8", "surrogateescape")
              for m in _ADDRESS_FIELD.finditer(head)]
    return {address.strip().lower() for _, address in getaddresses(fields) if address}


class SmtpTransport:
    """SMTP with implicit TLS, STARTTLS (never silently plain) or plain, and optional AUTH."""

    def __init__(self, cfg: SmtpConfig, ssl_context: ssl.SSLContext | None = None,
                 local_hostname: str | None = None) -> None:
        self.cfg = cfg
        self.context = ssl_context or ssl.create_default_context(cafile=cfg.ca_file or None)
        self.local_hostname = local_hostname
        self._client: smtplib.SMTP | None = None

    @property
    def where(self) -> str:
        return f"smtp {self.cfg.host}:{self.cfg.port}"

    def __enter__(self) -> Self:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def close(self) -> None:
        client, self._client = self._client, None
        if client is None:
            return
        try:
            client.quit()
        except (smtplib.SMTPException, OSError):
            client.close()

    def _connect(self) -> smtplib.SMTP:
        cfg = self.cfg
        try:
            if cfg.security == "ssl":
                client: smtplib.SMTP = smtplib.SMTP_SSL(
                    cfg.host, cfg.port, timeout=cfg.timeout, context=self.context,
                    local_hostname=self.local_hostname)
            else:
                client = smtplib.SMTP(cfg.host, cfg.port, timeout=cfg.timeout,
                                      local_hostname=self.local_hostname)
        except (smtplib.SMTPException, OSError) as exc:
            raise TransportUnavailable(f"{self.where}: cannot connect: {_reason(exc)}") from exc
        try:
            self._greet(client)
        except BaseException:
            client.close()
            raise
        return client

    def _greet(self, client: smtplib.SMTP) -> None:
        cfg = self.cfg
        try:
            client.ehlo()
            if cfg.security == "starttls":
                if not client.has_extn("starttls"):
                    raise TransportUnavailable(
                        f"{self.where}: server does not offer STARTTLS; not sending in plain text")
                client.starttls(context=self.context)
                client.ehlo()
            if cfg.username:
                client.login(cfg.username, cfg.password.reveal())
        except smtplib.SMTPAuthenticationError as exc:
            # A wrong password is fixed by an admin, not by time: keep the mail queued, say so.
            raise LoginRefused(f"{self.where}: login refused for {cfg.username}: "
                               f"{exc.smtp_code} {_text(exc.smtp_error)}; check [smtp] "
                               "username and password_env/password_file") from exc
        except (smtplib.SMTPException, OSError) as exc:
            raise TransportUnavailable(f"{self.where}: cannot connect: {_reason(exc)}") from exc

    def send(self, sender: str, recipients: Sequence[str], raw: bytes) -> dict[str, str]:
        if self._client is None:
            self._client = self._connect()
        options = ["SMTPUTF8"] if not all(a.isascii() for a in (sender, *recipients)) else []
        if options and not self._client.has_extn("smtputf8"):
            raise TransportPermanent(f"{self.where}: an address is not ASCII and the server "
                                     "does not offer SMTPUTF8")
        try:
            refused = self._client.sendmail(sender, list(recipients), raw, mail_options=options)
        except UnicodeEncodeError as exc:
            raise TransportPermanent(f"{self.where}: cannot encode the envelope: {exc}") from exc
        except smtplib.SMTPRecipientsRefused as exc:
            codes = [code for code, _ in exc.recipients.values()]
            detail = "; ".join(f"{rcpt}: {code} {_text(msg)}"
                               for rcpt, (code, msg) in exc.recipients.items())
            if any(400 <= code < 500 for code in codes):
                raise TransportTemporary(f"{self.where}: {detail}") from exc
            raise TransportPermanent(f"{self.where}: {detail}") from exc
        except smtplib.SMTPResponseException as exc:
            message = f"{self.where}: {exc.smtp_code} {_text(exc.smtp_error)}"
            if exc.smtp_code >= 500:
                raise TransportPermanent(message) from exc
            self._reset()
            raise TransportTemporary(message) from exc
        except (smtplib.SMTPException, OSError) as exc:
            self._drop()
            raise TransportTemporary(f"{self.where}: connection lost: {exc}") from exc
        return {rcpt: f"{code} {_text(msg)}" for rcpt, (code, msg) in refused.items()}

    def _reset(self) -> None:
        try:
            if self._client is not None:
                self._client.rset()
        except (smtplib.SMTPException, OSError):
            self._drop()

    def _drop(self) -> None:
        if self._client is not None:
            self._client.close()
        self._client = None


def _reason(exc: BaseException) -> str:
    """``timed out`` rather than an empty string for a bare socket timeout."""
    return str(exc) or type(exc).__name__


def _text(value: bytes | str) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else value


def from_config(cfg: SmtpConfig) -> Transport:
    if cfg.backend == "file":
        return FileTransport(Path(cfg.file_dir))
    return SmtpTransport(cfg)
