"""Quoted history through the whole pipeline: a follow-up stores only what the requester wrote.

Each reply is built the way a common client writes it (Outlook, Gmail, Foxmail/QQ, Chinese
Outlook, Apple Mail), ingested as a follow-up on a real ticket, and the stored message must
hold exactly the new text in ``new_text`` and the history in ``quoted_text``.
"""

from __future__ import annotations

from email.message import EmailMessage

import pytest
from sqlalchemy import select

from daemon import tickets
from daemon.app import App
from daemon.intake.pipeline import Intake
from daemon.intake.sources import RawMail
from daemon.models import Message
from tests import messages

NUMBER = "TS20231027000001"

OUTLOOK_HISTORY = (
    "-----Original Message-----\n"
    "From: Corp Support <support@corp.example>\n"
    "Sent: Friday, October 27, 2023 9:31 AM\n"
    "To: Zhang San <zhang.san@corp.example>\n"
    f"Subject: [{NUMBER}] 打印机无法打印\n"
    "\n"
    "Please restart the printer and tell us whether it prints."
)
OUTLOOK_BLOCK_HISTORY = (
    "________________________________\n"
    "From: Corp Support <support@corp.example>\n"
    "Sent: Friday, October 27, 2023 9:31 AM\n"
    "To: Zhang San <zhang.san@corp.example>\n"
    f"Subject: RE: [{NUMBER}] 打印机无法打印\n"
    "\n"
    "Please restart the printer."
)
GMAIL_HISTORY = (
    "On Fri, Oct 27, 2023 at 9:31 AM Corp Support <support@corp.example> wrote:\n"
    "\n"
    "> Please restart the printer and tell us whether it prints.\n"
    ">\n"
    "> Corp Support"
)
FOXMAIL_HISTORY = (
    "------------------ 原始邮件 ------------------\n"
    "发件人: \"Corp Support\"<support@corp.example>;\n"
    "发送时间: 2023年10月27日(星期五) 上午9:31\n"
    "收件人: \"张三\"<zhang.san@corp.example>;\n"
    f"主题: [{NUMBER}] 打印机无法打印\n"
    "\n"
    "请重启打印机后再试一次。"
)
OUTLOOK_ZH_HISTORY = (
    "发件人: Corp Support <support@corp.example>\n"
    "发送时间: 2023年10月27日 9:31\n"
    "收件人: 张三 <zhang.san@corp.example>\n"
    f"主题: [{NUMBER}] 打印机无法打印\n"
    "\n"
    "请重启打印机后再试一次。"
)
APPLE_HISTORY = (
    "在 2023年10月27日 09:31，Corp Support <support@corp.example> 写道：\n"
    "\n"
    "> 请重启打印机后再试一次。"
)

STYLES = {
    "outlook-original-message": (
        "Restarted it, still nothing comes out.\n\nZhang San", OUTLOOK_HISTORY),
    "outlook-from-sent-block": ("Still broken after the restart.", OUTLOOK_BLOCK_HISTORY),
    "gmail-on-wrote": ("Done, it prints again. Thanks!", GMAIL_HISTORY),
    "foxmail-qq-original-mail": ("重启过了，还是打印不出来。\n\n张三", FOXMAIL_HISTORY),
    "outlook-chinese": ("还是不行，打印队列一直卡住。", OUTLOOK_ZH_HISTORY),
    "apple-mail-chinese": ("好了，可以打印了，谢谢！", APPLE_HISTORY),
}


@pytest.fixture
def intake(app: App) -> Intake:
    intake = Intake(app)
    result = intake.ingest(RawMail(messages.mail(message_id="<first@client.example>"), "test"))
    assert result.number == NUMBER
    return intake


def follow_up_of(app: App) -> Message:
    with app.db.transaction() as s:
        ticket = tickets.get(s, NUMBER)
        [message] = s.scalars(select(Message).where(
            Message.ticket_id == ticket.id, Message.kind == "follow-up")).all()
        s.expunge(message)
        return message


@pytest.mark.parametrize(("new", "history"), STYLES.values(), ids=STYLES.keys())
def test_a_plain_text_reply_stores_new_text_and_history_apart(app: App, intake: Intake,
                                                              new: str, history: str) -> None:
    raw = messages.mail(subject=f"回复: [{NUMBER}] 打印机无法打印", body=f"{new}\n\n{history}\n",
                        in_reply_to="<first@client.example>")
    result = intake.ingest(RawMail(raw, "test"))
    assert (result.action, result.number) == ("appended", NUMBER)
    message = follow_up_of(app)
    assert message.new_text == new
    assert message.quoted_text == history
    assert message.body_text == f"{new}\n\n{history}"


def test_an_outlook_html_reply_folds_the_reply_container(app: App, intake: Intake) -> None:
    msg = EmailMessage()
    msg["From"] = "张三 <zhang.san@corp.example>"
    msg["To"] = "support@corp.example"
    msg["Subject"] = f"RE: [{NUMBER}] 打印机无法打印"
    msg["Message-ID"] = "<outlook-html@client.example>"
    msg.set_content(
        "<html><body><div>Restarted it, still nothing comes out.</div>"
        '<hr><div id="divRplyFwdMsg"><b>From:</b> Corp Support &lt;support@corp.example&gt;'
        "<br><b>Sent:</b> Friday, October 27, 2023 9:31 AM</div>"
        "<div>Please restart the printer.</div></body></html>", subtype="html")
    result = intake.ingest(RawMail(msg.as_bytes(), "test"))
    assert (result.action, result.number) == ("appended", NUMBER)
    message = follow_up_of(app)
    assert message.new_text == "Restarted it, still nothing comes out."
    # Block elements become lines of their own, never indented (no blank-line promise).
    assert [line for line in message.quoted_text.splitlines() if line] == [
        "From: Corp Support <support@corp.example>",
        "Sent: Friday, October 27, 2023 9:31 AM",
        "Please restart the printer."]


def test_a_gmail_reply_with_text_and_html_uses_the_text_part(app: App, intake: Intake) -> None:
    msg = EmailMessage()
    msg["From"] = "张三 <zhang.san@corp.example>"
    msg["To"] = "support@corp.example"
    msg["Subject"] = f"Re: [{NUMBER}] 打印机无法打印"
    msg["Message-ID"] = "<gmail-alt@client.example>"
    msg.set_content(f"Done, it prints again. Thanks!\n\n{GMAIL_HISTORY}\n")
    msg.add_alternative(
        '<div dir="ltr">Done, it prints again. Thanks!</div><br><div class="gmail_quote">'
        '<div class="gmail_attr">On Fri, Oct 27, 2023 at 9:31 AM Corp Support wrote:</div>'
        '<blockquote class="gmail_quote">Please restart the printer.</blockquote></div>',
        subtype="html")
    intake.ingest(RawMail(msg.as_bytes(), "test"))
    message = follow_up_of(app)
    assert message.new_text == "Done, it prints again. Thanks!"
    assert message.quoted_text == GMAIL_HISTORY
