"""`ticketd lmtp` and `ticketd run` with `[lmtp] enabled`, as the site's MTA meets them: a real
LMTP client hands a mail over, the acceptance arrives at the SMTP sink, SIGTERM exits 0."""

from __future__ import annotations

import os
import signal
import smtplib
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests import messages
from tests.e2e.conftest import REPO
from tests.servers.dovecot import Dovecot, free_port
from tests.servers.smtp import SmtpSink


def config(folder: Path, database_url: str, sink: SmtpSink, port: int,
           imap: Dovecot | None = None) -> Path:
    text = ('[support]\naddress = "support@corp.example"\nname = "Corp Support"\n'
            f'[database]\nurl = "{database_url}"\n'
            f'[smtp]\nbackend = "smtp"\nhost = "{sink.host}"\nport = {sink.port}\n'
            'security = "none"\n'
            f'[attachments]\ndir = "{folder / "attachments"}"\n'
            f'[lmtp]\nenabled = true\nport = {port}\n')
    if imap is not None:
        text += (f'[imap]\nhost = "{imap.host}"\nport = {imap.port}\nsecurity = "none"\n'
                 'username = "support"\npassword_env = "T_IMAP_PW"\npoll_interval = 600\n')
    path = folder / "config.toml"
    path.write_text(text, encoding="utf-8")
    return path


def serve(path: Path, command: str) -> subprocess.Popen[bytes]:
    env = {**os.environ, "PYTHONPATH": str(REPO), "T_IMAP_PW": "support-pass"}
    with (path.parent / f"{command}.log").open("wb") as log:
        return subprocess.Popen([sys.executable, "-m", "daemon", "--config", str(path),
                                 command], cwd=path.parent, env=env, stdin=subprocess.DEVNULL,
                                stdout=log, stderr=subprocess.STDOUT)


def deliver(port: int, proc: subprocess.Popen[bytes], raw: bytes) -> dict[str, object]:
    """Hand ``raw`` over as an MTA would, once the server listens."""
    deadline = time.monotonic() + 30
    while True:
        try:
            with smtplib.LMTP("127.0.0.1", port, timeout=30) as lmtp:
                return dict(lmtp.sendmail("li@corp.example", ["support@corp.example"], raw))
        except ConnectionRefusedError:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise
            time.sleep(0.05)   # the server is still starting


@pytest.mark.parametrize("command", ["lmtp", "run"])
def test_an_lmtp_delivery_is_answered_by_mail(tmp_path: Path, database_url: str,
                                              smtp_server: SmtpSink, imap: Dovecot,
                                              command: str) -> None:
    port = free_port()
    path = config(tmp_path, database_url, smtp_server, port,
                  imap if command == "run" else None)
    proc = serve(path, command)
    try:
        assert deliver(port, proc, messages.mail(sender="李四 <li@corp.example>")) == {}
        [got] = smtp_server.wait_for(1, timeout=60)
        assert got.rcpt_tos == ("li@corp.example",)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(15) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
        print((tmp_path / f"{command}.log").read_text(errors="replace"))
