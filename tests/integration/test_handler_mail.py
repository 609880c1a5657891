"""Handlers work by email: relays, commands, trust, the requester's confirmation and rating.

Runs on SQLite and PostgreSQL. Every handler mail here is built as a mail client would send a
reply to what ticketd mailed the handler (In-Reply-To our tokened Message-ID), unless the test
is about a forgery.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

import pytest
from sqlalchemy import select

from daemon import desk
from daemon.app import App
from daemon.clock import FixedClock
from daemon.models import OutboxMail
from tests import messages
from tests.integration.test_workflow import (
    FIRST,
    LEAD,
    LI,
    OUTAGE,
    WANG,
    ZHAO,
    feed,
    last_mail,
    make_app,  # noqa: F401  (fixture)
    sent,
    text_of,
    ticket,
)

REQUESTER = "zhang.san@corp.example"


@pytest.fixture
def app(make_app: Callable[..., App]) -> App:  # noqa: F811
    application = make_app(mail={"trusted_authserv_ids": ["mx.corp.example"]})
    feed(application, messages.mail(subject="OA 打不开", body=OUTAGE,
                                    message_id="<req1@client.example>"))
    assert ticket(application)["handler"] == WANG
    return application


def our_id(app: App, kind: str, to: str) -> str:
    """The Message-ID of the last mail of ``kind`` we queued to ``to``."""
    with app.db.transaction() as s:
        rows = s.scalars(select(OutboxMail).where(OutboxMail.kind == kind)
                         .order_by(OutboxMail.id.desc()))
        for row in rows:
            if to in row.recipients:
                return row.message_id
    raise AssertionError(f"no {kind} mail to {to}")


def handler_reply(app: App, body: str, *, sender: str = f"王工 <{WANG}>", kind: str = "assigned",
                  to: str = WANG, **extra: object) -> tuple[str, str | None]:
    ref = f"<{our_id(app, kind, to)}>"
    return feed(app, messages.mail(subject=f"RE: [{FIRST}] OA 打不开", body=body, sender=sender,
                                   in_reply_to=ref, references=ref, **extra))  # type: ignore[arg-type]


# ---------------------------------------------------------------- relay


def test_a_handler_s_answer_reaches_the_requester_from_the_support_address(app: App) -> None:
    assert handler_reply(app, "您好，我们正在重启 OA 服务，预计 10 分钟恢复。\n\n> 原邮件\n",
                         attachments=[("步骤.png", "image/png", b"\x89PNG")]) == (
        "appended", FIRST)
    assert ticket(app)["status"] == "in_progress"
    relay = last_mail(app, "reply")
    assert sent(app)[-1] == ("reply", [REQUESTER])
    assert str(relay["From"]) == "王工 via 技术支持 <support@corp.example>"
    raw = relay.as_string()
    assert WANG not in raw  # the requester never sees the handler's own address
    assert relay["In-Reply-To"] == "<req1@client.example>"
    assert "正在重启 OA 服务" in text_of(relay)
    assert [p.get_filename() for p in relay.iter_attachments()] == ["步骤.png"]
    assert relay["Auto-Submitted"] is None  # a person's answer, not an automatic mail


def test_co_handlers_get_a_copy_of_the_answer(app: App) -> None:
    desk.run(app, FIRST, [("cc", ZHAO)], actor=WANG)
    handler_reply(app, "正在处理。\n")
    assert sent(app)[-2:] == [("reply", [REQUESTER]), ("reply", [ZHAO])]


# ---------------------------------------------------------------- commands


@pytest.mark.parametrize(("command", "check"), [
    ("#resolve 已重启服务",
     lambda t: t["status"] == "resolved" and t["resolution"] == "已重启服务"),
    ("#解决 已重启服务", lambda t: t["status"] == "resolved"),
    ("#close", lambda t: t["status"] == "closed"),
    ("#关闭", lambda t: t["status"] == "closed"),
    (f"#assign {LI}", lambda t: t["handler"] == LI),
    (f"#指派 {LI}", lambda t: t["handler"] == LI),
    (f"#cc {ZHAO}", lambda t: t["co_handlers"] == [ZHAO]),
    (f"＃抄送：{ZHAO}", lambda t: t["co_handlers"] == [ZHAO]),
    ("#priority P2", lambda t: t["priority"] == "P2"),
    ("#优先级 p3", lambda t: t["priority"] == "P3"),
    ("#type Functional issue", lambda t: t["category"] == "功能异常"),
    ("#类型 权限申请", lambda t: t["category"] == "权限申请"),
    ("#needinfo 请提供报错截图", lambda t: t["status"] == "need_info"),
    ("#补充 请提供报错截图", lambda t: t["status"] == "need_info"),
    ("#internal 日志显示磁盘满", lambda t: t["events"][-2]["detail"] == "日志显示磁盘满"),
    ("#内部 日志显示磁盘满", lambda t: t["events"][-2]["action"] == "note"),
    ("#escalate 需要 DBA 协助", lambda t: t["events"][-3]["action"] == "escalated"),
    ("#升级 需要 DBA 协助", lambda t: "DBA" in t["events"][-3]["detail"]),
    ("#RESOLVE 已重启服务", lambda t: t["status"] == "resolved"),
])
def test_each_command_in_english_and_chinese(app: App, command: str,
                                             check: Callable[[dict[str, object]], bool]) -> None:
    handler_reply(app, f"{command}\n")
    shown = ticket(app)
    assert check(shown), shown
    assert sent(app)[-1] == ("command_result", [WANG])
    result = text_of(last_mail(app, "command_result"))
    assert command.split(maxsplit=1)[0].lstrip("#＃") in result and "[完成]" in result


def test_resolve_sends_the_resolution_with_the_rest_of_the_mail(app: App) -> None:
    handler_reply(app, "#resolve\n磁盘已清理，服务已重启。\n请刷新页面再试。\n")
    assert [k for k, _ in sent(app)][-2:] == ["resolution", "command_result"]
    text = text_of(last_mail(app, "resolution"))
    assert "磁盘已清理，服务已重启。" in text and "请刷新页面再试。" in text
    assert "#resolve" not in text


def test_a_command_with_text_relays_the_text(app: App) -> None:
    handler_reply(app, "#priority P1\n\n您好，已提升优先级，正在处理。\n")
    assert ticket(app)["priority"] == "P1"
    assert [k for k, _ in sent(app)][-2:] == ["reply", "command_result"]
    assert "已提升优先级" in text_of(last_mail(app, "reply"))


def test_one_invalid_command_refuses_all_and_keeps_the_text_as_a_note(app: App) -> None:
    before = ticket(app)
    mails = len(sent(app))
    handler_reply(app, "#priority P1\n#assign nobody@else.example\n#resolve\n客户电话已沟通。\n")
    after = ticket(app)
    assert (after["priority"], after["handler"], after["status"]) == (
        before["priority"], before["handler"], before["status"])
    assert sent(app)[mails:] == [("command_result", [WANG])]  # nothing to the requester
    result = text_of(last_mail(app, "command_result"))
    assert "全部未执行" in result and "nobody@else.example: not a handler" in result
    assert "内部备注" in result
    assert after["events"][-2]["action"] == "note"
    assert after["events"][-2]["detail"] == "客户电话已沟通。"


def test_unknown_command_and_bad_priority_are_refused(app: App) -> None:
    handler_reply(app, "#frobnicate now\n")
    assert "unknown command #frobnicate" in text_of(last_mail(app, "command_result"))
    handler_reply(app, "#priority P7\n")
    assert "P7" in text_of(last_mail(app, "command_result"))
    assert ticket(app)["priority"] == "P0"


# ---------------------------------------------------------------- trust


def test_a_forged_handler_from_changes_nothing(app: App) -> None:
    mails = sent(app)
    feed(app, messages.mail(subject=f"RE: [{FIRST}] OA 打不开", body="#resolve 搞定了\n",
                            sender=f"王工 <{WANG}>"))
    t = ticket(app)
    assert t["status"] == "accepted"
    assert sent(app) == mails
    assert t["events"][-1]["action"] == "follow-up-untrusted"
    assert "claims to be a handler but proves nothing" in t["events"][-1]["detail"]
    assert t["messages"][-1]["trusted"] is False


def test_a_token_sent_to_another_handler_proves_nothing(app: App) -> None:
    # LI (a real handler) replies citing the mail we sent to WANG: not a proof for LI.
    mails = sent(app)
    handler_reply(app, "#close\n", sender=LI)
    assert ticket(app)["status"] == "accepted"
    assert sent(app) == mails


def test_authentication_results_only_from_our_own_server(app: App) -> None:
    forged = {"Authentication-Results": "mx.evil.example; dmarc=pass header.from=corp.example"}
    feed(app, messages.mail(subject=f"RE: [{FIRST}] OA 打不开", body="#close\n",
                            sender=WANG, headers=forged))
    assert ticket(app)["status"] == "accepted"
    ours = {"Authentication-Results": "mx.corp.example; dkim=pass header.d=corp.example; "
                                      "spf=pass smtp.mailfrom=corp.example"}
    feed(app, messages.mail(subject=f"RE: [{FIRST}] OA 打不开", body="#close\n",
                            sender=WANG, headers=ours))
    assert ticket(app)["status"] == "closed"
    assert "auth-results" in ticket(app)["events"][-4]["detail"] or any(
        "auth-results" in e["detail"] for e in ticket(app)["events"])


def test_a_requester_cannot_run_commands(app: App) -> None:
    feed(app, messages.mail(subject=f"Re: [{FIRST}] OA 打不开", body="#resolve\n#close\n",
                            in_reply_to="<req1@client.example>"))
    assert ticket(app)["status"] == "accepted"
    # Their text is just text: it goes to the handler as an update.
    assert sent(app)[-1] == ("update", [WANG])
    assert "#resolve" in text_of(last_mail(app, "update"))


def test_a_requester_with_a_dmarc_failure_changes_nothing(app: App) -> None:
    desk.run(app, FIRST, [("resolve", "done")], actor=WANG)
    mails = sent(app)
    forged = {"Authentication-Results": "mx.corp.example; dmarc=fail header.from=corp.example"}
    feed(app, messages.mail(subject=f"Re: [{FIRST}] OA 打不开", body="还是不行\n", headers=forged))
    assert ticket(app)["status"] == "resolved"
    assert sent(app) == mails


# ---------------------------------------------------------------- the requester's answer


def test_a_confirmation_closes_and_a_complaint_reopens(app: App) -> None:
    handler_reply(app, "#resolve 已重启。\n")
    feed(app, messages.mail(subject=f"Re: [{FIRST}] OA 打不开", body="已解决，谢谢！满意度：5\n"))
    t = ticket(app)
    assert (t["status"], t["rating"]) == ("closed", 5)
    assert sent(app)[-1] == ("closed", [REQUESTER])

    feed(app, messages.mail(subject=f"Re: [{FIRST}] OA 打不开", body="好了，谢谢！\n"))
    assert ticket(app)["status"] == "closed"  # thanks again: stays closed
    feed(app, messages.mail(subject=f"Re: [{FIRST}] OA 打不开", body="今天又打不开了。\n"))
    assert ticket(app)["status"] == "reopened"
    assert sent(app)[-1] == ("reopened", [WANG])


def test_a_low_rating_tells_the_team_lead(app: App) -> None:
    handler_reply(app, "#resolve 已重启。\n")
    feed(app, messages.mail(subject=f"Re: [{FIRST}] OA 打不开",
                            body="还是很慢。评分 2\n"))
    t = ticket(app)
    assert (t["status"], t["rating"]) == ("reopened", 2)
    kinds = sent(app)[-2:]
    assert ("sla_breach", [LEAD]) in kinds and ("reopened", [WANG]) in kinds
    assert "2/5" in text_of(last_mail(app, "sla_breach"))


def test_attachments_travel_both_ways(app: App, clock: FixedClock) -> None:
    feed(app, messages.mail(subject=f"Re: [{FIRST}] OA 打不开", body="日志见附件。\n",
                            attachments=[("oa.log", "text/plain", b"error 503")]))
    assert [p.get_filename() for p in last_mail(app, "update").iter_attachments()] == ["oa.log"]
    clock.advance(timedelta(minutes=5))
    handler_reply(app, "修复说明见附件。\n", kind="update",
                  attachments=[("fix.pdf", "application/pdf", b"%PDF-1.4")])
    assert [p.get_filename() for p in last_mail(app, "reply").iter_attachments()] == ["fix.pdf"]


# ---------------------------------------------------------------- inspect


def test_inspect_shows_proof_and_what_the_commands_would_do_changing_nothing(app: App) -> None:
    from daemon import explain

    ref = f"<{our_id(app, 'assigned', WANG)}>"
    raw = messages.mail(subject=f"RE: [{FIRST}] OA 打不开", sender=WANG, in_reply_to=ref,
                        body="#priority P1\n#assign nobody@else.example\n已沟通。\n")
    before = (ticket(app), sent(app))
    shown = explain.explain(app, raw, origin="test").as_dict()
    assert shown["handler"]["proven"] is True and shown["handler"]["proof"] == "token"
    assert [(c["line"], c["applies"]) for c in shown["handler"]["commands"]] == [
        ("#priority P1", False), ("#assign nobody@else.example", False)]
    assert "not a handler" in shown["handler"]["commands"][1]["detail"]
    good = messages.mail(subject=f"RE: [{FIRST}] OA 打不开", sender=WANG, in_reply_to=ref,
                         body="#priority P1\n")
    report = explain.explain(app, good, origin="test")
    assert report.as_dict()["handler"]["commands"][0]["applies"] is True
    assert "would apply: #priority P1" in explain.render(report)
    forged = messages.mail(subject=f"RE: [{FIRST}] OA 打不开", sender=WANG, body="#close\n")
    shown = explain.explain(app, forged, origin="test").as_dict()
    assert shown["handler"]["proven"] is False and shown["verdict"]["trusted"] is False
    assert (ticket(app), sent(app)) == before


def test_inspect_says_a_from_is_forged(app: App) -> None:
    from daemon import explain

    forged = {"Authentication-Results": "mx.corp.example; dmarc=fail header.from=corp.example"}
    raw = messages.mail(subject=f"Re: [{FIRST}] OA 打不开", body="还是不行\n", headers=forged)
    report = explain.explain(app, raw, origin="test")
    assert report.as_dict()["verdict"]["trusted"] is False
    assert "FORGED From (mx.corp.example: dmarc=fail)" in explain.render(report)
