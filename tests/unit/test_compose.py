"""compose(): MIME structure, encodings, threading headers, tokened Message-IDs."""

from __future__ import annotations

import email
import re
from datetime import UTC, datetime, timedelta, timezone
from email import policy
from email.message import EmailMessage
from typing import Any

import pytest

from daemon.intake.parsed import Address
from daemon.replies.compose import (
    MAX_REFERENCES,
    OutgoingAttachment,
    compose,
    make_message_id,
    thread_references,
    to_bytes,
    token_of,
)
from daemon.replies.kinds import sample
from daemon.replies.templates import RenderedMail, TemplateStore

CST = timezone(timedelta(hours=8))
SENDER = Address("IT 服务台", "support@example.com")
REQUESTER = Address("张伟", "zhang.wei@example.com")
TEXT_ONLY = RenderedMail(subject="[TS20231027000001] Closed: VPN", text="Bye.\n", html=None)
ZH = RenderedMail(
    subject="[TS20231027000001] 工单已受理：报表导出功能点击后无响应",
    text="张伟，您好：\n\n您的问题我们已经收到。\n",
    html="<p>张伟，您好：</p>\n<p>您的问题我们已经收到。</p>\n",
)


def build(rendered: RenderedMail = ZH, **overrides: Any) -> EmailMessage:
    arguments: dict[str, Any] = {
        "sender": SENDER,
        "to": [REQUESTER],
        "message_id": "ticketd.0123456789abcdef0123456789abcdef@example.com",
        "in_reply_to": "<CAF=orig@mail.example.net>",
        "references": ["<CAF=orig@mail.example.net>"],
        "date": datetime(2023, 10, 27, 9, 35, tzinfo=CST),
        "auto_submitted": True,
        "loop_header": ("X-Ticketd-Loop", "support@example.com"),
    }
    arguments.update(overrides)
    return compose(rendered, **arguments)


def decoded(part: Any) -> str:
    """A text part's content; line breaks are CRLF on the wire (canonical form), LF here."""
    content = part.get_content()
    assert isinstance(content, str)
    return content.replace("\r\n", "\n")


def roundtrip(msg: EmailMessage) -> EmailMessage:
    parsed = email.message_from_bytes(to_bytes(msg), policy=policy.default)
    assert isinstance(parsed, EmailMessage)
    return parsed


def test_exact_headers_of_a_text_only_mail() -> None:
    parsed = roundtrip(build(TEXT_ONLY, cc=[Address("", "lead@example.com")]))
    assert [(k, str(v)) for k, v in parsed.items()] == [
        ("Subject", "[TS20231027000001] Closed: VPN"),
        ("From", "IT 服务台 <support@example.com>"),
        ("To", "张伟 <zhang.wei@example.com>"),
        ("Cc", "lead@example.com"),
        ("Date", "Fri, 27 Oct 2023 09:35:00 +0800"),
        ("Message-ID", "<ticketd.0123456789abcdef0123456789abcdef@example.com>"),
        ("In-Reply-To", "<CAF=orig@mail.example.net>"),
        ("References", "<CAF=orig@mail.example.net>"),
        ("Auto-Submitted", "auto-replied"),
        ("X-Auto-Response-Suppress", "OOF, AutoReply"),
        ("X-Ticketd-Loop", "support@example.com"),
        ("MIME-Version", "1.0"),
        ("Content-Type", 'text/plain; charset="utf-8"'),
        ("Content-Transfer-Encoding", "7bit"),
    ]
    assert decoded(parsed) == "Bye.\n"
    assert "Precedence" not in parsed


def test_text_and_html_are_a_multipart_alternative() -> None:
    parsed = roundtrip(build())
    assert parsed.get_content_type() == "multipart/alternative"
    text, html = parsed.iter_parts()
    assert text.get_content_type() == "text/plain"
    assert html.get_content_type() == "text/html"
    assert text.get_content_charset() == "utf-8"
    assert decoded(text) == ZH.text
    assert decoded(html) == ZH.html
    assert "MIME-Version" not in text
    assert "MIME-Version" not in html


def test_chinese_subject_and_names_are_rfc2047_encoded() -> None:
    raw = to_bytes(build())
    head = raw.split(b"\r\n\r\n", 1)[0]
    assert head.isascii()
    assert b"=?utf-8?" in head
    assert raw.isascii()  # bodies are base64 / quoted-printable, never 8-bit
    parsed = roundtrip(build())
    assert parsed["Subject"] == ZH.subject
    assert parsed["From"].addresses[0].display_name == "IT 服务台"
    assert parsed["To"].addresses[0].display_name == "张伟"
    assert parsed["To"].addresses[0].addr_spec == "zhang.wei@example.com"


def test_to_bytes_uses_crlf_only() -> None:
    raw = to_bytes(build(attachments=[OutgoingAttachment("a.txt", "text/plain", b"x\ny\n")]))
    assert b"\r\n" in raw
    assert b"\n" not in raw.replace(b"\r\n", b"")
    assert b"\r" not in raw.replace(b"\r\n", b"")


def test_attachments_make_a_mixed_message_with_rfc2231_names() -> None:
    name = "浏览器控制台日志 (2023年10月27日) 非常长的文件名称用于测试参数续行.txt"
    msg = build(
        attachments=[
            OutgoingAttachment(name, "text/plain", "日志".encode()),
            OutgoingAttachment("report.pdf", "application/pdf", b"%PDF-1.7"),
            OutgoingAttachment("weird", "not a type", b"\x00\x01"),
        ]
    )
    raw = to_bytes(msg)
    assert b"filename*" in raw  # RFC 2231, not RFC 2047 in a quoted string
    parsed = roundtrip(msg)
    assert parsed.get_content_type() == "multipart/mixed"
    body, *files = parsed.iter_parts()
    assert body.get_content_type() == "multipart/alternative"
    assert [f.get_filename() for f in files] == [name, "report.pdf", "weird"]
    assert [f.get_content_type() for f in files] == [
        "text/plain", "application/pdf", "application/octet-stream",
    ]
    assert files[0].get_payload(decode=True) == "日志".encode()
    assert files[2].get_payload(decode=True) == b"\x00\x01"
    assert all(f.get_content_disposition() == "attachment" for f in files)


def test_references_are_deduplicated_capped_and_end_with_the_parent() -> None:
    refs = [f"<id{i}@example.com>" for i in range(30)] + ["<id3@example.com>", " bad id "]
    parsed = roundtrip(build(references=refs, in_reply_to="<parent@example.com>"))
    ids = re.findall(r"<([^>]+)>", str(parsed["References"]))
    assert len(ids) == MAX_REFERENCES
    assert ids[0] == "id0@example.com"
    assert ids[-1] == "parent@example.com"
    assert ids[-2] == "id29@example.com"
    assert len(set(ids)) == len(ids)
    assert parsed["In-Reply-To"] == "<parent@example.com>"


def test_thread_references_keeps_order_and_accepts_bare_ids() -> None:
    assert thread_references(["a@x", "<b@x>", "a@x"], "b@x") == ["a@x", "b@x"]
    assert thread_references([], "<p@x>") == ["p@x"]
    assert thread_references([], None) == []


def test_no_threading_headers_for_a_new_thread() -> None:
    parsed = roundtrip(build(in_reply_to=None, references=[]))
    assert "In-Reply-To" not in parsed
    assert "References" not in parsed
    assert parsed["Auto-Submitted"] == "auto-generated"  # RFC 3834: not a reply to a message


def test_human_mail_is_not_marked_automatic_but_keeps_the_loop_header() -> None:
    parsed = roundtrip(build(auto_submitted=False))
    assert "Auto-Submitted" not in parsed
    assert "X-Auto-Response-Suppress" not in parsed
    assert parsed["X-Ticketd-Loop"] == "support@example.com"


def test_extra_headers() -> None:
    parsed = roundtrip(build(extra_headers={"Reply-To": "support@example.com"}))
    assert parsed["Reply-To"] == "support@example.com"
    with pytest.raises(ValueError, match="set by compose"):
        build(extra_headers={"message-id": "<x@y>"})
    with pytest.raises(ValueError, match="line breaks"):
        build(extra_headers={"X-Note": "a\r\nBcc: victim@example.com"})
    with pytest.raises(ValueError, match="header name"):
        build(extra_headers={"Bad Name": "x"})


def test_invalid_arguments() -> None:
    with pytest.raises(ValueError, match="aware"):
        build(date=datetime(2023, 10, 27, 9, 35))  # naive on purpose
    with pytest.raises(ValueError, match="recipient"):
        build(to=[])
    with pytest.raises(ValueError, match="Message-ID"):
        build(message_id="<>")


def test_cc_only_mail_has_undisclosed_to() -> None:
    parsed = roundtrip(build(to=[], cc=[Address("Lead", "lead@example.com")]))
    assert parsed["Cc"] == "Lead <lead@example.com>"
    assert str(parsed["To"]) == "undisclosed-recipients:;"


def test_rendered_templates_survive_the_trip() -> None:
    store = TemplateStore(None, "zh-CN")
    rendered = store.render("acceptance", "zh-CN", sample("acceptance", "zh-CN"))
    parsed = roundtrip(build(rendered, date=datetime(2023, 10, 27, 1, 35, tzinfo=UTC)))
    text = parsed.get_body(("plain",))
    html = parsed.get_body(("html",))
    assert text is not None
    assert html is not None
    assert decoded(text) == rendered.text
    assert decoded(html) == rendered.html
    assert parsed["Subject"] == rendered.subject


# --- Message-ID tokens -------------------------------------------------------------------------


def test_make_message_id_is_unguessable_and_recoverable() -> None:
    ids = [make_message_id("Example.COM") for _ in range(50)]
    tokens = {token for _, token in ids}
    assert len(tokens) == 50
    for message_id, token in ids:
        assert len(token) >= 32  # >= 128 bits of hex
        assert re.fullmatch(r"[0-9a-f]+", token)
        assert message_id == f"ticketd.{token}@example.com"
        assert token_of(message_id) == token
        assert token_of(f"<{message_id}>") == token


def test_make_message_id_with_a_given_token_is_stable() -> None:
    first, token = make_message_id("example.com")
    assert make_message_id("example.com", token) == (first, token)
    with pytest.raises(ValueError):
        make_message_id("example.com", "short")
    with pytest.raises(ValueError):
        make_message_id("exa mple.com")
    with pytest.raises(ValueError):
        make_message_id("a@b")


@pytest.mark.parametrize(
    "foreign",
    [
        "CAF=orig@mail.example.net",
        "<ticketd.short@example.com>",
        "ticketd.0123456789abcdef0123456789abcdef",
        "xticketd.0123456789abcdef0123456789abcdef@example.com",
        "",
    ],
)
def test_token_of_ignores_foreign_ids(foreign: str) -> None:
    assert token_of(foreign) is None


def test_composed_message_id_carries_the_token() -> None:
    message_id, token = make_message_id("example.com")
    parsed = roundtrip(build(message_id=message_id))
    assert token_of(str(parsed["Message-ID"])) == token


def test_outgoing_attachment_repr_hides_the_payload() -> None:
    assert repr(OutgoingAttachment("a.pdf", "application/pdf", b"x" * 10)) == (
        "OutgoingAttachment(filename='a.pdf', content_type='application/pdf', size=10)"
    )


def test_an_internationalised_address_makes_an_smtputf8_mail() -> None:
    """RFC 6532: a non-ASCII local part can only be written in UTF-8 headers (the SMTP
    transport then asks the server for SMTPUTF8); an ASCII mail stays 7-bit."""
    eai = Address("李雷", "李雷@例子.公司")
    raw = to_bytes(build(to=[eai], cc=[REQUESTER]))
    head = raw.split(b"\r\n\r\n", 1)[0]
    assert "李雷@例子.公司".encode() in head and not head.isascii()
    # the stdlib reads header bytes as ASCII; UTF-8 headers are read from the decoded text
    parsed = email.message_from_string(raw.decode("utf-8"), policy=policy.SMTPUTF8)
    assert parsed["To"].addresses[0].addr_spec == "李雷@例子.公司"
    assert parsed["Cc"].addresses[0].addr_spec == "zhang.wei@example.com"
    assert parsed["Subject"] == ZH.subject
    assert b"\r\n" in raw and b"\n" not in raw.replace(b"\r\n", b"")
    assert to_bytes(build()).isascii()
