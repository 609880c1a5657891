"""Damaged header blocks: lost continuation whitespace and junk before the first header."""

from __future__ import annotations

import pytest

from daemon.intake.headerblock import repair_header_block
from daemon.intake.parse import parse
from daemon.intake.parsed import Address

TAIL = (b"To: support@corp.example\r\nFrom: Ann Lee <ann@client.example>\r\n"
        b"Subject: printer broken\r\nMessage-ID: <h1@client.example>\r\n\r\nThe body.\r\n")


def test_continuation_without_whitespace_keeps_the_headers_after_it() -> None:
    raw = (b"Received: from relay.client.example by mx.corp.example with ESMTP id 42;\r\n"
           b"Fri, 27 Oct 2023 01:00:00 +0000\r\n" + TAIL)
    parsed = parse(raw)
    assert parsed.from_ == Address("Ann Lee", "ann@client.example")
    assert parsed.subject == "printer broken"
    assert parsed.body_text == "The body."
    assert parsed.header("received") == (
        "from relay.client.example by mx.corp.example with ESMTP id 42; "
        "Fri, 27 Oct 2023 01:00:00 +0000")
    assert ("header block: 1 continuation line without leading whitespace joined to the "
            "header above") in parsed.defects


def test_a_long_recipient_list_refolded_without_whitespace() -> None:
    raw = (b"To: support@corp.example, bob@client.example,\r\ncarol@client.example\r\n"
           b"From: ann@client.example\r\nSubject: s\r\n\r\nbody\r\n")
    parsed = parse(raw)
    assert [a.email for a in parsed.to] == ["support@corp.example", "bob@client.example",
                                            "carol@client.example"]
    assert parsed.from_ == Address("", "ann@client.example")


@pytest.mark.parametrize(
    ("junk", "shown"),
    [
        (b"From ann@client.example Fri Oct 27 01:00:00 2023\r\n",
         "From ann@client.example Fri Oct 27 01:00:00 2023"),
        (b">From ann@client.example Fri Oct 27 01:00:00 2023\r\n",
         ">From ann@client.example Fri Oct 27 01:00:00 2023"),
        (b"\r\n", "blank"),
        (b"Forwarded message follows\r\n", "Forwarded message follows"),
    ],
)
def test_junk_line_before_the_first_header_is_skipped(junk: bytes, shown: str) -> None:
    parsed = parse(junk + TAIL)
    assert parsed.from_ == Address("Ann Lee", "ann@client.example")
    assert parsed.subject == "printer broken"
    assert parsed.message_id == "h1@client.example"
    assert parsed.body_text == "The body."
    assert f"header block: 1 junk line before the first header skipped ({shown})" in \
        parsed.defects


def test_a_body_without_the_blank_line_is_still_the_body() -> None:
    raw = b"From: ann@client.example\r\nSubject: s\r\nHello team,\r\nNote: it broke.\r\n"
    parsed = parse(raw)
    assert parsed.subject == "s"
    assert "Hello team," in parsed.body_text
    assert not any(d.startswith("header block") for d in parsed.defects)


def test_well_formed_mail_is_returned_unchanged() -> None:
    raw = b"From: a@client.example\r\nSubject: s\r\n folded\r\n\r\nbody\r\nno colon\r\n"
    assert repair_header_block(raw) == (raw, [])


def test_text_that_is_no_mail_stays_no_mail() -> None:
    raw = b"line one\r\nline two\r\nline three: with a colon\r\n"
    assert repair_header_block(raw) == (raw, [])


@pytest.mark.parametrize(("prefix", "repair"), [
    (b"\xef\xbb\xbf", "header block: byte order mark before the first header removed"),
    (b"  ", "header block: whitespace before the first header removed"),
])
def test_a_byte_order_mark_or_indentation_before_the_first_header(prefix: bytes,
                                                                  repair: str) -> None:
    raw = prefix + b"From: Ann Lee <ann@client.example>\r\nSubject: printer broken\r\n" \
        b"To: support@corp.example\r\n\r\nThe body.\r\n"
    parsed = parse(raw)
    assert parsed.from_ == Address("Ann Lee", "ann@client.example")
    assert parsed.subject == "printer broken"
    assert parsed.body_text == "The body."
    assert repair in parsed.defects
