"""The support process end to end on the database: intake -> routing -> commands -> sweeps.

Every test runs on SQLite and on PostgreSQL (the ``database_url`` fixture). Time comes from a
FixedClock; mails are read back from the outbox rows (what would be sent, byte for byte).
"""

from __future__ import annotations

import email
from collections.abc import Callable, Iterator
from datetime import timedelta
from email import policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from daemon import desk, jobs, tickets
from daemon.app import App
from daemon.clock import FixedClock
from daemon.config import from_mapping
from daemon.errors import Refused
from daemon.intake.pipeline import Intake
from daemon.intake.sources import RawMail
from daemon.models import OutboxMail
from daemon.replies.notify import Notify
from tests import messages
from tests.writing import raw_mails

FIRST = "TS20231027000001"
WANG = "wang@corp.example"
LI = "li@corp.example"
ZHAO = "zhao@corp.example"
LEAD = "lead@corp.example"
DEV1 = "dev1@corp.example"
DEV2 = "dev2@corp.example"

TEAMS: list[dict[str, Any]] = [
    {"name": "ops", "label_zh": "运维组", "label_en": "Operations",
     "lead": f"Lead <{LEAD}>", "members": [f"王工 <{WANG}>", LI]},
    {"name": "dev", "label_zh": "开发组", "label_en": "Development", "lead": ZHAO,
     "members": [DEV1, DEV2], "assign": "least_open"},
    {"name": "admins", "label_zh": "管理员组", "label_en": "Administrators"},
]

OUTAGE = ("您好：\n今天 OA 系统打不开，全公司都无法使用。\n系统：OA\n影响范围：全公司\n"
          "优先级：P0\n")


@pytest.fixture
def make_app(tmp_path: Path, database_url: str, clock: FixedClock
             ) -> Iterator[Callable[..., App]]:
    made: list[App] = []

    def build(teams: list[dict[str, Any]] | None = None,
              categories: list[dict[str, Any]] | None = None,
              **sections: dict[str, Any]) -> App:
        data: dict[str, Any] = {
            "support": {"address": "support@corp.example", "name": "技术支持",
                        "timezone": "Asia/Shanghai"},
            "database": {"url": database_url},
            "smtp": {"backend": "file", "file_dir": str(tmp_path / "outbox")},
            "attachments": {"dir": str(tmp_path / "attachments")},
            "teams": TEAMS if teams is None else teams,
        }
        if categories is not None:
            data["categories"] = categories
        for name, values in sections.items():
            data.setdefault(name, {}).update(values)
        application = App(from_mapping(data, where="test.toml", base=tmp_path), clock=clock)
        application.ready_db()
        made.append(application)
        return application

    yield build
    for application in made:
        application.close()


@pytest.fixture
def app(make_app: Callable[..., App]) -> App:
    return make_app()


def feed(app: App, raw: bytes) -> tuple[str, str | None]:
    result = Intake(app, notifier=Notify(app)).ingest(RawMail(raw, "test"))
    return result.action, result.number


def sent(app: App) -> list[tuple[str, list[str]]]:
    """(kind, recipients) of every queued mail, in order."""
    with app.db.transaction() as s:
        return [(r.kind, list(r.recipients))
                for r in s.scalars(select(OutboxMail).order_by(OutboxMail.id))]


def last_mail(app: App, kind: str) -> EmailMessage:
    mails = raw_mails(app, kind)
    assert mails, f"no {kind} mail"
    raw = mails[-1]
    msg = email.message_from_bytes(raw, policy=policy.default)
    assert isinstance(msg, EmailMessage)
    return msg


def text_of(msg: EmailMessage) -> str:
    body = msg.get_body(("plain",))
    assert body is not None
    return str(body.get_content())


def swept(app: App, job: str) -> tuple[str, ...]:
    """Run the sweep once; the tickets ``job`` acted on."""
    report = jobs.sweep(app)
    assert not report.failed, report.failed
    return report.done(job)


def ticket(app: App, number: str = FIRST) -> dict[str, Any]:
    with app.db.transaction() as s:
        return tickets.to_dict(tickets.get(s, number), now=app.clock.now())


def actions(app: App, number: str = FIRST) -> list[str]:
    return [e["action"] for e in ticket(app, number)["events"]]


# ---------------------------------------------------------------- intake: route and assign


def test_a_complete_report_is_routed_assigned_and_both_sides_are_told(app: App) -> None:
    raw = messages.mail(subject="OA 系统打不开", body=OUTAGE, cc="主管 <boss@corp.example>",
                        attachments=[("截图.png", "image/png", b"\x89PNG fake")])
    assert feed(app, raw) == ("created", FIRST)
    t = ticket(app)
    assert (t["status"], t["category"], t["team"], t["handler"]) == (
        "accepted", "系统故障", "ops", WANG)
    assert t["priority"] == "P0"
    assert t["deadlines"]["assign_by"] == "2023-10-27T01:45:00+00:00"  # P0: 15 minutes
    assert t["deadlines"]["breached"] is False
    # The requester (and whom they copied) get the acceptance, the handler the assignment.
    assert sent(app) == [("acceptance", ["zhang.san@corp.example", "boss@corp.example"]),
                         ("assigned", [WANG])]
    acceptance = text_of(last_mail(app, "acceptance"))
    assert "处理人：王工" in acceptance and "运维组" in acceptance and "ops" not in acceptance
    assigned = last_mail(app, "assigned")
    assert str(assigned["To"]) == f"王工 <{WANG}>"
    body = text_of(assigned)
    assert "OA 系统打不开" in body and "P0" in body
    assert "影响范围：全公司" in body  # the details, under their labels
    files = [p.get_filename() for p in assigned.iter_attachments()]
    assert files == ["截图.png"]
    with app.db.transaction() as s:
        events = tickets.get(s, FIRST).events
        assigned_event = next(e for e in events if e.action == "assigned")
        assert assigned_event.before == {"status": "new", "handler": None}
        assert assigned_event.after == {"status": "accepted", "handler": WANG}


def test_round_robin_takes_turns_and_least_open_picks_the_least_busy(app: App) -> None:
    for i in range(3):
        feed(app, messages.mail(subject=f"服务器宕机 {i}", body=OUTAGE))
    handlers = [ticket(app, f"TS2023102700000{i}")["handler"] for i in (1, 2, 3)]
    assert handlers == [WANG, LI, WANG]

    bug = "系统：CRM\n复现步骤：点击保存后报错\n"
    feed(app, messages.mail(subject="CRM 保存报错", body=bug))       # dev1 (both at 0)
    feed(app, messages.mail(subject="CRM 导出报错", body=bug))       # dev2 (dev1 has 1)
    desk.run(app, "TS20231027000004", [("resolve", "fixed")], actor=DEV1)
    feed(app, messages.mail(subject="CRM 打印报错", body=bug))       # dev1 again (0 open)
    assert [ticket(app, f"TS2023102700000{i}")["handler"] for i in (4, 5, 6)] == [
        DEV1, DEV2, DEV1]


def test_a_team_without_members_keeps_the_ticket_new_for_its_lead(app: App) -> None:
    feed(app, messages.mail(subject="申请开通 SAP 权限",
                            body="系统：SAP\n部门：财务部\n请帮忙开通权限。\n"))
    t = ticket(app)
    assert (t["status"], t["team"], t["handler"]) == ("new", "admins", None)
    assert sent(app) == [("acceptance", ["zhang.san@corp.example"])]
    assert "管理员组" in text_of(last_mail(app, "acceptance"))


def test_english_requesters_read_english_labels(app: App) -> None:
    feed(app, messages.mail(subject="Cannot log in to the VPN", sender="Amy <amy@corp.example>",
                            body="Hello,\nI cannot log in to the VPN since this morning.\n"
                                 "System: VPN\nImpact: only me\n"))
    text = text_of(last_mail(app, "acceptance"))
    assert "System failure" in text and "Operations" in text
    assert "系统故障" not in text and "运维组" not in text


def test_configured_categories_route_and_require_their_own_details(
        make_app: Callable[..., App]) -> None:
    app = make_app(categories=[
        {"name": "打印机", "label_en": "Printer", "team": "dev", "keywords": ["打印机", "printer"],
         "required": ["department"]},
        {"name": "其他", "label_en": "Other", "team": "ops", "keywords": []},
    ])
    feed(app, messages.mail(subject="三楼打印机卡纸", body="打印机卡纸了。\n"))
    t = ticket(app)
    assert (t["category"], t["team"], t["status"]) == ("打印机", "dev", "need_info")
    assert "部门" in text_of(last_mail(app, "need_info"))
    feed(app, messages.mail(subject=f"回复：[{FIRST}] 三楼打印机卡纸", body="部门：财务部\n"))
    assert (ticket(app)["status"], ticket(app)["handler"]) == ("accepted", DEV1)
    feed(app, messages.mail(subject="Printer jam", sender="amy@corp.example",
                            body="The printer jams.\nDepartment: Finance\n"))
    assert "Printer" in text_of(last_mail(app, "acceptance"))


def test_copy_cc_false_copies_nobody(make_app: Callable[..., App]) -> None:
    app = make_app(tickets={"copy_cc": False})
    feed(app, messages.mail(subject="OA 打不开", body=OUTAGE, cc="boss@corp.example"))
    assert sent(app)[0] == ("acceptance", ["zhang.san@corp.example"])


# ---------------------------------------------------------------- need_info


def test_missing_details_hold_the_ticket_with_one_mail_and_a_reply_releases_it(
        app: App, clock: FixedClock) -> None:
    feed(app, messages.mail(subject="系统报错", body="您好：\n页面报错了。\n",
                            message_id="<q1@client.example>"))
    t = ticket(app)
    assert (t["status"], t["handler"]) == ("need_info", None)
    assert sent(app) == [("need_info", ["zhang.san@corp.example"])]  # exactly one mail
    text = text_of(last_mail(app, "need_info"))
    assert FIRST in text and "已经收到" in text and "系统" in text and "复现步骤" in text

    clock.advance(timedelta(minutes=20))
    feed(app, messages.mail(subject=f"回复：[{FIRST}] 系统报错", body="系统：CRM\n",
                            in_reply_to="<q1@client.example>"))
    assert ticket(app)["status"] == "need_info"
    assert sent(app)[-1][0] == "need_info"
    assert "复现步骤" in text_of(last_mail(app, "need_info"))
    assert "系统：" not in text_of(last_mail(app, "need_info")).split("补充以下信息")[-1]

    feed(app, messages.mail(subject=f"回复：[{FIRST}] 系统报错",
                            body="复现步骤：点击提交按钮\n", in_reply_to="<q1@client.example>"))
    t = ticket(app)
    assert (t["status"], t["handler"]) == ("accepted", DEV1)
    assert t["fields"] == {"system": "CRM", "steps": "点击提交按钮"}
    # The SLA clock starts when the report is complete.
    assert t["deadlines"]["assign_by"] == (clock.now() + timedelta(hours=1)).isoformat()
    assert [k for k, _ in sent(app)][-2:] == ["acceptance", "assigned"]


def test_a_p0_is_never_held_its_missing_details_are_asked_in_the_acceptance(app: App) -> None:
    feed(app, messages.mail(subject="[P0] 生产事故：订单系统宕机", body="全部用户无法下单！\n"))
    t = ticket(app)
    assert (t["status"], t["priority"], t["handler"]) == ("accepted", "P0", WANG)
    assert [k for k, _ in sent(app)] == ["acceptance", "assigned"]
    text = text_of(last_mail(app, "acceptance"))
    assert "处理人：王工" in text and "请回复本邮件补充以下信息" in text


def test_need_info_gets_one_reminder_then_closes(app: App, clock: FixedClock) -> None:
    feed(app, messages.mail(subject="系统报错", body="报错了。\n"))
    clock.advance(timedelta(hours=71, minutes=59))
    assert swept(app, "need-info-reminder") == ()
    clock.advance(timedelta(minutes=1))
    assert swept(app, "need-info-reminder") == (FIRST,)
    assert swept(app, "need-info-reminder") == ()  # once
    assert "提醒" in text_of(last_mail(app, "need_info"))
    clock.advance(timedelta(hours=72))
    assert swept(app, "need-info-close") == (FIRST,)
    assert ticket(app)["status"] == "closed"
    assert sent(app)[-1] == ("closed", ["zhang.san@corp.example"])


def test_resolved_tickets_close_after_auto_close_days_unless_answered(
        app: App, clock: FixedClock) -> None:
    feed(app, messages.mail(subject="OA 打不开", body=OUTAGE))
    feed(app, messages.mail(subject="OA 又打不开", body=OUTAGE))
    desk.run(app, FIRST, [("resolve", "重启了")], actor=WANG)
    desk.run(app, "TS20231027000002", [("resolve", "重启了")], actor=LI)
    clock.advance(timedelta(days=1))
    feed(app, messages.mail(subject="Re: [TS20231027000002] OA 又打不开",
                            body="好像还有点慢，我再观察一下。\n"))
    desk.run(app, "TS20231027000002", [("resolve", "已优化")], actor=LI)
    clock.advance(timedelta(days=6, seconds=-1))
    assert swept(app, "auto-close") == ()
    clock.advance(timedelta(seconds=1))
    assert swept(app, "auto-close") == (FIRST,)   # the other was resolved again a day later
    assert ticket(app)["status"] == "closed"
    text = text_of(last_mail(app, "closed"))
    assert "重启了" in text
    clock.advance(timedelta(days=1))
    assert swept(app, "auto-close") == ("TS20231027000002",)


# ---------------------------------------------------------------- SLA


def test_sla_breach_mails_the_lead_once_exactly_at_the_deadline(
        make_app: Callable[..., App], clock: FixedClock) -> None:
    teams = [dict(TEAMS[0], members=[]), TEAMS[1], TEAMS[2]]
    app = make_app(teams=teams)
    feed(app, messages.mail(subject="OA 打不开", body=OUTAGE))  # P0: 15 minutes
    assert ticket(app)["status"] == "new"
    clock.advance(timedelta(minutes=14, seconds=59))
    assert swept(app, "sla-breach") == ()
    clock.advance(timedelta(seconds=1))
    assert swept(app, "sla-breach") == (FIRST,)
    assert swept(app, "sla-breach") == ()
    assert sent(app)[-1] == ("sla_breach", [LEAD])
    assert "超时提醒" in str(last_mail(app, "sla_breach")["Subject"])
    assert ticket(app)["deadlines"]["breached"] is True
    assert actions(app).count("sla-breach") == 1
    # A new priority is a new deadline, and a new breach later.
    desk.run(app, FIRST, [("priority", "P3")], actor=None)
    assert ticket(app)["deadlines"]["breached"] is False
    clock.advance(timedelta(hours=2))
    assert swept(app, "sla-breach") == (FIRST,)


def test_a_team_without_a_lead_escalates_to_the_support_address(
        make_app: Callable[..., App], clock: FixedClock) -> None:
    app = make_app(teams=[TEAMS[0], TEAMS[1], {"name": "admins"}])
    feed(app, messages.mail(subject="申请开通 SAP 权限", body="系统：SAP\n部门：财务部\n"))
    clock.advance(timedelta(hours=1))
    jobs.sweep(app)
    # Our own address never gets mail from us: the breach is logged, the mail suppressed.
    assert "sla-breach" in actions(app)
    assert sent(app)[-1][0] == "acceptance"


# ---------------------------------------------------------------- operator commands


def test_operator_commands_walk_the_whole_process(app: App) -> None:
    feed(app, messages.mail(subject="OA 打不开", body=OUTAGE))
    done = desk.run(app, FIRST, [("assign", f"{LI} {ZHAO}")], actor=LEAD)
    assert done.ticket["handler"] == LI and done.ticket["co_handlers"] == [ZHAO]
    assert done.mails == [f"assigned to {LI}, {ZHAO}"]
    desk.run(app, FIRST, [("priority", "P2"), ("type", "Functional issue")], actor=LI)
    t = ticket(app)
    assert (t["priority"], t["category"]) == ("P2", "功能异常")
    desk.run(app, FIRST, [("internal", "查看日志：磁盘满")], actor=LI)
    assert ticket(app)["events"][-1]["detail"] == "查看日志：磁盘满"
    count = len(sent(app))
    assert len(sent(app)) == count  # a note sends nothing
    done = desk.run(app, FIRST, [("resolve", "已清理磁盘并重启服务")], actor=LI)
    assert done.mails == ["resolution to zhang.san@corp.example"]
    assert ticket(app)["status"] == "resolved"
    text = text_of(last_mail(app, "resolution"))
    assert "已清理磁盘并重启服务" in text and "满意度" in text
    desk.run(app, FIRST, [("close", "")], actor=None)
    assert ticket(app)["status"] == "closed"
    desk.run(app, FIRST, [("reopen", "客户又反馈")], actor=LEAD)
    assert ticket(app)["status"] == "in_progress"
    assert sent(app)[-1] == ("reopened", [LI, ZHAO])


@pytest.mark.parametrize(("steps", "actor", "why"), [
    ([("assign", "nobody@else.example")], None, "not a handler"),
    ([("priority", "P7")], None, "expected one of P0, P1, P2, P3"),
    ([("type", "Gardening")], None, "unknown"),
    ([("team", "hr")], None, "unknown"),
    ([("resolve", "")], None, "needs a text"),
    ([("reopen", "")], None, "only a resolved or closed ticket"),
    ([("close", "")], "stranger@else.example", "not a handler"),
])
def test_refused_commands_change_nothing(app: App, steps: list[tuple[str, str]],
                                         actor: str | None, why: str) -> None:
    feed(app, messages.mail(subject="OA 打不开", body=OUTAGE))
    before = ticket(app)
    mails = sent(app)
    with pytest.raises(Refused, match=why):
        desk.run(app, FIRST, steps, actor=actor)
    assert ticket(app) == before
    assert sent(app) == mails


def test_resolving_a_closed_ticket_is_refused(app: App) -> None:
    feed(app, messages.mail(subject="OA 打不开", body=OUTAGE))
    desk.run(app, FIRST, [("close", "")], actor=None)
    with pytest.raises(Refused, match="cannot go from closed to resolved"):
        desk.run(app, FIRST, [("resolve", "done")], actor=None)
    with pytest.raises(Refused, match="no such ticket"):
        desk.run(app, "TS20990101000001", [("close", "")], actor=None)


# ---------------------------------------------------------------- the requester writes again


def test_the_requester_s_follow_up_reaches_the_handlers(app: App) -> None:
    feed(app, messages.mail(subject="OA 打不开", body=OUTAGE, message_id="<r1@client.example>"))
    desk.run(app, FIRST, [("cc", ZHAO)], actor=WANG)
    feed(app, messages.mail(subject=f"Re: [{FIRST}] OA 打不开", body="现在连登录页都打不开了。\n",
                            in_reply_to="<r1@client.example>",
                            attachments=[("log.txt", "text/plain", b"error 500")]))
    assert sent(app)[-1] == ("update", [WANG, ZHAO])
    update = last_mail(app, "update")
    assert "连登录页都打不开" in text_of(update)
    assert [p.get_filename() for p in update.iter_attachments()] == ["log.txt"]


def test_a_reply_to_a_resolved_ticket_reopens_it_for_the_handler(app: App) -> None:
    feed(app, messages.mail(subject="OA 打不开", body=OUTAGE))
    desk.run(app, FIRST, [("resolve", "重启了")], actor=WANG)
    feed(app, messages.mail(subject=f"Re: [{FIRST}] OA 打不开", body="还是不行。\n"))
    assert ticket(app)["status"] == "reopened"
    assert sent(app)[-1] == ("reopened", [WANG])
    assert "还是不行" in text_of(last_mail(app, "reopened"))


def test_a_mail_to_a_ticket_closed_long_ago_opens_a_linked_ticket(
        app: App, clock: FixedClock) -> None:
    feed(app, messages.mail(subject="OA 打不开", body=OUTAGE))
    desk.run(app, FIRST, [("close", "")], actor=WANG)
    clock.advance(timedelta(days=13))
    feed(app, messages.mail(subject=f"Re: [{FIRST}] OA 打不开", body="又坏了。\n"))
    assert ticket(app)["status"] == "reopened"       # within [sla] reopen_days (14)
    desk.run(app, FIRST, [("close", "")], actor=WANG)
    clock.advance(timedelta(days=15))
    action, number = feed(app, messages.mail(subject=f"Re: [{FIRST}] OA 打不开",
                                             body="又坏了。\n"))
    assert (action, number) == ("created", "TS20231124000001")
    assert ticket(app)["status"] == "closed"
    assert ticket(app, number or "")["linked_ticket"] == FIRST
