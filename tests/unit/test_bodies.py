"""Body choice, HTML to text, and the split of new text from quoted history (zh and en)."""

from __future__ import annotations

from email.message import EmailMessage

import pytest

from daemon.intake.bodies import html_to_text, is_stub, split_reply
from daemon.intake.parse import parse


def message(plain: str | None = None, html: str | None = None) -> EmailMessage:
    msg = EmailMessage()
    msg["From"] = "Requester <requester@example.com>"
    msg["To"] = "support@example.com"
    msg["Subject"] = "Printer"
    if plain is not None:
        msg.set_content(plain)
        if html is not None:
            msg.add_alternative(html, subtype="html")
    elif html is not None:
        msg.set_content(html, subtype="html")
    return msg


HTML = """<html><head><style>p { color: red }</style><script>alert("x")</script></head>
<body><p>Hello team,</p>
<ul><li>printer offline</li><li>scanner jams</li></ul>
<ol><li>restart</li><li>call us</li></ol>
<p>See <a href="https://help.example.com/kb/1">the guide</a> or
<a href="mailto:it@example.com">it@example.com</a>.</p>
<img src="https://t.example.com/open.gif" width="1" height="1" alt="pixel">
<img src="cid:logo" alt="">
<img src="https://example.com/chart.png" alt="Chart" width="400">
</body></html>"""


def test_html_to_text_keeps_paragraphs_lists_links_and_drops_noise() -> None:
    assert html_to_text(HTML) == (
        "Hello team,\n\n"
        "  * printer offline\n"
        "  * scanner jams\n"
        " 1. restart\n"
        " 2. call us\n\n"
        "See the guide (https://help.example.com/kb/1) or it@example.com.\n\n"
        "[Chart]"
    )


def test_html_only_mail_is_converted_and_html_kept() -> None:
    parsed = parse(bytes(message(html=HTML)))
    assert parsed.body_text.startswith("Hello team,\n\n  * printer offline\n")
    assert "alert" not in parsed.body_text
    assert "color" not in parsed.body_text
    assert "pixel" not in parsed.body_text
    assert parsed.body_html is not None
    assert "<ul><li>printer offline</li>" in parsed.body_html


@pytest.mark.parametrize(
    "stub",
    ["This message requires HTML.", "", "  \n", "See HTML", "此邮件需要支持 HTML 的客户端查看。"],
)
def test_text_stub_beside_real_html_yields_the_html_text(stub: str) -> None:
    parsed = parse(bytes(message(plain=stub or "\n", html=HTML)))
    assert parsed.body_text.startswith("Hello team,")


def test_real_text_part_is_preferred_over_html() -> None:
    parsed = parse(bytes(message(plain="The printer on floor 3 is offline.\n", html=HTML)))
    assert parsed.body_text == "The printer on floor 3 is offline."
    assert parsed.body_html is not None


def test_is_stub() -> None:
    assert is_stub("Please view in HTML", "Long HTML content " * 5)
    assert not is_stub("Short but real reply.", "Short but real reply.")
    assert not is_stub("ok", "")


def test_several_text_parts_are_joined_in_order() -> None:
    msg = EmailMessage()
    msg["From"] = "a@example.com"
    msg["Subject"] = "parts"
    msg.set_content("First part.\n")
    msg.add_attachment(b"%PDF-1.4", maintype="application", subtype="pdf", filename="a.pdf")
    msg.add_attachment("Second part.\n", disposition="inline")
    parsed = parse(bytes(msg))
    assert parsed.body_text == "First part.\n\nSecond part."
    assert [a.filename for a in parsed.attachments] == ["a.pdf"]


def test_format_flowed_is_unwrapped() -> None:
    raw = (
        b"From: a@example.com\r\nSubject: flowed\r\nMIME-Version: 1.0\r\n"
        b"Content-Type: text/plain; charset=utf-8; format=flowed\r\n\r\n"
        b"This line was wrapped \r\nby the client.\r\n\r\n> quoted and \r\n> wrapped\r\n"
    )
    parsed = parse(raw)
    assert parsed.body_text == "This line was wrapped by the client.\n\n> quoted and wrapped"


# --- quoting styles -------------------------------------------------------------------------

QUOTING = {
    "gmail-en": (
        "Thanks, that fixed it.\n\n"
        "On Fri, Oct 27, 2023 at 10:00 AM Support <support@example.com> wrote:\n\n"
        "> Please restart the printer.\n",
        "Thanks, that fixed it.",
        "On Fri, Oct 27, 2023",
    ),
    "gmail-en-two-lines": (
        "Still broken.\n\nOn Fri, Oct 27, 2023 at 10:00 AM Support Team <support@example.com>\n"
        "wrote:\n> Please restart.\n",
        "Still broken.",
        "On Fri, Oct 27, 2023",
    ),
    "outlook-en-original-message": (
        "Still broken.\n\n-----Original Message-----\nFrom: Support\nSent: Friday\n"
        "To: Me\nSubject: RE: Printer\n\nPlease restart.\n",
        "Still broken.",
        "-----Original Message-----",
    ),
    "outlook-en-from-sent-block": (
        "Still broken.\n\n________________________________\n"
        "From: Support <support@example.com>\nSent: Friday, October 27, 2023 10:00 AM\n"
        "To: Me <me@example.com>\nSubject: RE: Printer\n\nPlease restart.\n",
        "Still broken.",
        "________________________________",
    ),
    "outlook-en-bold-with-blank-lines": (
        "Works now.\n\n*From:* Support <support@example.com>\n\n*Sent:* Friday\n\n"
        "*Subject:* Printer\n\nPlease restart.\n",
        "Works now.",
        "*From:* Support",
    ),
    "apple-en-bottom-quote": (
        "Works now.\n\n> On 27 Oct 2023, at 10:00, Support <support@example.com> wrote:\n>\n"
        "> Please restart.\n",
        "Works now.",
        "> On 27 Oct 2023",
    ),
    "thunderbird-en-bottom-posting": (
        "On 27/10/2023 10:00, Support wrote:\n> Please restart.\nDone, it works.\n",
        "Done, it works.",
        "On 27/10/2023 10:00, Support wrote:\n> Please restart.",
    ),
    "angle-quoting": (
        "I tried that.\n\n> Please restart.\n> Then call us.\n",
        "I tried that.",
        "> Please restart.",
    ),
    "foxmail-zh-fullwidth": (
        "已经重启了，还是不行。\n\n发件人：技术支持 <support@example.com>\n"
        "发送时间：2023年10月27日(星期五) 上午10:00\n收件人：张三 <zhang@example.com>\n"
        "主题：回复：打印机故障\n\n请重启打印机。\n",
        "已经重启了，还是不行。",
        "发件人：技术支持",
    ),
    "outlook-cn-halfwidth": (
        "还是不行。\n\n发件人: 技术支持 <support@example.com>\n发送时间: 2023年10月27日 10:00\n"
        "收件人: 张三\n主题: RE: 打印机故障\n\n请重启打印机。\n",
        "还是不行。",
        "发件人: 技术支持",
    ),
    "qq-original": (
        "好的，谢谢！\n\n------------------\u00a0原始邮件\u00a0------------------\n"
        "发件人: \"技术支持\"<support@example.com>;\n发送时间: 2023年10月27日(星期五) 上午10:00\n"
        "收件人: \"张三\"<zhang@example.com>;\n主题: 打印机故障\n\n请重启。\n",
        "好的，谢谢！",
        "------------------\u00a0原始邮件",
    ),
    "gmail-zh-yu-xiedao": (
        "收到，谢谢。\n\n技术支持 <support@example.com> 于2023年10月27日周五 10:00写道：\n\n"
        "> 请重启打印机。\n",
        "收到，谢谢。",
        "技术支持 <support@example.com> 于",
    ),
    "apple-zh-zai-xiedao": (
        "收到。\n\n在 2023年10月27日 10:00，技术支持 <support@example.com> 写道：\n\n> 请重启。\n",
        "收到。",
        "在 2023年10月27日",
    ),
    "zai-xiedao-halfwidth-colon": (
        "收到。\n在 2023/10/27 上午10:00, support@example.com 写道:\n> 请重启。\n",
        "收到。",
        "在 2023/10/27",
    ),
}


@pytest.mark.parametrize(("body", "new", "quote_start"), QUOTING.values(), ids=QUOTING.keys())
def test_quoting_styles(body: str, new: str, quote_start: str) -> None:
    parsed = parse(bytes(message(plain=body)))
    assert parsed.new_text == new
    assert parsed.quoted_text.startswith(quote_start)
    assert parsed.body_text == body.strip("\n")


def test_forwarded_message_is_not_quoted_history() -> None:
    body = (
        "Please look at the mail below.\n\n---------- Forwarded message ---------\n"
        "From: Customer <c@example.com>\nDate: Fri, 27 Oct 2023\nSubject: Broken\n"
        "To: me@example.com\n\nMy printer is broken.\n"
    )
    new, quoted = split_reply(body)
    assert new == body.strip()
    assert quoted == ""


def test_no_quote_means_everything_is_new() -> None:
    assert split_reply("Just a question:\nhow do I reset?\n") == (
        "Just a question:\nhow do I reset?",
        "",
    )


def test_html_only_gmail_quote_container_is_split() -> None:
    html = (
        '<div dir="ltr">Thanks, fixed.</div><br><div class="gmail_quote">'
        '<div class="gmail_attr">Support wrote:</div>'
        '<blockquote class="gmail_quote">Please restart.</blockquote></div>'
    )
    parsed = parse(bytes(message(html=html)))
    assert parsed.new_text == "Thanks, fixed."
    assert parsed.quoted_text.startswith("Support wrote:")


def test_html_only_apple_blockquote_cite_is_split() -> None:
    html = (
        "<div>收到，谢谢</div><div><br><blockquote type=\"cite\"><div>请重启打印机</div>"
        "</blockquote></div>"
    )
    parsed = parse(bytes(message(html=html)))
    assert parsed.new_text == "收到，谢谢"
    assert "请重启打印机" in parsed.quoted_text
    assert parsed.language == "zh"
