"""`ticketd outbox resend ID|NUMBER KIND` and a broken template after a restart, as an admin
meets them: on SQLite and PostgreSQL, through the real command."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from daemon.app import App
from daemon.config import load
from daemon.models import OutboxMail
from tests import messages
from tests.e2e.conftest import REPO, Run


def _ingest(ticketd: Run, site: Path, **kw: Any) -> str:
    (site / "in.eml").write_bytes(messages.mail(**kw))
    res = ticketd("ingest", "in.eml")
    assert res.returncode == 0, res.stderr
    return res.stdout.split()[0]


def _set_status(site: Path, outbox_id: int, status: str, error: str) -> None:
    app = App(load(site / "config.toml"))
    try:
        with app.db.transaction() as session:
            row = session.get(OutboxMail, outbox_id)
            assert row is not None
            row.status, row.last_error = status, error
    finally:
        app.close()


def test_resend_writes_a_kind_again_for_a_ticket(ticketd: Run, site: Path) -> None:
    number = _ingest(ticketd, site, sender="wang@corp.example")
    res = ticketd("outbox", "resend", number, "acceptance")
    assert res.returncode == 0, res.stderr
    [line] = res.stdout.splitlines()
    assert line.startswith("outbox 2 queued acceptance ") and number in line
    assert line.endswith("to wang@corp.example")
    listed = ticketd("outbox", "list", "--json")
    [row] = json.loads(listed.stdout)
    assert (row["id"], row["kind"], row["status"], row["number"]) == (2, "acceptance", "queued",
                                                                      number)
    shown = ticketd("tickets", "show", number).stdout
    assert "mail-resent" in shown and "mail-queued" in shown

    again = ticketd("outbox", "resend", number, "acceptance", "--json")
    data = json.loads(again.stdout)
    assert data["action"] == "queued" and data["outbox_id"] == 3
    assert data["recipients"] == ["wang@corp.example"]


def test_resend_by_id_queues_a_failed_mail_again(ticketd: Run, site: Path) -> None:
    number = _ingest(ticketd, site, sender="li@corp.example")
    _set_status(site, 1, "failed", "550 mailbox unavailable")
    assert "failed" in ticketd("outbox", "list").stdout
    res = ticketd("outbox", "resend", "1")
    assert res.returncode == 0, res.stderr
    assert res.stdout == f"outbox 1 requeued acceptance {number} to li@corp.example: was failed\n"
    [row] = json.loads(ticketd("outbox", "list", "--json").stdout)
    assert (row["status"], row["attempts"], row["last_error"]) == ("queued", 0, None)
    same = ticketd("outbox", "resend", "1", "--json")
    assert json.loads(same.stdout)["action"] == "unchanged"
    assert "mail-requeued" in ticketd("tickets", "show", number).stdout
    flushed = ticketd("outbox", "flush")
    assert flushed.stdout.startswith("1 sent"), flushed.stderr


def test_resend_refuses_unknown_ids_numbers_and_kinds_with_one_line(ticketd: Run,
                                                                    site: Path) -> None:
    number = _ingest(ticketd, site)
    for args, expected in [
        (("99",), "no outbox mail with id 99"),
        (("TS20990101000001", "acceptance"), "TS20990101000001: no such ticket"),
        ((number, "acceptence"), "unknown kind 'acceptence'"),
        ((number,), "expected a kind after the ticket number"),
        (("1", "acceptance"), "is an outbox id, which takes no kind"),
        ((number, "reply"), f"a reply mail for {number} needs handler_name, text"),
    ]:
        res = ticketd("outbox", "resend", *args)
        assert res.returncode == 2, (args, res.stderr)
        assert res.stdout == ""
        [line] = res.stderr.splitlines()
        assert expected in line and line.startswith("ticketd: "), (args, line)


def test_a_template_broken_at_start_still_answers_and_status_says_so(
        ticketd: Run, site: Path) -> None:
    templates = site / "mail-templates"
    shutil.copytree(REPO / "templates" / "mail", templates)
    with (site / "config.toml").open("a", encoding="utf-8") as fh:
        fh.write('[templates]\ndir = "mail-templates"\n')
    broken = templates / "zh-CN" / "acceptance.txt"
    broken.write_text(broken.read_text(encoding="utf-8") + "{% endif %}\n", encoding="utf-8")

    number = _ingest(ticketd, site, subject="打印机无法打印")
    [row] = json.loads(ticketd("outbox", "list", "--all", "--json").stdout)
    assert (row["kind"], row["status"], row["number"]) == ("acceptance", "sent", number)
    assert "mail-template-fallback" in ticketd("tickets", "show", number).stdout

    res = ticketd("status")
    assert res.returncode == 0, res.stderr
    assert "mail templates: 1 broken" in res.stdout
    assert f"{broken}:" in res.stdout and "acceptance mails use the packaged template" in res.stdout
    [item] = json.loads(ticketd("status", "--json").stdout)["templates"]
    assert item["template"] == str(broken) and item["kind"] == "acceptance"
