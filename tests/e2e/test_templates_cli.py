"""`ticketd templates check|preview` as an admin runs them, and a broken edit under load."""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
from email import message_from_string, policy
from pathlib import Path

import pytest
from sqlalchemy import select

from daemon.app import App
from daemon.clock import FixedClock
from daemon.intake.pipeline import Intake
from daemon.intake.sources import RawMail
from daemon.models import OutboxMail
from daemon.replies.notify import Notify
from tests import messages
from tests.conftest import make_config
from tests.e2e.conftest import REPO, Run
from tests.writing import write_queued


@pytest.fixture
def site_templates(site: Path) -> Path:
    target = site / "mail-templates"
    shutil.copytree(REPO / "templates" / "mail", target)
    with (site / "config.toml").open("a", encoding="utf-8") as fh:
        fh.write('[templates]\ndir = "mail-templates"\n')
    return target


def test_shipped_templates_pass_the_check(ticketd: Run) -> None:
    res = ticketd("templates", "check")
    assert res.returncode == 0 and res.stdout.startswith("ok"), res.stderr


def test_syntax_error_is_reported_with_file_and_line(ticketd: Run, site_templates: Path) -> None:
    path = site_templates / "zh-CN" / "acceptance.txt"
    lines = path.read_text(encoding="utf-8").splitlines()
    lines[3] = "{% if number %}unclosed"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    res = ticketd("templates", "check")
    assert res.returncode == 2
    assert f"{path}:" in res.stderr and "Traceback" not in res.stderr


def test_unknown_variable_names_file_line_and_variable(ticketd: Run,
                                                      site_templates: Path) -> None:
    # (A kind missing from every root is covered in tests/unit/test_templates.py: here the
    # packaged defaults would fill the gap, as the search order promises.)
    path = site_templates / "en" / "reply.txt"
    path.write_text(path.read_text(encoding="utf-8") + "\n{{ ticket_owner }}\n", encoding="utf-8")
    res = ticketd("templates", "check")
    assert res.returncode == 2
    assert f"{path}:" in res.stderr and "unknown variable 'ticket_owner'" in res.stderr


def test_subject_without_the_number_is_refused(ticketd: Run, site_templates: Path) -> None:
    path = site_templates / "en" / "acceptance.txt"
    text = path.read_text(encoding="utf-8").split("\n", 1)
    path.write_text("Subject: We got your mail\n" + text[1], encoding="utf-8")
    res = ticketd("templates", "check")
    assert res.returncode == 2 and "number" in res.stderr


def test_preview_raw_is_the_mime_message(ticketd: Run) -> None:
    res = ticketd("templates", "preview", "acceptance", "--locale", "en", "--raw")
    assert res.returncode == 0, res.stderr
    msg = message_from_string(res.stdout, policy=policy.default)
    assert str(msg["Subject"]).strip().startswith("[TS20231027000001]")
    assert msg.get_content_type() == "multipart/alternative"
    assert msg["Auto-Submitted"] == "auto-replied" and msg["Message-ID"]
    zh = message_from_string(ticketd("templates", "preview", "need_info", "--locale",
                                     "zh-CN", "--raw").stdout, policy=policy.default)
    assert "请" in str(zh["Subject"]) or "补充" in str(zh["Subject"])
    assert ticketd("templates", "preview", "acceptence").returncode == 2


TIME = r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d [+-]\d\d:\d\d"


def test_preview_is_readable(ticketd: Run) -> None:
    res = ticketd("templates", "preview", "acceptance", "--locale", "zh-CN")
    assert res.returncode == 0, res.stderr
    out = res.stdout
    assert "=?utf-8?" not in out and "Content-Transfer-Encoding" not in out
    assert re.search(r"^Subject: +\[TS20231027000001\] 工单已受理：报表导出功能点击后无响应$", out,
                     re.M)
    assert re.search(r"^To: +张伟 <requester@example.com>$", out, re.M)
    assert re.search(rf"^Date: +{TIME}$", out, re.M) and "+08:00" in out  # [support] timezone
    text = out.split("---- text ----\n", 1)[1].split("---- HTML, shown as text ----\n")
    assert text[0].startswith("张伟，您好：\n\n您的问题我们已经收到")
    assert "<p>" not in text[1] and "工单编号" in text[1] and "本邮件由工单系统自动发送" in text[1]
    assert f"{REPO / 'templates' / 'mail' / 'zh-CN' / 'acceptance.txt'}" in out


@pytest.mark.parametrize(("kind", "to"), [("assigned", "Daniel Lee <handler@example.com>"),
                                          ("sla_breach", "Sarah Johnson <lead@example.com>")])
def test_preview_of_a_handler_facing_kind_is_addressed_to_them(ticketd: Run, kind: str,
                                                               to: str) -> None:
    res = ticketd("templates", "preview", kind, "--locale", "en")
    assert res.returncode == 0, res.stderr
    assert re.search(rf"^To: +{re.escape(to)}$", res.stdout, re.M)
    assert "requester@example.com" not in res.stdout.split("---- text ----")[0]


def test_preview_from_a_real_ticket(ticketd: Run, site: Path) -> None:
    (site / "in.eml").write_bytes(messages.mail(subject="报表导出失败"))
    created = ticketd("ingest", "in.eml")
    number = created.stdout.split()[0]
    res = ticketd("templates", "preview", "assigned", "--ticket", number)
    assert res.returncode == 0, res.stderr
    assert re.search(rf"^Subject: +\[{number}\]", res.stdout, re.M)
    assert "三楼的打印机" in res.stdout
    # nobody is assigned yet: the handler comes from the sample, and the preview says so
    assert re.search(r"^Sample data: +.*the handler's address", res.stdout, re.M)
    assert re.search(r"^To: +.*<handler@example.com>$", res.stdout, re.M)
    raw = ticketd("templates", "preview", "acceptance", "--ticket", number, "--raw")
    msg = message_from_string(raw.stdout, policy=policy.default)
    assert str(msg["Subject"]).strip().startswith(f"[{number}]")
    body = msg.get_body(("plain",))
    assert body is not None and "报表导出失败" in body.get_content()


def test_times_are_shown_in_the_support_timezone_to_the_second(ticketd: Run,
                                                               site: Path) -> None:
    (site / "in.eml").write_bytes(messages.mail())
    number = ticketd("ingest", "in.eml").stdout.split()[0]
    listed = ticketd("tickets", "list").stdout
    assert re.search(rf"{number}  new +P\d  {TIME}  ", listed), listed
    shown = ticketd("tickets", "show", number).stdout
    events = shown.split("events:\n", 1)[1].splitlines()
    assert events and all(re.match(rf"  {TIME}  ", line) for line in events), events
    assert re.search(rf"^<- {TIME}  new", shown, re.M)
    outbox = ticketd("outbox", "list", "--all").stdout
    assert re.search(rf"^ +1  {TIME}  acceptance .* sent {TIME}$", outbox, re.M), outbox
    assert all(m.endswith("+08:00") for m in re.findall(TIME, listed + shown + outbox))
    [row] = json.loads(ticketd("outbox", "list", "--all", "--json").stdout)
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\+08:00", row["created_at"])


def test_a_broken_edit_keeps_mail_flowing_with_the_last_good_version(
        tmp_path: Path, database_url: str, clock: FixedClock,
        caplog: pytest.LogCaptureFixture) -> None:
    site = tmp_path / "tpl"
    shutil.copytree(REPO / "templates" / "mail", site)
    app = App(make_config(tmp_path, database_url, templates={"dir": str(site)}), clock=clock)
    app.ready_db()
    intake = Intake(app, notifier=Notify(app))
    try:
        assert intake.ingest(RawMail(messages.mail(sender="a@corp.example"), "t")).action == \
            "created"
        assert write_queued(app) == 1  # mail is written when it is sent: this version is good
        path = site / "zh-CN" / "acceptance.txt"
        path.write_text(path.read_text(encoding="utf-8") + "{% endif %}\n", encoding="utf-8")
        st = path.stat()
        os.utime(path, (st.st_atime + 10, st.st_mtime + 10))
        with caplog.at_level(logging.ERROR, logger="ticketd.templates"):
            result = intake.ingest(RawMail(messages.mail(sender="b@corp.example"), "t"))
            assert write_queued(app) == 1
        assert result.action == "created"
        assert any(str(path) in r.getMessage() for r in caplog.records)
        with app.db.transaction() as s:
            kinds = [r.kind for r in s.scalars(select(OutboxMail).order_by(OutboxMail.id))]
        assert kinds.count("acceptance") == 2  # the second came from the last good version
        # An admin's fix takes effect on the next mail, without a restart.
        path.write_text("Subject: [{{ number }}] 已收到\n\n新模板 {{ number }}\n", encoding="utf-8")
        os.utime(path, (st.st_atime + 20, st.st_mtime + 20))
        intake.ingest(RawMail(messages.mail(sender="c@corp.example"), "t"))
        assert write_queued(app) == 1
        with app.db.transaction() as s:
            last = s.scalars(select(OutboxMail).order_by(OutboxMail.id.desc())).first()
            assert last is not None and "已收到" in last.subject
    finally:
        app.close()


def test_a_broken_layout_is_reported_with_the_mails_that_use_it(ticketd: Run,
                                                                site_templates: Path) -> None:
    layout = site_templates / "en" / "_layout.html"
    lines = layout.read_text(encoding="utf-8").splitlines()
    lines[9] = "{% block content %}{{ number }"
    layout.write_text("\n".join(lines) + "\n", encoding="utf-8")
    res = ticketd("templates", "check")
    assert res.returncode == 2 and "Traceback" not in res.stderr
    assert f"{layout}:10: syntax error" in res.stderr
    for kind in ("acceptance", "need_info", "reply", "resolution"):
        assert f"{site_templates / 'en' / kind}.html:1: broken: it uses {layout}" in res.stderr
    # the packaged mails that use the (site) layout are marked too, and no partial is misnamed
    assert "unknown mail kind" not in res.stderr
