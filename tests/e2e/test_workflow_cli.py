"""The support process as an operator and a handler live it, through the real `ticketd` command.

The CLI part runs on SQLite and PostgreSQL (the ``site`` fixture). The last test runs
`ticketd run` against the real Dovecot and the aiosmtpd sink: a request comes in, the requester
gets the acceptance and the handler the assignment, the handler answers by mail, an operator
resolves, and the requester receives each mail.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from tests import messages
from tests.e2e.conftest import REPO, Run
from tests.e2e.test_ingest_cli import number, write
from tests.e2e.test_run_daemon import (  # noqa: F401  (fixtures)
    USER,
    Daemon,
    imap,
    sqlite_site,
    start_daemon,
    write_config,
)
from tests.servers.dovecot import Dovecot
from tests.servers.smtp import SmtpSink

pytestmark = pytest.mark.e2e

TEAMS = '''
[[teams]]
name = "ops"
label_zh = "运维组"
label_en = "Operations"
lead = "Lead <lead@corp.example>"
members = ["王工 <wang@corp.example>", "li@corp.example"]

[[teams]]
name = "dev"
members = ["dev1@corp.example"]

[[teams]]
name = "admins"
'''

OUTAGE = "您好：\n今天 OA 系统打不开。\n系统：OA\n影响范围：全公司\n优先级：P1\n"


@pytest.fixture
def desk(site: Path, ticketd: Run) -> Run:
    """The site with teams configured and one ticket ingested (assigned to wang)."""
    config = site / "config.toml"
    config.write_text(config.read_text() + TEAMS, encoding="utf-8")
    eml = write(site, "outage.eml", messages.mail(subject="OA 打不开", body=OUTAGE))
    assert ticketd("ingest", str(eml)).returncode == 0
    return ticketd


def show(run: Run) -> dict[str, object]:
    res = run("tickets", "show", number(1), "--json")
    assert res.returncode == 0, res.stderr
    data: dict[str, object] = json.loads(res.stdout)
    return data


def test_operator_commands_on_the_command_line(desk: Run, site: Path) -> None:
    shown = show(desk)
    assert (shown["status"], shown["handler"], shown["team"]) == (
        "accepted", "wang@corp.example", "ops")
    assert shown["deadlines"]["breached"] is False  # type: ignore[index]
    assert shown["category_en"] == "System failure"

    res = desk("tickets", "assign", number(1), "li@corp.example", "--cc", "wang@corp.example",
               "--as", "lead@corp.example", "--json")
    assert res.returncode == 0, res.stderr
    done = json.loads(res.stdout)
    assert done["ticket"]["handler"] == "li@corp.example"
    assert done["mails"] == ["assigned to li@corp.example, wang@corp.example"]

    assert desk("tickets", "set", number(1), "--priority", "P2").returncode == 0
    assert desk("tickets", "note", number(1), "查看日志：磁盘满",
                "--as", "li@corp.example").returncode == 0
    listed = desk("tickets", "list", "--handler", "li@corp.example", "--priority", "P2")
    assert listed.returncode == 0 and number(1) in listed.stdout and "ops" in listed.stdout
    assert number(1) not in desk("tickets", "list", "--team", "dev").stdout

    res = desk("tickets", "resolve", number(1), "已清理磁盘", "--as", "li@corp.example")
    assert res.returncode == 0, res.stderr
    assert "mail: resolution to zhang.san@corp.example" in res.stdout
    assert desk("tickets", "close", number(1)).returncode == 0
    refused = desk("tickets", "resolve", number(1), "again")
    assert refused.returncode == 2
    assert refused.stderr.strip() == (f"ticketd: ticket {number(1)}: cannot go from closed "
                                      "to resolved")
    assert desk("tickets", "reopen", number(1), "--as", "wang@corp.example").returncode == 0
    shown = show(desk)
    assert shown["status"] == "in_progress"
    actions = [e["action"] for e in shown["events"]]  # type: ignore[attr-defined]
    for step in ("assigned", "priority", "note", "resolved", "closed", "reopened"):
        assert step in actions
    text = desk("tickets", "show", number(1)).stdout
    assert "co-handlers: wang@corp.example" in text and "resolution: 已清理磁盘" in text


@pytest.mark.parametrize(("args", "why"), [
    (("tickets", "assign", "TS19990101000001", "li@corp.example"), "no such ticket"),
    (("tickets", "assign", "{n}", "nobody@else.example"), "not a handler"),
    (("tickets", "set", "{n}", "--priority", "P9"), "expected one of P0, P1, P2, P3"),
    (("tickets", "set", "{n}"), "give --priority, --category or --team"),
    (("tickets", "close", "{n}", "--as", "stranger@else.example"), "not a handler"),
    (("tickets", "reopen", "{n}"), "only a resolved or closed ticket"),
])
def test_refusals_exit_2_with_one_line_and_change_nothing(desk: Run, args: tuple[str, ...],
                                                          why: str) -> None:
    before = show(desk)
    res = desk(*(a.replace("{n}", number(1)) for a in args))
    assert res.returncode == 2
    assert len(res.stderr.strip().splitlines()) == 1 and why in res.stderr
    assert show(desk) == before


def test_sweep_runs_every_job_once(desk: Run) -> None:
    res = desk("sweep", "--json")
    assert res.returncode == 0, res.stderr
    assert set(json.loads(res.stdout)) == {"sla-breach", "need-info-reminder",
                                           "need-info-close", "auto-close"}
    text = desk("sweep")
    assert text.returncode == 0 and "sla-breach: 0" in text.stdout


# ---------------------------------------------------------------------- through `ticketd run`


@pytest.mark.slow
def test_request_to_resolution_through_the_daemon(
        tmp_path: Path, sqlite_site: str, imap: Dovecot, smtp_server: SmtpSink,  # noqa: F811
        start_daemon: Callable[..., Daemon]) -> None:  # noqa: F811
    config = write_config(tmp_path, sqlite_site, imap, smtp_server, poll_interval=600)
    config.write_text(config.read_text() + TEAMS, encoding="utf-8")
    daemon = start_daemon(config)
    daemon.wait_log("waiting for mail with IDLE")

    imap.append(USER, messages.mail(subject="OA 打不开", body=OUTAGE,
                                    message_id="<outage@client.example>",
                                    attachments=[("截图.png", "image/png", b"\x89PNG")]))
    first = smtp_server.wait_for(2, timeout=60)
    by_kind = {str(m.message["Subject"]).split("]")[1].strip()[:4]: m for m in first}
    acceptance = next(m for m in first if m.rcpt_tos == ("zhang.san@corp.example",))
    assigned = next(m for m in first if m.rcpt_tos == ("wang@corp.example",))
    assert "工单已受理" in str(acceptance.message["Subject"]), by_kind
    assert "处理人：王工" in acceptance.message.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    assert [p.get_filename() for p in assigned.message.iter_attachments()] == ["截图.png"]

    # The handler answers the assignment from their mail client.
    ours = str(assigned.message["Message-ID"])
    imap.append(USER, messages.mail(subject=f"RE: {assigned.message['Subject']}",
                                    sender="王工 <wang@corp.example>", in_reply_to=ours,
                                    references=ours, body="您好，正在重启服务，请稍候。\n"))
    relay = smtp_server.wait_for(3, timeout=60)[2]
    assert relay.rcpt_tos == ("zhang.san@corp.example",)
    assert str(relay.message["From"]) == "王工 via Corp Support <support@corp.example>"
    assert "wang@corp.example" not in relay.message.as_string()
    assert relay.message["In-Reply-To"] == "<outage@client.example>"

    # An operator resolves on the command line; the daemon sends the resolution.
    number_ = str(acceptance.message["Subject"]).split("]")[0].lstrip("[")
    res = subprocess.run([sys.executable, "-m", "daemon", "--config", str(config), "tickets",
                          "resolve", number_, "服务已恢复", "--as", "wang@corp.example"],
                         env={**os.environ, "PYTHONPATH": str(REPO)}, capture_output=True,
                         text=True, timeout=120, check=False)
    assert res.returncode == 0, res.stderr
    got = smtp_server.wait_for(4, timeout=60)
    resolution = next(m for m in got if "处理完成" in str(m.message["Subject"]))
    assert resolution.rcpt_tos == ("zhang.san@corp.example",)
    assert "服务已恢复" in resolution.message.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    code, _ = daemon.terminate()
    assert code == 0


@pytest.mark.slow
def test_handlers_by_mail_through_the_daemon(
        tmp_path: Path, sqlite_site: str, imap: Dovecot, smtp_server: SmtpSink,  # noqa: F811
        start_daemon: Callable[..., Daemon]) -> None:  # noqa: F811
    config = write_config(tmp_path, sqlite_site, imap, smtp_server, poll_interval=600)
    config.write_text(config.read_text().replace(
        "[imap]", '[mail]\ntrusted_authserv_ids = ["mx.corp.example"]\n[imap]') + TEAMS,
        encoding="utf-8")
    daemon = start_daemon(config)
    daemon.wait_log("waiting for mail with IDLE")
    imap.append(USER, messages.mail(subject="OA 打不开", body=OUTAGE,
                                    message_id="<outage@client.example>"))
    first = smtp_server.wait_for(2, timeout=60)
    assigned = next(m for m in first if m.rcpt_tos == ("wang@corp.example",))
    subject = f"RE: {assigned.message['Subject']}"
    ours = str(assigned.message["Message-ID"])
    wang = "王工 <wang@corp.example>"

    def from_wang(body: str, **extra: object) -> bytes:
        return messages.mail(subject=subject, sender=wang, in_reply_to=ours, references=ours,
                             body=body, **extra)  # type: ignore[arg-type]

    for raw in (
        # forged: the handler's From, no token, no header of ours -> nothing
        messages.mail(subject=subject, sender=wang, body="#resolve 搞定\n"),
        # forged Authentication-Results from somebody else's server -> nothing
        messages.mail(subject=subject, sender=wang, body="#close\n", headers={
            "Authentication-Results": "mx.evil.example; dmarc=pass header.from=corp.example"}),
        # the requester's "#resolve" is text: it reaches the handler, with the attachment
        messages.mail(subject=subject, body="#resolve 请尽快\n日志见附件。\n",
                      in_reply_to="<outage@client.example>",
                      attachments=[("oa.log", "text/plain", b"error 503")]),
        # one refused command refuses all: only the command_result goes out
        from_wang("#优先级 P2\n#指派 nobody@else.example\n内部说明。\n"),
        # an answer with a file: relayed to the requester with it
        from_wang("已定位原因，修复说明见附件。\n",
                  attachments=[("fix.pdf", "application/pdf", b"%PDF-1.4")]),
        # resolve in Chinese: resolution + command_result
        from_wang("#解决\n已扩容磁盘并重启服务。\n"),
        # the requester confirms: closed
        messages.mail(subject=f"Re: {subject}", body="已解决，谢谢！满意度：5\n"),
    ):
        imap.append(USER, raw)
    got = smtp_server.wait_for(8, timeout=90)
    kinds = [(m.rcpt_tos, str(m.message["Subject"])) for m in got[2:]]
    update, result_refused, reply, resolution_or_result_a, resolution_or_result_b, closed = (
        got[2:])
    assert update.rcpt_tos == ("wang@corp.example",), kinds
    assert "#resolve 请尽快" in update.message.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    assert [p.get_filename() for p in update.message.iter_attachments()] == ["oa.log"]
    assert result_refused.rcpt_tos == ("wang@corp.example",)
    assert "nobody@else.example" in result_refused.message.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    assert reply.rcpt_tos == ("zhang.san@corp.example",)
    assert [p.get_filename() for p in reply.message.iter_attachments()] == ["fix.pdf"]
    final = {resolution_or_result_a.rcpt_tos, resolution_or_result_b.rcpt_tos}
    assert final == {("zhang.san@corp.example",), ("wang@corp.example",)}
    assert closed.rcpt_tos == ("zhang.san@corp.example",)
    assert "已关闭" in str(closed.message["Subject"])
    assert all("搞定" not in m.message.as_string() for m in got)
    code, _ = daemon.terminate()
    assert code == 0
