"""Broken but readable senders: salvaged as a mail client reads them, with the repair noted."""

from __future__ import annotations

import pytest

from daemon.intake.parse import parse
from daemon.intake.parsed import Address
from daemon.intake.senders import salvage, salvage_system_sender


def mail(from_value: str, message_id: str = "<m1@mx.client.example>") -> bytes:
    return (
        f"From: {from_value}\r\nTo: support@corp.example\r\nSubject: help\r\n"
        f"Date: Fri, 27 Oct 2023 01:00:00 +0000\r\nMessage-ID: {message_id}\r\n\r\nbody\r\n"
    ).encode()


@pytest.mark.parametrize(
    ("value", "name", "email", "repair"),
    [
        ("Claudia.Shu@yahoo.com.", "", "claudia.shu@yahoo.com", "trailing dot"),
        ("Claudia Shu <Claudia.Shu@yahoo.com.>", "Claudia Shu", "claudia.shu@yahoo.com",
         "trailing dot"),
        ("power quadrant system@example.com", "power quadrant", "system@example.com",
         "display name without quotes or angle brackets"),
        ("Test test@example.com", "Test", "test@example.com",
         "display name without quotes or angle brackets"),
        ('"Some Name"@example.com>', "Some Name", '"some name"@example.com',
         "quoted local part, stray bracket"),
        ("<ann@example.com>>", "", "ann@example.com", "stray bracket"),
        ("Ann Lee <ann@example.com", "Ann Lee", "ann@example.com", "unclosed angle bracket"),
        ('"Lee, Ann" ann@example.com', "Lee, Ann", "ann@example.com",
         "display name without quotes or angle brackets"),
        ("=?utf-8?Q?J=C3=B6rg?= joerg@example.com", "Jörg", "joerg@example.com",
         "display name without quotes or angle brackets"),
        ('"张三"zhang@example.com', "张三", "zhang@example.com",
         "display name without quotes or angle brackets"),
        ("Ann <mailto:ann@example.com>", "Ann", "ann@example.com", "mailto: prefix"),
        ('"Ann" <ann@example..com>', "Ann", "ann@example.com", "double dot in the domain"),
        ("Ann [ann@example.com]", "Ann", "ann@example.com",
         "stray brackets or quotes, display name without quotes or angle brackets"),
    ],
)
def test_broken_from_is_salvaged_with_the_repair_in_defects(
    value: str, name: str, email: str, repair: str
) -> None:
    parsed = parse(mail(value))
    assert parsed.from_ == Address(name, email)
    assert any(d.startswith(f"from: salvaged {email} from ") and d.endswith(f"({repair})")
               for d in parsed.defects), parsed.defects


def test_bare_mailer_daemon_is_qualified_with_the_mails_own_domain() -> None:
    parsed = parse(mail("MAILER-DAEMON (Mail Delivery System)"))
    assert parsed.from_ == Address("Mail Delivery System", "mailer-daemon@mx.client.example")
    assert ("from: salvaged mailer-daemon@mx.client.example from 'MAILER-DAEMON (Mail "
            "Delivery System)' (bare mail-system name, domain mx.client.example taken from the "
            "mail)") in parsed.defects


def test_mailer_daemon_in_angle_brackets_without_a_domain() -> None:
    parsed = parse(mail("Mail Delivery Subsystem <MAILER-DAEMON>"))
    assert parsed.from_ == Address("Mail Delivery Subsystem", "mailer-daemon@mx.client.example")


def test_bare_mailer_daemon_without_any_domain_is_still_a_mail_system() -> None:
    raw = b"From: MAILER-DAEMON\r\nTo: support@corp.example\r\nSubject: failure notice\r\n\r\nx\r\n"
    assert parse(raw).from_ == Address("", "mailer-daemon")


def test_bare_mailer_daemon_domain_from_received_without_message_id() -> None:
    raw = (b"Received: from a.example by mx.isp.example with ESMTP id 1;\r\n"
           b" Fri, 27 Oct 2023 01:00:00 +0000\r\nFrom: MAILER-DAEMON\r\nSubject: x\r\n\r\nb\r\n")
    assert parse(raw).from_ == Address("", "mailer-daemon@mx.isp.example")


@pytest.mark.parametrize("value", ["nobody", "foo@bar@baz.example", "@example.com", "x@.com",
                                   "John Smith", "postmaster"])
def test_no_plausible_address_stays_unread(value: str) -> None:
    raw = f"From: {value}\r\nTo: support@corp.example\r\nSubject: s\r\n\r\nbody\r\n".encode()
    assert parse(raw).from_ is None


def test_single_quotes_around_an_address_are_dropped() -> None:
    assert parse(mail("'ann@example.com'")).from_ == Address("", "ann@example.com")


def test_good_addresses_are_not_touched() -> None:
    assert salvage("not an address at all") is None
    assert salvage_system_sender("mailer-daemon@x.example", "x.example") is None
    parsed = parse(mail("Ann <ann@example.com> (work)"))
    assert parsed.from_ == Address("Ann", "ann@example.com")
    assert not any("salvaged" in d for d in parsed.defects)


def test_salvage_also_reads_broken_recipients() -> None:
    raw = (b"From: a@client.example\r\nTo: Support support@corp.example., b@client.example\r\n"
           b"Subject: s\r\n\r\nbody\r\n")
    assert parse(raw).to == (Address("", "b@client.example"),
                             Address("Support", "support@corp.example"))


def test_salvage_is_linear_on_hostile_input() -> None:
    hostile = '"' * 20_000 + "@" * 20_000 + "<" * 20_000
    assert salvage(hostile) is None
