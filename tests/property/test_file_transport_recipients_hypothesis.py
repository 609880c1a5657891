"""The file transport names a copy sent to only some of a mail's recipients after them; which
those are it reads from the mail's To and Cc. Read with two regular expressions now, they must
be what the standard library's header parser reads: the same addresses for every mix of names
(ASCII, Chinese, quoted), long folded lists, several To and Cc fields, UTF-8 addresses and
other fields around them."""

from __future__ import annotations

from email import policy
from email.header import Header
from email.parser import HeaderParser
from email.utils import formataddr, getaddresses, quote

from hypothesis import given, settings
from hypothesis import strategies as st

from daemon.replies.transports import _header_recipients


def by_the_parser(raw: bytes) -> set[str]:
    """The reference: what the transport read before, with the standard library's parser."""
    head = raw.split(b"\r\n\r\n", 1)[0].decode("utf-8", "surrogateescape")
    headers = HeaderParser(policy=policy.compat32).parsestr(head, headersonly=True)
    fields = [str(v) for name in ("to", "cc") for v in headers.get_all(name, [])]
    return {address.strip().lower() for _, address in getaddresses(fields) if address}


local = st.text("abcdefghijklmnopqrstuvwxyz0123456789._-+", min_size=1, max_size=12).filter(
    lambda s: s[0] not in ".-" and s[-1] != "." and ".." not in s)
name = st.one_of(st.just(""), st.text("张三李四王五 abcXYZ,\"().", max_size=20))
ASCII = ["corp.example", "client.example", "x.co"]


def field(data: st.DataObject, domains: list[str], utf8: bool, least: int) -> str:
    """One To or Cc value as a mail writer folds it: after a comma, when the line is long."""
    people = data.draw(st.lists(st.tuples(name, local, st.sampled_from(domains)),
                           min_size=least, max_size=12))
    parts = [formataddr((n, f"{u}@{d}"), charset="utf-8") if not utf8 else  # RFC 2047
             (f'"{quote(n)}" <{u}@{d}>' if n else f"{u}@{d}")          # RFC 6532
             for n, u, d in people]
    out, line = "", 0
    for n, part in enumerate(parts):
        if n:
            out += ","
            line += 1
            if line + len(part) > 70 or data.draw(st.booleans()):
                out += "\r\n "
                line = 1
            else:
                out += " "
                line += 1
        out += part
        line += len(part)
    return out


@settings(max_examples=300, deadline=None)
@given(utf8=st.booleans(), data=st.data(),
       subject=st.text(st.characters(blacklist_categories=("Cc", "Cs")), max_size=80))
def test_the_recipients_read_are_what_the_parser_reads(utf8: bool, data: st.DataObject,
                                                       subject: str) -> None:
    # an internationalised address only in a UTF-8 header (RFC 6532), as compose writes it
    domains = [*ASCII, "例子.example"] if utf8 else ASCII
    head = ["From: =?utf-8?b?5oqA5pyv5pSv5oyB?= <support@corp.example>",
            f"To: {field(data, domains, utf8, 1)}",
            f"Subject: {Header(subject, 'utf-8').encode()}",
            "X-To-Be-Ignored: to: nobody@else.example"]
    for _ in range(data.draw(st.integers(0, 2))):
        head.insert(data.draw(st.integers(1, len(head))),
                    f"{data.draw(st.sampled_from(['Cc', 'CC', 'To']))}: "
                    f"{field(data, domains, utf8, 1)}")
    raw = "\r\n".join(head).encode() + b"\r\n\r\nTo: body@else.example\r\n"
    assert _header_recipients(raw) == by_the_parser(raw)
    assert "body@else.example" not in _header_recipients(raw)


def test_several_fields_folded_lines_and_a_mail_without_a_body() -> None:
    raw = (b"From: a@corp.example\r\nTo: one@x.example,\r\n two@x.example\r\n"
           b"Subject: to: three@x.example\r\nCC:\tfour@x.example\r\nto: five@x.example")
    assert _header_recipients(raw) == by_the_parser(raw) == {
        "one@x.example", "two@x.example", "four@x.example", "five@x.example"}
