"""Builders for the test suite's own messages (never copied from real mail)."""

from __future__ import annotations

from datetime import UTC, datetime
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid


def mail(
    subject: str = "打印机无法打印",
    body: str = "您好，三楼的打印机从今天早上开始无法打印。\n系统: 打印服务\n影响范围: 三楼\n",
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


def delayed_dsn(original_message_id: str, recipient: str = "slow@corp.example") -> bytes:
    """A Postfix-style RFC 3464 notice that delivery is delayed (4.x.x), not failed."""
    boundary = "dsn-boundary-2"
    return (
        "From: MAILER-DAEMON@mx.corp.example (Mail Delivery System)\r\n"
        "To: support@corp.example\r\n"
        "Subject: Delayed Mail (still being retried)\r\n"
        "Date: Fri, 27 Oct 2023 02:00:00 +0000\r\n"
        "Message-ID: <dsn.delayed.1@mx.corp.example>\r\n"
        "Auto-Submitted: auto-replied\r\n"
        "MIME-Version: 1.0\r\n"
        f'Content-Type: multipart/report; report-type=delivery-status; boundary="{boundary}"\r\n'
        "\r\n"
        f"--{boundary}\r\n"
        "Content-Type: text/plain\r\n\r\n"
        f"<{recipient}>: host mx.corp.example said: 451 4.4.1 try again later\r\n\r\n"
        f"--{boundary}\r\n"
        "Content-Type: message/delivery-status\r\n\r\n"
        "Reporting-MTA: dns; mx.corp.example\r\n\r\n"
        f"Final-Recipient: rfc822; {recipient}\r\n"
        "Action: delayed\r\n"
        "Status: 4.4.1\r\n"
        "Diagnostic-Code: smtp; 451 4.4.1 try again later\r\n\r\n"
        f"--{boundary}\r\n"
        "Content-Type: text/rfc822-headers\r\n\r\n"
        "From: support@corp.example\r\n"
        f"To: {recipient}\r\n"
        f"Message-ID: <{original_message_id}>\r\n"
        "Subject: [TS20231027000001] accepted\r\n\r\n"
        f"--{boundary}--\r\n"
    ).encode()


def without_header(raw: bytes, name: str) -> bytes:
    """``raw`` with every ``name:`` header line (and its folded continuations) removed."""
    head, sep, body = raw.partition(b"\r\n\r\n")
    kept: list[bytes] = []
    dropping = False
    for line in head.split(b"\r\n"):
        if line[:1] in (b" ", b"\t"):
            if not dropping:
                kept.append(line)
            continue
        dropping = line.split(b":", 1)[0].strip().lower() == name.lower().encode()
        if not dropping:
            kept.append(line)
    return b"\r\n".join(kept) + sep + body


def with_trace(raw: bytes, relay: str, delivered_to: str) -> bytes:
    """``raw`` as another folder holds it: a Received and Delivered-To header on top."""
    trace = (f"Delivered-To: {delivered_to}\r\n"
             f"Received: from {relay} (relay [192.0.2.7]) by mx.corp.example with ESMTPS;\r\n"
             f" Fri, 27 Oct 2023 01:00:05 +0000\r\n")
    return trace.encode() + raw


def gbk_mail(subject: str, body: str, name: str = "张三",
             address: str = "zhang.san@corp.example", message_id: str = "<gbk.1@client.example>",
             to: str = "support@corp.example",
             cc: tuple[tuple[str, str], ...] = ()) -> bytes:
    """A mail as a Chinese Windows client sends it: RFC 2047 GBK words and a GBK body.

    ``cc`` holds (display name, address) pairs; names are GBK-encoded words as well.
    """
    import base64

    def word(text: str) -> str:
        return f"=?GBK?B?{base64.b64encode(text.encode('gbk')).decode()}?="

    lines = [f"From: {word(name)} <{address}>", f"To: {to}"]
    if cc:
        lines.append("Cc: " + ", ".join(f"{word(n)} <{a}>" if n else a for n, a in cc))
    lines += [f"Subject: {word(subject)}", "Date: Fri, 27 Oct 2023 09:00:00 +0800",
              f"Message-ID: {message_id}", "MIME-Version: 1.0",
              'Content-Type: text/plain; charset="GBK"', "Content-Transfer-Encoding: base64"]
    payload = base64.encodebytes(body.encode("gbk")).decode().replace("\n", "\r\n")
    return ("\r\n".join(lines) + "\r\n\r\n" + payload).encode("ascii")


def mbox(*raws: bytes) -> bytes:
    """An mbox file (mboxrd quoting) holding ``raws`` in order, with LF line endings."""
    out = bytearray()
    for raw in raws:
        text = raw.replace(b"\r\n", b"\n").rstrip(b"\n")
        quoted = [b">" + line if line.lstrip(b">").startswith(b"From ") else line
                  for line in text.split(b"\n")]
        out += b"From MAILER-DAEMON Fri Oct 27 01:00:00 2023\n" + b"\n".join(quoted) + b"\n\n"
    return bytes(out)
