"""parse_report on bounces, read receipts and complaints as real MTAs and providers send them.

Every message is parsed twice, with ``compat32`` and with ``policy.default``, because intake
code may hand either to ``parse_report``.
"""

from __future__ import annotations

import base64
import email
import email.policy
from email.header import Header
from email.message import EmailMessage, Message
from email.policy import Policy

import pytest

from daemon.intake.parsed import Report
from daemon.intake.reports import bounce_evidence, parse_report

POLICIES = [
    pytest.param(email.policy.compat32, id="compat32"),
    pytest.param(email.policy.default, id="default"),
]


def parse(raw: bytes, policy: Policy) -> Message:
    return email.message_from_bytes(raw, policy=policy)


POSTFIX_DSN = b"""\
Return-Path: <>
Received: by mx1.support.example (Postfix) id 4C1A82E0F1; Tue,  5 Mar 2024 10:15:02 +0100
Date: Tue,  5 Mar 2024 10:15:02 +0100 (CET)
From: MAILER-DAEMON@mx1.support.example (Mail Delivery System)
Subject: Undelivered Mail Returned to Sender
To: support@support.example
Auto-Submitted: auto-replied
MIME-Version: 1.0
Content-Type: multipart/report; report-type=delivery-status;
\tboundary="4C1A82E0F1.1709630102/mx1.support.example"
Message-Id: <20240305091502.4C1A82E0F1@mx1.support.example>

This is a MIME-encapsulated message.

--4C1A82E0F1.1709630102/mx1.support.example
Content-Description: Notification
Content-Type: text/plain; charset=us-ascii

This is the mail system at host mx1.support.example.

I'm sorry to have to inform you that your message could not
be delivered to one or more recipients. It's attached below.

                   The mail system

<li.wei@customer.example>: host mx.customer.example[203.0.113.7] said: 550 5.1.1
    <li.wei@customer.example>: Recipient address rejected: User unknown in
    virtual mailbox table (in reply to RCPT TO command)

--4C1A82E0F1.1709630102/mx1.support.example
Content-Description: Delivery report
Content-Type: message/delivery-status

Reporting-MTA: dns; mx1.support.example
X-Postfix-Queue-ID: 4C1A82E0F1
X-Postfix-Sender: rfc822; support@support.example
Arrival-Date: Tue,  5 Mar 2024 10:15:01 +0100 (CET)

Final-Recipient: rfc822; Li.Wei@customer.example
Original-Recipient: rfc822;li.wei@customer.example
Action: failed
Status: 5.1.1
Remote-MTA: dns; mx.customer.example
Diagnostic-Code: smtp; 550 5.1.1 <li.wei@customer.example>: Recipient address
    rejected: User unknown in virtual mailbox table

--4C1A82E0F1.1709630102/mx1.support.example
Content-Description: Undelivered Message
Content-Type: message/rfc822

Return-Path: <support@support.example>
Date: Tue, 5 Mar 2024 10:15:00 +0100
From: Support <support@support.example>
To: li.wei@customer.example
Subject: [TS20240305000017] We received your request
Message-ID: <ack.TS20240305000017.k3j2@support.example>
Auto-Submitted: auto-replied
Content-Type: text/plain; charset=utf-8

Thank you for contacting us.

--4C1A82E0F1.1709630102/mx1.support.example--
"""

POSTFIX_DELAYED = b"""\
From: Mail Delivery System <MAILER-DAEMON@mx1.support.example>
To: support@support.example
Subject: Delayed Mail (still being retried)
MIME-Version: 1.0
Content-Type: multipart/report; report-type=delivery-status; boundary="B0"

--B0
Content-Type: text/plain

This is the mail system at host mx1.support.example.
####################################################################
# THIS IS A WARNING ONLY.  YOU DO NOT NEED TO RESEND YOUR MESSAGE. #
####################################################################

<ops@slow.example>: connect to mx.slow.example[198.51.100.9]:25: Connection timed out

--B0
Content-Type: message/delivery-status

Reporting-MTA: dns; mx1.support.example

Final-Recipient: rfc822; ops@slow.example
Action: delayed
Status: 4.4.1
Diagnostic-Code: X-Postfix; connect to mx.slow.example[198.51.100.9]:25:
    Connection timed out

--B0
Content-Type: text/rfc822-headers

From: Support <support@support.example>
To: ops@slow.example
Subject: [TS20240305000018] Your ticket was updated
Message-ID: <note.TS20240305000018.aa1@support.example>

--B0--
"""

OFFICE365_NDR = b"""\
From: <postmaster@contoso.onmicrosoft.com>
To: <support@support.example>
Date: Wed, 6 Mar 2024 08:01:12 +0000
MIME-Version: 1.0
Content-Type: multipart/report; report-type=delivery-status;
\tboundary="a3b0c1d2-e3f4-4a5b-8c6d-7e8f9a0b1c2d"
X-MS-Exchange-Message-Is-Ndr:
Content-Language: en-US
Message-ID: <9e2b6b1a-3a6e-4d55-bb5e-0c1d2e3f4a5b@AM0PR01MB1234.eurprd01.prod.outlook.com>
In-Reply-To: <reply.TS20240306000003.x9@support.example>
References: <reply.TS20240306000003.x9@support.example>
Subject: Undeliverable: [TS20240306000003] Re: Printer on floor 3
Auto-Submitted: auto-replied

--a3b0c1d2-e3f4-4a5b-8c6d-7e8f9a0b1c2d
Content-Type: multipart/alternative; differences=Content-Type;
\tboundary="f1e2d3c4-b5a6-4978-8a9b-0c1d2e3f4a5b"

--f1e2d3c4-b5a6-4978-8a9b-0c1d2e3f4a5b
Content-Type: text/plain; charset="us-ascii"

Your message to j.doe@contoso.com couldn't be delivered.
j.doe wasn't found at contoso.com.

--f1e2d3c4-b5a6-4978-8a9b-0c1d2e3f4a5b
Content-Type: text/html; charset="us-ascii"

<html><body><p>Your message to j.doe@contoso.com couldn't be delivered.</p></body></html>

--f1e2d3c4-b5a6-4978-8a9b-0c1d2e3f4a5b--

--a3b0c1d2-e3f4-4a5b-8c6d-7e8f9a0b1c2d
Content-Type: message/delivery-status

Reporting-MTA: dns;AM0PR01MB1234.eurprd01.prod.outlook.com
Received-From-MTA: dns;mail.support.example
Arrival-Date: Wed, 6 Mar 2024 08:01:10 +0000

Final-Recipient: rfc822;j.doe@contoso.com
Action: failed
Status: 5.1.10
Diagnostic-Code: smtp;550 5.1.10 RESOLVER.ADR.RecipientNotFound; Recipient
 j.doe@contoso.com not found by SMTP address lookup

--a3b0c1d2-e3f4-4a5b-8c6d-7e8f9a0b1c2d
Content-Type: message/rfc822

From: Support <support@support.example>
To: <j.doe@contoso.com>
Subject: [TS20240306000003] Re: Printer on floor 3
Date: Wed, 6 Mar 2024 08:01:09 +0000
Message-ID: <reply.TS20240306000003.x9@support.example>
MIME-Version: 1.0
Content-Type: text/plain

--a3b0c1d2-e3f4-4a5b-8c6d-7e8f9a0b1c2d--
"""

GMAIL_FAILURE = b"""\
Return-Path: <>
From: Mail Delivery Subsystem <mailer-daemon@googlemail.com>
To: support@support.example
X-Failed-Recipients: nobody.here@gmail.com
Subject: Delivery Status Notification (Failure)
Message-ID: <65e6d0c4.050a0220.1a2b3.0000.GMR@mx.google.com>
Date: Tue, 05 Mar 2024 01:02:03 -0800 (PST)
Content-Type: text/plain; charset="UTF-8"

** Address not found **

Your message wasn't delivered to nobody.here@gmail.com because the address couldn't be
found, or is unable to receive mail.

The response from the remote server was:
550 5.1.1 The email account that you tried to reach does not exist.

----- Original message -----

DKIM-Signature: v=1; a=rsa-sha256; c=relaxed/relaxed; d=support.example;
        h=mime-version:date:message-id:subject:from:to;
From: Support <support@support.example>
To: nobody.here@gmail.com
Subject: [TS20240305000021] We received your request
Message-ID: <ack.TS20240305000021.q1@support.example>
Date: Tue, 05 Mar 2024 10:02:00 +0100

Thank you for contacting us.
"""

QMAIL_FAILURE = b"""\
Return-Path: <>
From: MAILER-DAEMON@mail.oldhost.example
To: support@support.example
Subject: failure notice
Date: 7 Mar 2024 12:00:00 -0000

Hi. This is the qmail-send program at mail.oldhost.example.
I'm afraid I wasn't able to deliver your message to the following addresses.
This is a permanent error; I've given up. Sorry it didn't work out.

<bob@oldhost.example>:
Sorry, no mailbox here by that name. (#5.1.1)

--- Below this line is a copy of the message.

Return-Path: <support@support.example>
Received: (qmail 4711 invoked from network); 7 Mar 2024 12:00:00 -0000
From: Support <support@support.example>
To: bob@oldhost.example
Subject: [TS20240307000002] Your ticket was closed
Message-ID: <closed.TS20240307000002.zz@support.example>

Your ticket was closed.
"""

CHINESE_BODY = """\
您好，

您发送的邮件未能成功投递。
收件人: zhang.san@kehu.example.cn
退信原因: 550 5.1.1 用户不存在 (User not found)

------------------ 原始邮件 ------------------
From: 客服 <support@support.example>
To: zhang.san@kehu.example.cn
Subject: [TS20240308000005] 我们已收到您的请求
Message-ID: <ack.TS20240308000005.cn@support.example>
"""

TUIXIN_WORD = Header("系统退信", "gb2312").encode().encode()  # =?gb2312?b?...?=
CHINESE_TUIXIN = (
    b"From: " + TUIXIN_WORD + b" <postmaster@mail.kehu.example.cn>\n"
    b"To: support@support.example\n"
    b"Subject: " + TUIXIN_WORD + b"\n"
    b"Date: Fri, 8 Mar 2024 09:00:00 +0800\n"
    b"MIME-Version: 1.0\n"
    b"Content-Type: text/plain; charset=GBK\n"
    b"Content-Transfer-Encoding: base64\n\n"
    + base64.encodebytes(CHINESE_BODY.encode("gbk"))
)

MDN = b"""\
From: Anna Berger <anna.berger@customer.example>
To: support@support.example
Subject: Gelesen: [TS20240305000017] We received your request
Date: Tue, 5 Mar 2024 11:00:00 +0100
Message-ID: <mdn-1@customer.example>
MIME-Version: 1.0
Content-Type: multipart/report; report-type=disposition-notification;
 boundary="mdn-boundary"

--mdn-boundary
Content-Type: text/plain; charset=UTF-8

Your message was displayed on Tue, 5 Mar 2024 11:00:00 +0100.

--mdn-boundary
Content-Type: message/disposition-notification

Reporting-UA: anna-laptop; Thunderbird 115.8.0
Final-Recipient: rfc822;anna.berger@customer.example
Original-Message-ID: <ack.TS20240305000017.k3j2@support.example>
Disposition: manual-action/MDN-sent-manually; displayed

--mdn-boundary--
"""

ARF_COMPLAINT = b"""\
From: Yahoo! Mail AntiSpam Feedback <feedback@arf.mail.yahoo.com>
To: abuse@support.example
Subject: FW: [TS20240309000001] We received your request
Date: Sat, 9 Mar 2024 03:43:34 -0800
Message-ID: <20240309114336.819.40318@returns.bulk.yahoo.com>
MIME-Version: 1.0
Content-Type: multipart/report; report-type="feedback-report";
 boundary="arf-boundary"

--arf-boundary
Content-Type: text/plain; charset="US-ASCII"

This is an email abuse report for an email message received from support.example.

--arf-boundary
Content-Type: message/feedback-report

Feedback-Type: abuse
User-Agent: Yahoo!-Mail-Feedback/2.0
Version: 1
Original-Mail-From: <support@support.example>
Original-Rcpt-To: complainer@yahoo.com
Received-Date: Sat, 9 Mar 2024 02:50:18 -0800
Reported-Domain: support.example

--arf-boundary
Content-Type: message/rfc822

From: Support <support@support.example>
To: complainer@yahoo.com
Subject: [TS20240309000001] We received your request
Message-ID: <ack.TS20240309000001.y1@support.example>

Thank you for contacting us.

--arf-boundary--
"""

HUMAN = b"""\
From: Li Wei <li.wei@customer.example>
To: support@support.example
Subject: Printer on floor 3 is jammed again
Date: Tue, 5 Mar 2024 09:00:00 +0100
Message-ID: <CAH1x=abc@mail.customer.example>
Auto-Submitted: no
MIME-Version: 1.0
Content-Type: text/plain; charset=utf-8

Hello, the printer is jammed. Message-ID: nothing to see here.
"""


@pytest.mark.parametrize("policy", POLICIES)
def test_postfix_dsn(policy: Policy) -> None:
    assert parse_report(parse(POSTFIX_DSN, policy)) == Report(
        report_type="delivery-status",
        original_message_id="ack.TS20240305000017.k3j2@support.example",
        recipients=("li.wei@customer.example",),
        named=("li.wei@customer.example",),  # from the Final-Recipient field: may hold it
        action="failed",
        status="5.1.1",
        diagnostic="550 5.1.1 <li.wei@customer.example>: Recipient address rejected: "
        "User unknown in virtual mailbox table",
    )


@pytest.mark.parametrize("policy", POLICIES)
def test_delayed_dsn_reads_rfc822_headers_part(policy: Policy) -> None:
    report = parse_report(parse(POSTFIX_DELAYED, policy))
    assert report == Report(
        report_type="delivery-status",
        original_message_id="note.TS20240305000018.aa1@support.example",
        recipients=("ops@slow.example",),
        named=("ops@slow.example",),  # from the Final-Recipient field: may hold it
        action="delayed",
        status="4.4.1",
        diagnostic="connect to mx.slow.example[198.51.100.9]:25: Connection timed out",
    )
    assert not report.permanent


@pytest.mark.parametrize("policy", POLICIES)
def test_office365_ndr(policy: Policy) -> None:
    report = parse_report(parse(OFFICE365_NDR, policy))
    assert report == Report(
        report_type="delivery-status",
        original_message_id="reply.TS20240306000003.x9@support.example",
        recipients=("j.doe@contoso.com",),
        named=("j.doe@contoso.com",),  # from the Final-Recipient field: may hold it
        action="failed",
        status="5.1.10",
        diagnostic="550 5.1.10 RESOLVER.ADR.RecipientNotFound; Recipient j.doe@contoso.com "
        "not found by SMTP address lookup",
    )
    assert report.permanent


@pytest.mark.parametrize("policy", POLICIES)
def test_office365_ndr_without_returned_message_uses_in_reply_to(policy: Policy) -> None:
    boundary = b"--a3b0c1d2-e3f4-4a5b-8c6d-7e8f9a0b1c2d"
    head = OFFICE365_NDR.split(boundary + b"\nContent-Type: message/rfc822")[0]
    report = parse_report(parse(head + boundary + b"--\n", policy))
    assert report is not None
    assert report.original_message_id == "reply.TS20240306000003.x9@support.example"


@pytest.mark.parametrize("policy", POLICIES)
def test_gmail_text_bounce(policy: Policy) -> None:
    assert parse_report(parse(GMAIL_FAILURE, policy)) == Report(
        report_type="delivery-status",
        original_message_id="ack.TS20240305000021.q1@support.example",
        recipients=("nobody.here@gmail.com",),
        action="failed",
        status="5.1.1",
        diagnostic="550 5.1.1 The email account that you tried to reach does not exist.",
    )


@pytest.mark.parametrize("policy", POLICIES)
def test_qmail_failure_notice(policy: Policy) -> None:
    assert parse_report(parse(QMAIL_FAILURE, policy)) == Report(
        report_type="delivery-status",
        original_message_id="closed.TS20240307000002.zz@support.example",
        recipients=("bob@oldhost.example",),
        action="failed",
        status="5.1.1",
        diagnostic="Sorry, no mailbox here by that name. (#5.1.1)",
    )


@pytest.mark.parametrize("policy", POLICIES)
def test_chinese_tuixin_from_postmaster(policy: Policy) -> None:
    assert parse_report(parse(CHINESE_TUIXIN, policy)) == Report(
        report_type="delivery-status",
        original_message_id="ack.TS20240308000005.cn@support.example",
        recipients=("zhang.san@kehu.example.cn",),
        action="failed",
        status="5.1.1",
        diagnostic="退信原因: 550 5.1.1 用户不存在 (User not found)",
    )


HKSCS_BODY = """\
您好，

您發送的郵件未能成功投遞。
收件人: zhang.san@kehu.example.cn
退信原因: 550 5.1.1 收件人信箱啱啱停用 (User not found)

------------------ 原始郵件 ------------------
From: support@support.example
To: zhang.san@kehu.example.cn
Message-ID: <ack.TS20240308000005.cn@support.example>
"""


@pytest.mark.parametrize("policy", POLICIES)
def test_big5_bounce_with_hkscs_characters_is_read_like_any_other_part(policy: Policy) -> None:
    """Labelled big5 but written in Big5-HKSCS (as Hong Kong providers send it): reports.py
    reads it with intake.charsets like every other part, not with a decoder of its own."""
    raw = CHINESE_TUIXIN.split(b"\n\n", 1)[0].replace(b"charset=GBK", b"charset=big5")
    raw += b"\n\n" + base64.encodebytes(HKSCS_BODY.encode("big5hkscs"))
    report = parse_report(parse(raw, policy))
    assert report is not None
    assert report.diagnostic == "退信原因: 550 5.1.1 收件人信箱啱啱停用 (User not found)"
    assert report.original_message_id == "ack.TS20240308000005.cn@support.example"


@pytest.mark.parametrize("policy", POLICIES)
def test_text_bounce_that_says_delayed(policy: Policy) -> None:
    raw = QMAIL_FAILURE.replace(b"Subject: failure notice", b"Subject: Warning: message delayed")
    raw = raw.replace(b"This is a permanent error; I've given up.", b"Delivery is delayed.")
    raw = raw.replace(b"(#5.1.1)", b"(#4.4.1)")
    report = parse_report(parse(raw, policy))
    assert report is not None
    assert (report.action, report.status) == ("delayed", "4.4.1")


@pytest.mark.parametrize("policy", POLICIES)
def test_disposition_notification(policy: Policy) -> None:
    assert parse_report(parse(MDN, policy)) == Report(
        report_type="disposition-notification",
        original_message_id="ack.TS20240305000017.k3j2@support.example",
        recipients=("anna.berger@customer.example",),
        diagnostic="manual-action/MDN-sent-manually; displayed",
    )


@pytest.mark.parametrize("policy", POLICIES)
def test_arf_complaint(policy: Policy) -> None:
    assert parse_report(parse(ARF_COMPLAINT, policy)) == Report(
        report_type="feedback-report",
        original_message_id="ack.TS20240309000001.y1@support.example",
        recipients=("complainer@yahoo.com",),
        diagnostic="abuse",
    )


@pytest.mark.parametrize("policy", POLICIES)
def test_bare_delivery_status_part(policy: Policy) -> None:
    raw = b"""\
Content-Type: message/delivery-status
MIME-Version: 1.0

Reporting-MTA: dns; mx.example.net

Final-Recipient: RFC822; <demo@example.net>
Action: failed
Status: 4.2.2
"""
    assert parse_report(parse(raw, policy)) == Report(
        report_type="delivery-status",
        original_message_id=None,
        recipients=("demo@example.net",),
        named=("demo@example.net",),  # from the Final-Recipient field: may hold it
        action="failed",
        status="4.2.2",
    )


@pytest.mark.parametrize("policy", POLICIES)
def test_delivery_status_sent_as_text_part(policy: Policy) -> None:
    raw = POSTFIX_DSN.replace(b"Content-Type: message/delivery-status",
                              b"Content-Type: text/plain; charset=us-ascii")
    report = parse_report(parse(raw, policy))
    assert report is not None
    assert (report.recipients, report.action, report.status) == (
        ("li.wei@customer.example",), "failed", "5.1.1")
    assert report.original_message_id == "ack.TS20240305000017.k3j2@support.example"


@pytest.mark.parametrize("policy", POLICIES)
def test_several_recipients_reports_the_failed_one(policy: Policy) -> None:
    raw = POSTFIX_DSN.replace(
        b"Final-Recipient: rfc822; Li.Wei@customer.example",
        b"Final-Recipient: rfc822; ok@customer.example\nAction: delayed\nStatus: 4.4.7\n\n"
        b"Final-Recipient: rfc822; Li.Wei@customer.example",
    )
    report = parse_report(parse(raw, policy))
    assert report is not None
    assert report.recipients == ("ok@customer.example", "li.wei@customer.example")
    assert (report.action, report.status) == ("failed", "5.1.1")


def test_report_built_with_email_message() -> None:
    message = EmailMessage()
    message["From"] = "Anna Berger <anna.berger@customer.example>"
    message["To"] = "support@support.example"
    message["Subject"] = "Read: hello"
    message.set_content("Displayed.")
    message.add_attachment(
        b"Final-Recipient: rfc822;anna.berger@customer.example\r\n"
        b"Original-Message-ID: <m1@support.example>\r\n"
        b"Disposition: automatic-action/MDN-sent-automatically; displayed\r\n",
        maintype="message",
        subtype="disposition-notification",
        disposition="inline",
    )
    message.set_type("multipart/report")
    message.set_param("report-type", "disposition-notification")
    # add_attachment base64-encodes the message/* part (RFC 2046 forbids it; it happens).
    expected = Report(
        report_type="disposition-notification",
        original_message_id="m1@support.example",
        recipients=("anna.berger@customer.example",),
        diagnostic="automatic-action/MDN-sent-automatically; displayed",
    )
    assert parse_report(message) == expected
    for policy in (email.policy.compat32, email.policy.default):
        assert parse_report(email.message_from_bytes(message.as_bytes(), policy=policy)) == expected


@pytest.mark.parametrize("policy", POLICIES)
def test_ordinary_mail_is_no_report(policy: Policy) -> None:
    assert parse_report(parse(HUMAN, policy)) is None


@pytest.mark.parametrize("policy", POLICIES)
def test_person_asking_about_a_bounce_is_no_report(policy: Policy) -> None:
    raw = HUMAN.replace(b"Subject: Printer on floor 3 is jammed again",
                        "Subject: 退信问题，请帮忙".encode())
    assert parse_report(parse(raw, policy)) is None


@pytest.mark.parametrize("policy", POLICIES)
def test_forwarded_bounce_is_the_person_s_mail(policy: Policy) -> None:
    raw = (
        b"From: Li Wei <li.wei@customer.example>\n"
        b"To: support@support.example\n"
        b"Subject: Fwd: Undelivered Mail Returned to Sender\n"
        b"MIME-Version: 1.0\n"
        b'Content-Type: multipart/mixed; boundary="fwd"\n\n'
        b"--fwd\nContent-Type: text/plain\n\nWhy did this bounce?\n\n"
        b"--fwd\nContent-Type: message/rfc822\n\n" + POSTFIX_DSN + b"\n--fwd--\n"
    )
    assert parse_report(parse(raw, policy)) is None


@pytest.mark.parametrize("policy", POLICIES)
@pytest.mark.parametrize(
    "raw",
    [
        b"Content-Type: multipart/report; report-type=delivery-status\n\nno boundary at all\n",
        b"Content-Type: multipart/report; report-type=delivery-status; boundary=b\n\n"
        b"--b\nContent-Type: message/delivery-status\n\n\x00\xff garbage: \xfe\n--b--\n",
        b"Content-Type: multipart/report; report-type=disposition-notification; boundary=b\n\n"
        b"--b\nContent-Type: message/disposition-notification\n\n--b--\n",
        b"From: MAILER-DAEMON@x.example\nContent-Type: text/plain; charset=bogus-42\n"
        b"Content-Transfer-Encoding: base64\n\n!!!not base64!!!\n",
        b"Message-ID: <<<>>>\nContent-Type: multipart/report; report-type=\"\"\n\n",
    ],
)
def test_malformed_reports_never_raise(raw: bytes, policy: Policy) -> None:
    report = parse_report(parse(raw, policy))
    assert report is None or isinstance(report, Report)


@pytest.mark.parametrize("policy", POLICIES)
def test_malformed_dsn_is_still_a_bounce(policy: Policy) -> None:
    raw = (b"From: MAILER-DAEMON@x.example\n"
           b"Content-Type: multipart/report; report-type=delivery-status; boundary=b\n\n"
           b"--b\nContent-Type: text/plain\n\n<gone@x.example>: 550 5.1.1 no such user\n"
           b"--b\nContent-Type: message/delivery-status\n\n--b--\n")
    assert parse_report(parse(raw, policy)) == Report(
        report_type="delivery-status",
        original_message_id=None,
        recipients=("gone@x.example",),
        action="failed",
        status="5.1.1",
        diagnostic="<gone@x.example>: 550 5.1.1 no such user",
    )


@pytest.mark.parametrize(
    ("sender", "name", "subject", "return_path", "expected_header"),
    [
        ("MAILER-DAEMON@mx.example", "", "anything", None, "From"),
        ("bounce@mx.example", "Mail Delivery Subsystem", "anything", None, "From"),
        ("postmaster@163.example", "", "系统退信", None, "Subject"),
        ("noreply@mx.example", "", "Undeliverable: hello", "<>", "Subject"),
    ],
)
def test_bounce_evidence_signs(sender: str, name: str, subject: str,
                               return_path: str | None, expected_header: str) -> None:
    evidence = bounce_evidence(sender=sender, sender_name=name, subject=subject,
                               return_path=return_path)
    assert evidence is not None
    assert evidence.header == expected_header


@pytest.mark.parametrize(
    ("sender", "subject", "return_path"),
    [
        ("postmaster@customer.example", "Our DNS changed", None),
        ("li.wei@customer.example", "Undeliverable: why?", None),
        ("li.wei@customer.example", "Returned mail question", "<li.wei@customer.example>"),
    ],
)
def test_a_single_weak_sign_is_no_bounce(sender: str, subject: str,
                                         return_path: str | None) -> None:
    assert bounce_evidence(sender=sender, sender_name="", subject=subject,
                           return_path=return_path) is None
