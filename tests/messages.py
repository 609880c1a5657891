"""Builders for the test suite's own messages (never copied from real mail)."""

from __future__ import annotations

from datetime import UTC, datetime
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid


def mail(
    subject: str = "打印机无法打印",
    body: str = "您好，三楼的打印机从今天早上开始无法打印。\n系统: 打印服务\n",
    sender: str = "张三 <zhang.san@corp.example>",
    to: str = "support@corp.example",
    cc: str | None = None,
    message_id: str | None = None,
    in_reply_to: str | None = None,
    references: str | None = None,
    headers: dict[str, str] | None = None,
    date: datetime | None = None,
    attachments: list[tuple[str, str, bytes]] | None = None,
) -> bytes:
    """A well-formed message as a mail client would send it; returns CRLF bytes."""
    msg = EmailMessage()
    msg["From"] = sender
    msg["To"] = to
    if cc:
        msg["Cc"] = cc
    msg["Subject"] = subject
    msg["Date"] = format_datetime(date or datetime(2023, 10, 27, 1, 0, tzinfo=UTC))
    msg["Message-ID"] = message_id or make_msgid(domain="client.example")
    if in_reply_to:
        msg["In-Reply-To"] = in_reply_to
    if references:
        msg["References"] = references
    for name, value in (headers or {}).items():
        msg[name] = value
    msg.set_content(body)
    for filename, ctype, payload in attachments or []:
        maintype, subtype = ctype.split("/")
        msg.add_attachment(payload, maintype=maintype, subtype=subtype, filename=filename)
    return msg.as_bytes().replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")


def auto_reply(subject: str = "Automatic reply: 打印机无法打印",
               sender: str = "zhang.san@corp.example") -> bytes:
    return mail(subject=subject, body="I am out of the office until Monday.", sender=sender,
                headers={"Auto-Submitted": "auto-replied", "X-Auto-Response-Suppress": "All"})


def dsn(original_message_id: str, recipient: str = "gone@corp.example") -> bytes:
    """A Postfix-style RFC 3464 delivery status notification."""
    boundary = "dsn-boundary-1"
    return (
        "From: MAILER-DAEMON@mx.corp.example (Mail Delivery System)\r\n"
        "To: support@corp.example\r\n"
        "Subject: Undelivered Mail Returned to Sender\r\n"
        "Date: Fri, 27 Oct 2023 02:00:00 +0000\r\n"
        "Message-ID: <dsn.1@mx.corp.example>\r\n"
        "Auto-Submitted: auto-replied\r\n"
        "MIME-Version: 1.0\r\n"
        f'Content-Type: multipart/report; report-type=delivery-status; boundary="{boundary}"\r\n'
        "\r\n"
        f"--{boundary}\r\n"
        "Content-Type: text/plain\r\n\r\n"
        f"<{recipient}>: host mx.corp.example said: 550 5.1.1 User unknown\r\n\r\n"
        f"--{boundary}\r\n"
        "Content-Type: message/delivery-status\r\n\r\n"
        "Reporting-MTA: dns; mx.corp.example\r\n\r\n"
        f"Final-Recipient: rfc822; {recipient}\r\n"
        "Action: failed\r\n"
        "Status: 5.1.1\r\n"
        "Diagnostic-Code: smtp; 550 5.1.1 User unknown\r\n\r\n"
        f"--{boundary}\r\n"
        "Content-Type: text/rfc822-headers\r\n\r\n"
        "From: support@corp.example\r\n"
        f"To: {recipient}\r\n"
        f"Message-ID: <{original_message_id}>\r\n"
        "Subject: [TS20231027000001] accepted\r\n\r\n"
        f"--{boundary}--\r\n"
    ).encode()


GARBAGE = b"this is not a mail at all, no header anywhere\r\njust two lines of text\r\n"
