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
from daemon.replies import compose as compose_module
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


def _library_text(part: EmailMessage, text: str, subtype: str) -> None:
    """How compose set a text body before it stored the headers as written: the library's
    ``set_content`` (the same choice of transfer encoding as compose._set_text)."""
    text = text.replace("\r\n", "\n")
    cte: str | None = None
    if not text.isascii():
        wide = sum(1 for c in text if ord(c) > 127)
        cte = "base64" if wide * 8 > len(text) else "quoted-printable"
    if cte == "base64":
        text = text.replace("\n", "\r\n")
    part.set_content(text, subtype=subtype, charset="utf-8", cte=cte)


@settings(max_examples=200, deadline=None)
@given(subject=TEXT, text=TEXT, html=st.none() | TEXT, name=NAME, utf8=st.booleans())
def test_compose_writes_the_bytes_set_content_and_make_alternative_wrote(
        subject: str, text: str, html: str | None, name: str, utf8: bool) -> None:
    """compose builds its text parts and the multipart/alternative around them with the
    headers stored as written (each library step parsed Content-Type again, most of the cost
    of composing a mail); the bytes must be those of the library's own steps."""
    to = Address(name, "dänglüe@example.com" if utf8 else "zhang.wei@example.com")
    msg = build(RenderedMail(subject=subject or "s", text=text, html=html), to=[to])
    boundary = msg.get_boundary()
    library = EmailMessage(policy=msg.policy)
    for field, value in msg.items():
        if not field.lower().startswith("content-"):
            library[field] = value
    _library_text(library, text, "plain")
    if html is not None:
        alternative = EmailMessage(policy=policy.default)
        _library_text(alternative, html, "html")
        library.make_alternative()
        library.attach(alternative)
        assert boundary is not None
        library.set_boundary(boundary)
        del alternative["MIME-Version"]
    as_library = library.as_bytes(policy=policy.SMTPUTF8 if utf8 else policy.SMTP)
    assert to_bytes(msg) == as_library
    assert msg.as_bytes(policy=policy.SMTPUTF8 if utf8 else policy.SMTP) == as_library
    # a Python whose library lacks the private encoder composes through set_content
    saved, compose_module._ENCODE_TEXT = compose_module._ENCODE_TEXT, None
    try:
        again = build(RenderedMail(subject=subject or "s", text=text, html=html), to=[to])
    finally:
        compose_module._ENCODE_TEXT = saved
    written = to_bytes(again)
    if html is not None:   # the same parts under another random boundary
        other = again.get_boundary()
        assert other is not None and boundary is not None
        written = written.replace(other.encode(), boundary.encode())
    assert written == as_library
