"""`ticketd poll --once` as an operator runs it, against the real Dovecot."""

from __future__ import annotations

import json
from pathlib import Path

from tests import messages
from tests.e2e.conftest import Run
from tests.servers.dovecot import Dovecot


def configure(site: Path, imap: Dovecot, **extra: str) -> None:
    keys = "".join(f'{k} = "{v}"\n' for k, v in extra.items())
    with (site / "config.toml").open("a", encoding="utf-8") as fh:
        fh.write(f'[imap]\nhost = "127.0.0.1"\nport = {imap.port}\nsecurity = "none"\n'
                 f'username = "support"\npassword_env = "T_IMAP_PW"\n{keys}')


def test_poll_once_ingests_moves_and_writes_acceptance(ticketd: Run, site: Path,
                                                        imap: Dovecot) -> None:
    configure(site, imap)
    imap.append("support", messages.mail(subject="邮箱无法收信"))
    imap.append("support", messages.auto_reply())
    res = ticketd("poll", "--once", env={"T_IMAP_PW": "support-pass"})
    assert res.returncode == 0, res.stderr
    lines = res.stdout.splitlines()
    assert lines[0].endswith(" created") and lines[0].startswith("TS")
    assert lines[1] == "- ignored auto-reply"
    assert imap.folder_uids("support", "INBOX") == []
    assert len(imap.folder_uids("support", "Processed")) == 2
    outbox = list((site / "var" / "outbox").glob("*.eml"))
    assert len(outbox) == 1 and lines[0].split()[0].encode() in outbox[0].read_bytes()
    again = ticketd("poll", "--once", "--json", env={"T_IMAP_PW": "support-pass"})
    assert again.returncode == 0 and again.stdout == ""
    listed = json.loads(ticketd("tickets", "list", "--json").stdout)
    assert [t["subject"] for t in listed] == ["邮箱无法收信"]


def test_poll_errors_are_one_line(ticketd: Run, site: Path, imap: Dovecot) -> None:
    configure(site, imap)
    res = ticketd("poll", "--once", env={"T_IMAP_PW": "wrong"})
    assert res.returncode == 2  # a refused password is a configuration error
    assert "login refused for support" in res.stderr and "Traceback" not in res.stderr
    assert "wrong" not in res.stderr  # never a secret
    assert ticketd("poll").returncode == 2  # continuous polling is `ticketd run`
