"""parse(): headers, ids, addresses, dates, language, broken mail and what is not mail."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta, timezone
from email.message import EmailMessage

import pytest

from daemon.errors import Quarantine
from daemon.intake.parse import detect_language, message_ids, parse
from daemon.intake.parsed import Address


def test_headers_ids_addresses_and_date() -> None:
    raw = (
        b"Message-ID: <ABC.123@mail.example.com>\r\n"
        b"In-Reply-To: <ours-1@ticketd.example> (Support's message of Fri)\r\n"
        b"References: <root@example.com>\r\n <ours-1@ticketd.example>\t<root@example.com>\r\n"
        b'From: "Zhang, San" <Zhang.San@Example.COM>\r\n'
        b"To: Support <SUPPORT@example.com>, other@example.com\r\n"
        b"Cc: Team: alice@example.com, Bob <BOB@example.com>;, undisclosed-recipients:;\r\n"
        b"Reply-To: replies@example.com\r\n"
        b"Subject: =?utf-8?B?5omT5Y2w5py6?= broken\r\n"
        b"Date: Fri, 27 Oct 2023 10:00:00 +0800\r\n"
        b"X-Custom: one\r\nX-Custom: two\r\n\r\nbody\r\n"
    )
    parsed = parse(raw)
    assert parsed.message_id == "ABC.123@mail.example.com"
    assert parsed.in_reply_to == ("ours-1@ticketd.example",)
    assert parsed.references == ("root@example.com", "ours-1@ticketd.example")
    assert parsed.from_ == Address("Zhang, San", "zhang.san@example.com")
    assert parsed.to == (Address("Support", "support@example.com"),
                         Address("", "other@example.com"))
    assert parsed.cc == (Address("", "alice@example.com"), Address("Bob", "bob@example.com"))
    assert parsed.reply_to == (Address("", "replies@example.com"),)
    assert parsed.subject == "打印机 broken"
    assert parsed.date == datetime(2023, 10, 27, 10, 0, tzinfo=timezone(timedelta(hours=8)))
    assert parsed.headers["x-custom"] == ("one", "two")
    assert parsed.header("X-Custom") == "one"
    assert parsed.header("subject") == "打印机 broken"
    assert parsed.content_type == "text/plain"
    assert parsed.raw_size == len(raw)
    assert parsed.raw_sha256 == hashlib.sha256(raw).hexdigest()
    assert parsed.report is None


def test_missing_headers_degrade_to_none_and_empty() -> None:
    parsed = parse(b"Subject: only a subject\r\n\r\nHello\r\n")
    assert parsed.message_id is None
    assert parsed.from_ is None
    assert (parsed.to, parsed.cc, parsed.reply_to) == ((), (), ())
    assert (parsed.in_reply_to, parsed.references) == ((), ())
    assert parsed.date is None
    assert parsed.body_text == "Hello"
    assert parsed.new_text == "Hello"
    assert parsed.language == "en"


def test_message_id_without_angle_brackets() -> None:
    parsed = parse(b"Message-ID: plain-id@example.com\r\nFrom: a@example.com\r\n\r\nx")
    assert parsed.message_id == "plain-id@example.com"


def test_date_without_zone_is_utc_and_garbage_is_none() -> None:
    parsed = parse(b"From: a@example.com\r\nDate: Fri, 27 Oct 2023 10:00:00\r\n\r\nx")
    assert parsed.date == datetime(2023, 10, 27, 10, 0, tzinfo=UTC)
    broken = parse(b"From: a@example.com\r\nDate: next tuesday-ish\r\n\r\nx")
    assert broken.date is None
    assert "date: unparsable: next tuesday-ish" in broken.defects


def test_garbage_addresses_are_skipped_and_recorded() -> None:
    parsed = parse(b"From: <<>> ,, @@\r\nTo: John Doe, ok@example.com\r\nSubject: x\r\n\r\nx")
    assert parsed.from_ is None
    assert parsed.to == (Address("", "ok@example.com"),)
    assert any(d.startswith("from: ") for d in parsed.defects)


def test_malformed_header_lines_do_not_stop_parsing() -> None:
    raw = (
        b"From: a@example.com\r\nSubject: =?utf-8?B?broken===?= ok\r\n"
        b"this line has no colon\r\nTo: b@example.com\r\n\r\nbody text\r\n"
    )
    parsed = parse(raw)
    assert parsed.from_ == Address("", "a@example.com")
    # A line without a colon inside the header block is a continuation that lost its
    # whitespace: joined to the Subject, and the headers after it are still read.
    assert parsed.subject.endswith("ok this line has no colon")
    assert parsed.to == (Address("", "b@example.com"),)
    assert parsed.body_text == "body text"
    assert ("header block: 1 continuation line without leading whitespace joined to the "
            "header above") in parsed.defects


def test_missing_final_boundary_keeps_body_and_attachment() -> None:
    raw = (
        b"From: a@example.com\r\nSubject: cut\r\nMIME-Version: 1.0\r\n"
        b"Content-Type: multipart/mixed; boundary=B\r\n\r\n"
        b"--B\r\nContent-Type: text/plain\r\n\r\nThe body.\r\n"
        b"--B\r\nContent-Type: application/pdf; name=a.pdf\r\n\r\n%PDF\r\n"
    )
    parsed = parse(raw)
    assert parsed.body_text == "The body."
    assert [a.filename for a in parsed.attachments] == ["a.pdf"]
    assert "multipart/mixed: CloseBoundaryNotFoundDefect" in parsed.defects


def test_missing_start_boundary_is_a_defect_not_a_crash() -> None:
    raw = (
        b"From: a@example.com\r\nSubject: bad\r\nMIME-Version: 1.0\r\n"
        b"Content-Type: multipart/alternative; boundary=NOPE\r\n\r\nJust text\r\n"
    )
    parsed = parse(raw)
    assert parsed.attachments == ()
    assert parsed.body_text == "Just text"
    assert "multipart/alternative: StartBoundaryNotFoundDefect" in parsed.defects


def test_chinese_mail_language_and_english_mail_language() -> None:
    msg = EmailMessage()
    msg["From"] = "张三 <zhang@example.com>"
    msg["Subject"] = "打印机无法连接"
    msg.set_content("您好，三楼的打印机无法连接网络，请帮忙处理。\n\nOn Fri wrote:\n> Hi there\n")
    parsed = parse(bytes(msg))
    assert parsed.language == "zh"
    assert parsed.from_ == Address("张三", "zhang@example.com")
    msg.replace_header("Subject", "Printer for 张三")
    msg.set_content("Hello, the printer on the third floor cannot connect. Please help.\n")
    assert parse(bytes(msg)).language == "en"


def test_detect_language() -> None:
    assert detect_language("请帮忙 reset my password") == "zh"
    assert detect_language("Password reset for 张三 please, it expired again today") == "en"
    assert detect_language("") == "en"
    assert detect_language("中") == "en"


def test_message_ids() -> None:
    assert message_ids("<a@b> <c@d>, <a@b>") == ("a@b", "c@d")
    assert message_ids("bare@example.com other@example.com") == (
        "bare@example.com", "other@example.com")
    assert message_ids("") == ()
    assert message_ids("<a@b> (comment with x@y)") == ("a@b",)


def test_delivery_status_notification_carries_a_report() -> None:
    raw = (
        b"From: MAILER-DAEMON@mx.example.com\r\nTo: support@example.com\r\n"
        b"Subject: Undelivered Mail Returned to Sender\r\nMIME-Version: 1.0\r\n"
        b"Content-Type: multipart/report; report-type=delivery-status; boundary=R\r\n\r\n"
        b"--R\r\nContent-Type: text/plain\r\n\r\nI could not deliver your mail.\r\n"
        b"--R\r\nContent-Type: message/delivery-status\r\n\r\n"
        b"Reporting-MTA: dns; mx.example.com\r\n\r\n"
        b"Final-Recipient: rfc822; gone@example.org\r\nAction: failed\r\nStatus: 5.1.1\r\n"
        b"\r\n--R\r\nContent-Type: text/rfc822-headers\r\n\r\n"
        b"Message-ID: <ours-7@ticketd.example>\r\nSubject: Your ticket\r\n\r\n--R--\r\n"
    )
    parsed = parse(raw)
    assert parsed.report is not None
    assert parsed.report.report_type == "delivery-status"
    assert parsed.report.original_message_id == "ours-7@ticketd.example"
    assert parsed.body_text == "I could not deliver your mail."


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b"", "empty message"),
        (b" \r\n\r\n\t", "empty message"),
        (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00", "not a mail: no header"),
        (b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + b"\x00" * 64,
         "not RFC 5322 mail: an Outlook .msg (OLE) file"),
        (b"just some text without any header\nsecond line\n", "not a mail: no header"),
        (b"X-Foo: bar\r\n\r\nbody", "not a mail: no RFC 5322 header (x-foo)"),
    ],
)
def test_what_is_not_a_mail_is_quarantined(raw: bytes, reason: str) -> None:
    with pytest.raises(Quarantine) as caught:
        parse(raw)
    assert caught.value.reason == reason


def test_malformed_encoded_word_that_breaks_mail_parser_is_read_and_reported() -> None:
    """mail-parser's full parse raises HeaderParseError on this From; the tree is built by
    the stdlib parser (as mail-parser builds it) and the header is read here."""
    raw = b"From: =?utf-8?b?\x00byg5LiJ?= <zhang@example.com>\r\nSubject: x\r\n\r\nbody\r\n"
    parsed = parse(raw)
    assert parsed.from_ is not None
    assert parsed.from_.email == "zhang@example.com"
    assert parsed.body_text == "body"
    assert any(d.startswith("from: invalid-display-name") for d in parsed.defects)


def test_deep_nesting_is_cut_off_not_fatal_or_quarantined() -> None:
    depth = 60
    head = b"From: a@example.com\r\nSubject: deep\r\nMIME-Version: 1.0\r\n"
    body = b""
    for level in range(depth):
        body += b"Content-Type: multipart/mixed; boundary=b%d\r\n\r\n--b%d\r\n" % (level, level)
    body += b"Content-Type: text/plain\r\n\r\ndeep text\r\n"
    for level in reversed(range(depth)):
        body += b"--b%d--\r\n" % level
    parsed = parse(head + body)
    assert "MIME nesting deeper than 40 levels cut off" in parsed.defects
    assert parsed.body_text == ""


def test_author_falls_back_to_sender_then_reply_to() -> None:
    from daemon.intake.parse import parse as parse_mail

    sender = parse_mail(b"Sender: Bob <bob@x.example>\r\nSubject: hi\r\n\r\nbody\r\n")
    assert sender.from_ is not None and sender.from_.email == "bob@x.example"
    assert "no usable From: author taken from Sender" in sender.defects
    reply = parse_mail(b"Reply-To: r@x.example\r\nSubject: hi\r\n\r\nbody\r\n")
    assert reply.from_ is not None and reply.from_.email == "r@x.example"
    nobody = parse_mail(b"Subject: hi\r\nMessage-ID: <n@x>\r\n\r\nbody\r\n")
    assert nobody.from_ is None
