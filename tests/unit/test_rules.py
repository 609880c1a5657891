"""The no-ticket rules on mail as auto-responders, MTAs, list servers and people send it.

ParsedMail is built directly here (headers as the parser would give them), so these tests do
not depend on the MIME parser.
"""

from __future__ import annotations

import email
import email.policy

import pytest

from daemon.intake.parsed import Address, ParsedMail, Report
from daemon.intake.reports import parse_report
from daemon.intake.rules import (
    KINDS,
    RULES,
    RuleContext,
    RuleHit,
    first_match,
    is_auto_sender,
)

CONTEXT = RuleContext(
    own_addresses=frozenset({"Support@Support.Example", "help@support.example"}),
    loop_header="X-Ticketd-Loop",
    loop_value="ticketd@support.example",
)

CUSTOMER = "Li Wei <li.wei@customer.example>"


def make_mail(
    headers: dict[str, str | tuple[str, ...]] | None = None,
    *,
    sender: str = CUSTOMER,
    subject: str = "Printer on floor 3 is jammed again",
    report: Report | None = None,
    content_type: str = "text/plain",
    in_reply_to: tuple[str, ...] = (),
) -> ParsedMail:
    """A ParsedMail as the parser would produce it: header names lower-cased, values decoded."""
    name, address = email.utils.parseaddr(sender)
    values: dict[str, tuple[str, ...]] = {
        "from": (sender,),
        "to": ("support@support.example",),
        "subject": (subject,),
        "message-id": ("<m1@customer.example>",),
    }
    for key, value in (headers or {}).items():
        values[key.lower()] = (value,) if isinstance(value, str) else value
    return ParsedMail(
        message_id="m1@customer.example",
        in_reply_to=in_reply_to,
        references=in_reply_to,
        from_=Address(name, address.lower()) if address else None,
        to=(Address("", "support@support.example"),),
        cc=(),
        reply_to=(),
        subject=subject,
        date=None,
        headers=values,
        content_type=content_type,
        body_text="Hello",
        body_html=None,
        new_text="Hello",
        quoted_text="",
        attachments=(),
        charsets=(),
        language="en",
        raw_sha256="0" * 64,
        raw_size=100,
        report=report,
    )


def hit_of(mail: ParsedMail) -> tuple[str, str, str | None] | None:
    hit = first_match(mail, CONTEXT)
    return (hit.rule, hit.kind, hit.header) if hit else None


# --- people ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "mail",
    [
        make_mail(),
        make_mail({"Auto-Submitted": "no"}),
        make_mail({"Auto-Submitted": "No; reason=manual"}),
        make_mail({"X-Auto-Response-Suppress": "DR, RN, NRN"}),  # Outlook asking for no receipts
        make_mail({"X-Autoreply": "no"}),
        make_mail({"List-Unsubscribe": "<mailto:unsub@crm.example>"}),  # one-to-one CRM mail
        make_mail({"X-Loop": "li.wei@customer.example"}),  # the customer's procmail forward
        make_mail({"Return-Path": "<li.wei@customer.example>"}),
        make_mail({"Precedence": "normal"}),
        make_mail(subject="Out of office next week, please reassign my ticket"),
        make_mail(subject="Auto: my car insurance claim"),  # "Auto:" only counts on a reply
        make_mail(subject="Re: Automatic reply settings do not work"),
        make_mail(subject="退信问题，请帮忙"),  # asking about bounces is not a bounce
        make_mail(subject="Our MX records changed", sender="postmaster@customer.example"),
        make_mail(sender="Postmaster <postmaster@customer.example>"),
    ],
)
def test_human_mail_matches_no_rule(mail: ParsedMail) -> None:
    assert first_match(mail, CONTEXT) is None


def test_human_mail_may_get_an_automatic_answer() -> None:
    assert not is_auto_sender(make_mail({"Auto-Submitted": "no"}), CONTEXT)


# --- loops -------------------------------------------------------------------------------


def test_our_loop_header() -> None:
    hit = first_match(make_mail({"X-Ticketd-Loop": "ticketd@support.example"}), CONTEXT)
    assert hit == RuleHit(
        rule="loop_header",
        kind="loop",
        reason="X-Ticketd-Loop: ticketd@support.example (ours)",
        header="X-Ticketd-Loop",
    )


def test_loop_header_of_another_instance() -> None:
    hit = first_match(make_mail({"X-Ticketd-Loop": "ticketd@other.example"}), CONTEXT)
    assert hit is not None
    assert (hit.rule, hit.kind, hit.reason) == (
        "loop_header", "loop", "X-Ticketd-Loop: ticketd@other.example (another ticketd)")


def test_mail_from_our_own_address() -> None:
    hit = first_match(make_mail(sender="Support <SUPPORT@support.example>"), CONTEXT)
    assert hit == RuleHit(rule="own_address", kind="loop",
                          reason="sent from our own address support@support.example",
                          header="From")


def test_x_loop_naming_us() -> None:
    assert hit_of(make_mail({"X-Loop": "help@support.example"})) == ("x_loop", "loop", "X-Loop")


def test_foreign_x_loop_opens_a_ticket_but_gets_no_automatic_answer() -> None:
    mail = make_mail({"X-Loop": "robot@elsewhere.example"})
    assert first_match(mail, CONTEXT) is None
    assert is_auto_sender(mail, CONTEXT)


# --- bounces and reports -----------------------------------------------------------------

POSTFIX_DSN = b"""\
Return-Path: <>
From: MAILER-DAEMON@mx1.support.example (Mail Delivery System)
To: support@support.example
Subject: Undelivered Mail Returned to Sender
Auto-Submitted: auto-replied
MIME-Version: 1.0
Content-Type: multipart/report; report-type=delivery-status; boundary="B"

--B
Content-Type: text/plain

<li.wei@customer.example>: host mx.customer.example said: 550 5.1.1 User unknown

--B
Content-Type: message/delivery-status

Reporting-MTA: dns; mx1.support.example

Final-Recipient: rfc822; li.wei@customer.example
Action: failed
Status: 5.1.1

--B
Content-Type: message/rfc822

From: Support <support@support.example>
Message-ID: <ack.1@support.example>
Subject: We received your request

--B--
"""


def test_dsn_is_a_bounce() -> None:
    report = parse_report(email.message_from_bytes(POSTFIX_DSN, policy=email.policy.default))
    mail = make_mail(
        {"Return-Path": "<>", "Auto-Submitted": "auto-replied"},
        sender="MAILER-DAEMON@mx1.support.example (Mail Delivery System)",
        subject="Undelivered Mail Returned to Sender",
        content_type="multipart/report",
        report=report,
    )
    assert first_match(mail, CONTEXT) == RuleHit(
        rule="delivery_report",
        kind="bounce",
        reason="delivery status report (failed, 5.1.1, for li.wei@customer.example)",
        header="Content-Type",
    )


def test_text_bounce_report_names_the_header_that_gave_it_away() -> None:
    report = Report(report_type="delivery-status", original_message_id="ack.2@support.example",
                    recipients=("bob@oldhost.example",), action="failed", status="5.1.1")
    mail = make_mail({"Return-Path": "<>"}, sender="MAILER-DAEMON@mail.oldhost.example",
                     subject="failure notice", report=report)
    assert hit_of(mail) == ("delivery_report", "bounce", "From")


@pytest.mark.parametrize(
    ("headers", "sender", "subject", "header"),
    [
        ({}, "Mail Delivery Subsystem <mailer-daemon@googlemail.com>",
         "Delivery Status Notification (Failure)", "From"),
        ({"X-Failed-Recipients": "nobody@gmail.com"}, "bounces@relay.example", "Hello",
         "X-Failed-Recipients"),
        ({"Return-Path": "<>"}, "MicrosoftExchange329e71ec88ae4615bbc36ab6ce41109e@contoso.com",
         "Undeliverable: Re: Printer", "Subject"),
        ({}, "系统退信 <postmaster@163.example>", "系统退信", "Subject"),
    ],
)
def test_bounce_without_report_part(headers: dict[str, str | tuple[str, ...]], sender: str,
                                    subject: str, header: str) -> None:
    assert hit_of(make_mail(headers, sender=sender, subject=subject)) == (
        "bounce_signs", "bounce", header)


def test_read_receipt_is_a_report() -> None:
    report = Report(report_type="disposition-notification",
                    original_message_id="ack.1@support.example")
    hit = first_match(make_mail(content_type="multipart/report", report=report), CONTEXT)
    assert hit == RuleHit(rule="other_report", kind="report",
                          reason="disposition-notification report", header="Content-Type")


def test_abuse_complaint_is_a_report_even_with_list_headers() -> None:
    report = Report(report_type="feedback-report", original_message_id="ack.3@support.example")
    mail = make_mail({"Precedence": "list", "X-Loop": "scomp"}, sender="scomp@aol.example",
                     subject="Email Feedback Report for IP 192.0.2.34",
                     content_type="multipart/report", report=report)
    assert hit_of(mail) == ("other_report", "report", "Content-Type")


# --- auto-replies ------------------------------------------------------------------------


def test_exchange_out_of_office() -> None:
    mail = make_mail(
        {"X-Auto-Response-Suppress": "All", "X-MS-Exchange-Inbox-Rules-Loop": "li.wei@c.example"},
        subject="Out of Office: Re: [TS20240305000017] We received your request",
        in_reply_to=("ack.1@support.example",),
    )
    assert first_match(mail, CONTEXT) == RuleHit(
        rule="exchange_suppress",
        kind="auto-reply",
        reason="X-Auto-Response-Suppress: All",
        header="X-Auto-Response-Suppress",
    )


def test_modern_exchange_automatic_reply_hits_auto_submitted_first() -> None:
    mail = make_mail(
        {"Auto-Submitted": "auto-generated", "X-Auto-Response-Suppress": "All"},
        subject="Automatic reply: [TS20240305000017] We received your request",
    )
    assert hit_of(mail) == ("auto_submitted", "auto-reply", "Auto-Submitted")


@pytest.mark.parametrize("value", ["auto-replied", "Auto-Generated",
                                   "auto-replied; owner-email=li.wei@customer.example"])
def test_auto_submitted(value: str) -> None:
    hit = first_match(make_mail({"Auto-Submitted": value}), CONTEXT)
    assert hit == RuleHit(rule="auto_submitted", kind="auto-reply",
                          reason=f"Auto-Submitted: {value}", header="Auto-Submitted")


@pytest.mark.parametrize("name", ["X-Autoreply", "X-Autorespond", "X-Autoresponse"])
def test_autoreply_headers(name: str) -> None:
    assert hit_of(make_mail({name: "yes"})) == ("autoreply_headers", "auto-reply", name)


@pytest.mark.parametrize("value", ["OOF, AutoReply", "AutoReply", "all"])
def test_exchange_suppress_values(value: str) -> None:
    assert hit_of(make_mail({"X-Auto-Response-Suppress": value})) == (
        "exchange_suppress", "auto-reply", "X-Auto-Response-Suppress")


@pytest.mark.parametrize("value", ["bulk", "Junk", "auto_reply"])
def test_precedence_bulk(value: str) -> None:
    hit = first_match(make_mail({"Precedence": value}), CONTEXT)
    assert hit == RuleHit(rule="precedence_bulk", kind="auto-reply",
                          reason=f"Precedence: {value}", header="Precedence")


@pytest.mark.parametrize(
    ("subject", "in_reply_to"),
    [
        ("Automatic reply: [TS20240305000017] We received your request", ()),
        ("自动回复：[TS20240305000017] 我们已收到您的请求", ()),
        ("自动答复: 打印机", ()),
        ("Abwesenheitsnotiz: Drucker", ()),
        ("Out of Office AutoReply: Printer", ()),
        ("AUTO: Li Wei is out of the office (returning 12/03/2024)", ("ack.1@support.example",)),
    ],
)
def test_auto_reply_subjects(subject: str, in_reply_to: tuple[str, ...]) -> None:
    assert hit_of(make_mail(subject=subject, in_reply_to=in_reply_to)) == (
        "auto_reply_subject", "auto-reply", "Subject")


def test_null_sender_alone() -> None:
    hit = first_match(make_mail({"Return-Path": "<>"}), CONTEXT)
    assert hit == RuleHit(
        rule="null_sender",
        kind="auto-reply",
        reason="null sender (Return-Path: <>): a bounce or an automatic reply",
        header="Return-Path",
    )


# --- lists -------------------------------------------------------------------------------


def test_list_id() -> None:
    hit = first_match(make_mail({"List-Id": "Printer users <printers.lists.example>"}), CONTEXT)
    assert hit == RuleHit(rule="mailing_list", kind="list",
                          reason="mailing list mail (List-Id: Printer users "
                                 "<printers.lists.example>)",
                          header="List-Id")


def test_our_own_alias_list_is_not_a_list() -> None:
    """A Google Group behind support@ delivers real customer mail with its List-Id."""
    mail = make_mail({"List-Id": "<support.support.example>",
                      "List-Unsubscribe": "<mailto:unsub@support.example>"})
    assert first_match(mail, CONTEXT) is None


def test_list_unsubscribe_with_precedence_list() -> None:
    mail = make_mail({"List-Unsubscribe": "<mailto:leave@lists.example>", "Precedence": "list"})
    assert hit_of(mail) == ("mailing_list", "list", "List-Unsubscribe")


def test_precedence_list_alone() -> None:
    assert hit_of(make_mail({"Precedence": "list"})) == ("precedence_list", "list", "Precedence")


# --- is_auto_sender ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "sender",
    [
        "noreply@shop.example",
        "No-Reply <no-reply@shop.example>",
        "donotreply@bank.example",
        "owner-printers@lists.example",
        "printers-request@lists.example",
        "postmaster@customer.example",
    ],
)
def test_senders_that_never_get_automatic_mail(sender: str) -> None:
    mail = make_mail(sender=sender)
    assert first_match(mail, CONTEXT) is None  # a web form may still open a ticket
    assert is_auto_sender(mail, CONTEXT)


def test_is_auto_sender_without_context_uses_the_header_rules() -> None:
    assert is_auto_sender(make_mail({"Precedence": "bulk"}))
    assert not is_auto_sender(make_mail({"X-Ticketd-Loop": "x"}))  # needs the context
    assert is_auto_sender(make_mail({"X-Ticketd-Loop": "x"}), CONTEXT)


def test_mail_without_sender_gets_no_automatic_mail() -> None:
    assert is_auto_sender(make_mail(sender=""), CONTEXT)


# --- the rule table ----------------------------------------------------------------------


def test_rule_table_is_well_formed() -> None:
    names = [rule.name for rule in RULES]
    assert len(names) == len(set(names))
    for rule in RULES:
        assert rule.kind in KINDS
        assert rule.description, f"{rule.name} needs a one-line docstring"
        assert "\n" not in (rule.check.__doc__ or "").strip()


def test_loop_rules_come_first() -> None:
    assert [rule.name for rule in RULES[:3]] == ["loop_header", "own_address", "x_loop"]
    assert RULES[-1].name == "null_sender"


def test_context_lower_cases_our_addresses() -> None:
    assert CONTEXT.own_addresses == frozenset({"support@support.example",
                                               "help@support.example"})


def test_context_refuses_a_header_name_with_a_colon() -> None:
    with pytest.raises(ValueError, match="loop_header"):
        RuleContext(own_addresses=frozenset(), loop_header="X-Loop: 1", loop_value="x")


def test_rule_hit_refuses_an_unknown_kind() -> None:
    with pytest.raises(ValueError, match="kind must be one of"):
        RuleHit(rule="x", kind="spam", reason="x", header=None)
