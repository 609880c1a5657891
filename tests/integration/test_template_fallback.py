"""Issue 9 item 8: a template broken when ticketd starts never loses a mail, and says so.

The scenario as it was reported: a syntax error in the site's ``acceptance.txt`` when the
daemon starts. Before, the next ticket got no acceptance (nothing queued), ``status`` showed 0
failed and ``/healthz`` said ok. Now the mail is written from the packaged template, the
ticket's log and the daemon's log say so, and ``status`` and ``/healthz`` name the file.
"""

from __future__ import annotations

import logging
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import select

from daemon import status
from daemon.app import App
from daemon.clock import FixedClock
from daemon.intake.pipeline import Intake
from daemon.intake.sources import RawMail
from daemon.models import Event, OutboxMail
from daemon.replies.notify import Notify
from daemon.replies.templates import default_templates_dir
from daemon.service import Service
from tests import messages
from tests.conftest import make_config
from tests.writing import write_queued


@pytest.fixture
def broken_site(tmp_path: Path) -> Path:
    site = tmp_path / "tpl"
    shutil.copytree(default_templates_dir(), site)
    path = site / "zh-CN" / "acceptance.txt"
    lines = path.read_text(encoding="utf-8").split("\n")
    lines[4] = "{% endfor %}"  # line 5: an admin's slip
    path.write_text("\n".join(lines), encoding="utf-8")
    return site


@pytest.fixture
def fresh_app(tmp_path: Path, database_url: str, clock: FixedClock,
              broken_site: Path) -> Iterator[App]:
    """An App as `ticketd run` builds it after a restart: no template rendered yet."""
    app = App(make_config(tmp_path, database_url, templates={"dir": str(broken_site)}),
              clock=clock)
    app.ready_db()
    yield app
    app.close()


def test_the_first_ticket_after_a_restart_gets_its_acceptance(
        fresh_app: App, broken_site: Path, caplog: pytest.LogCaptureFixture) -> None:
    broken = broken_site / "zh-CN" / "acceptance.txt"
    with caplog.at_level(logging.ERROR, logger="ticketd.templates"):
        result = Intake(fresh_app, notifier=Notify(fresh_app)).ingest(
            RawMail(messages.mail(sender="a@corp.example"), "t"))
    assert result.action == "created"
    assert write_queued(fresh_app) == 1  # the mail is written (and the template read) at send time
    with fresh_app.db.transaction() as s:
        [row] = s.scalars(select(OutboxMail)).all()
        assert row.kind == "acceptance" and row.status == "queued"
        assert "工单已受理" in row.subject  # the packaged template's subject
        events = {e.action: e.detail for e in s.scalars(select(Event))}
    assert f"{broken}:5" in events["mail-template-fallback"]
    assert "mail-failed" not in events
    [logged] = [r.getMessage() for r in caplog.records if r.name == "ticketd.templates"]
    assert f"{broken}:5: syntax error" in logged and "packaged" in logged


def test_status_and_health_name_the_broken_template(fresh_app: App, broken_site: Path) -> None:
    broken = broken_site / "zh-CN" / "acceptance.txt"
    data = status.collect(fresh_app, ask_imap=False)
    [item] = data["templates"]
    assert item["template"] == str(broken) and item["kind"] == "acceptance"
    assert item["problem"].startswith(f"{broken}:5: syntax error")
    assert item["fallback"].startswith("the packaged template in ")
    text = status.render(data)
    assert "mail templates: 1 broken" in text and f"{broken}:5" in text

    health = Service(fresh_app).health()
    assert health["ok"] is False
    [problem] = health["problems"]
    assert problem.startswith(f"mail template broken: {broken}:5: syntax error")
    assert "acceptance mails use the packaged template" in problem

    broken.write_text("Subject: [{{ number }}] 已修复\n\n已修复\n", encoding="utf-8")
    assert status.collect(fresh_app, ask_imap=False)["templates"] == []
    assert "mail templates: ok" in status.render(status.collect(fresh_app, ask_imap=False))
    assert Service(fresh_app).health()["ok"] is True
