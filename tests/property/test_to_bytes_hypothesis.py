"""``to_bytes`` writes exactly the bytes of the library's ``as_bytes(policy=SMTP)``.

compose.py writes each body in one piece and makes each header class once (the library
writes a body line by line and makes a header class per lookup); the bytes must not change:
any text (line breaks of every kind, Chinese, long lines), names, file names and payloads.
"""

from __future__ import annotations

from email import policy
from email.message import EmailMessage

from hypothesis import given, settings
from hypothesis import strategies as st

from daemon.intake.parsed import Address
from daemon.replies.compose import OutgoingAttachment, to_bytes
from daemon.replies.templates import RenderedMail
from tests.unit.test_compose import build

TEXT = st.lists(st.sampled_from([*"ab 工单\r\n\t=.-", "\r\n", "é", "😀", "x" * 90]),
                max_size=200).map("".join)
NAME = st.text(alphabet=st.sampled_from([*"ab 张伟.-_\"'", "é"]), max_size=30)


@settings(max_examples=150, deadline=None)
@given(subject=TEXT, text=TEXT, html=st.none() | TEXT, name=NAME,
       files=st.lists(st.tuples(NAME, st.sampled_from(["image/png", "text/plain",
                                                      "application/pdf"]),
                                st.binary(max_size=3000)), max_size=3),
       utf8=st.booleans())
def test_to_bytes_is_the_librarys_as_bytes(subject: str, text: str, html: str | None,
                                           name: str, files: list[tuple[str, str, bytes]],
                                           utf8: bool) -> None:
    rendered = RenderedMail(subject=subject or "s", text=text, html=html)
    to = Address(name, "dänglüe@example.com" if utf8 else "zhang.wei@example.com")
    msg = build(rendered, to=[to], attachments=[OutgoingAttachment(f or "f", t, p)
                                                for f, t, p in files])
    library = policy.SMTPUTF8 if utf8 else policy.SMTP
    assert to_bytes(msg) == msg.as_bytes(policy=library)


def test_a_large_attachment_is_written_as_the_library_writes_it() -> None:
    payload = bytes(range(256)) * 4000 + b"\r\r\n\n"
    msg = build(RenderedMail("大附件", "见附件。\n", None),
                attachments=[OutgoingAttachment("日志.txt", "text/plain", payload)])
    assert to_bytes(msg) == msg.as_bytes(policy=policy.SMTP)


@given(body=st.lists(st.sampled_from(["a", "\r", "\n", "\r\n", " "]), max_size=60)
       .map("".join))
def test_any_line_breaks_in_a_body_are_written_as_the_library_writes_them(body: str) -> None:
    msg = EmailMessage(policy=policy.default)
    msg["Subject"] = "raw body"
    msg.set_payload(body)  # as it is: no encoding normalises the line breaks
    assert to_bytes(msg) == msg.as_bytes(policy=policy.SMTP)
    container = EmailMessage(policy=policy.default)
    container.set_content("x")
    container.make_mixed()
    container.preamble, container.epilogue = body, body
    assert to_bytes(container) == container.as_bytes(policy=policy.SMTP)
