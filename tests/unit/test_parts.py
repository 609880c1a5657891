"""Which part is the body, which an attachment: named text parts, stub alternatives, signatures."""

from __future__ import annotations

import pytest

from daemon.intake.parse import parse

HEAD = (b"From: Ann <ann@client.example>\r\nTo: support@corp.example\r\nSubject: parts\r\n"
        b"Message-ID: <parts@client.example>\r\nMIME-Version: 1.0\r\n")


def mixed(*parts: bytes, subtype: bytes = b"mixed") -> bytes:
    body = b"".join(b"--B\r\n" + part + b"\r\n" for part in parts)
    return (HEAD + b"Content-Type: multipart/" + subtype + b"; boundary=B\r\n\r\n" + body +
            b"--B--\r\n")


TEXT = b"Content-Type: text/plain; charset=utf-8\r\n\r\nThe printer on floor 3 is jammed.\r\n"


@pytest.mark.parametrize("headers", [
    b"Content-Type: text/plain; charset=utf-8\r\nContent-Disposition: inline; filename=notes.txt",
    b"Content-Type: text/plain; charset=utf-8; name=notes.txt",
    b"Content-Type: text/plain; charset=utf-8\r\nContent-Disposition: inline; "
    b"filename*=utf-8''notes.txt",
])
def test_a_named_text_part_is_an_attachment_even_inline(headers: bytes) -> None:
    parsed = parse(mixed(TEXT, headers + b"\r\n\r\nline 1 of the notes\r\nline 2\r\n"))
    assert parsed.body_text == "The printer on floor 3 is jammed."
    assert [(a.filename, a.content_type, a.payload) for a in parsed.attachments] == [
        ("notes.txt", "text/plain", b"line 1 of the notes\r\nline 2\r\n")]


def test_a_named_html_part_in_mixed_is_an_attachment() -> None:
    html = b"Content-Type: text/html; name=report.html\r\n\r\n<p>Quarterly report</p>\r\n"
    parsed = parse(mixed(TEXT, html))
    assert parsed.body_text == "The printer on floor 3 is jammed."
    assert [a.filename for a in parsed.attachments] == ["report.html"]


def test_a_named_alternative_and_a_named_single_part_stay_the_body() -> None:
    alt = mixed(b"Content-Type: text/plain; name=body.txt\r\n\r\nPlain body\r\n",
                b"Content-Type: text/html; name=body.html\r\n\r\n<p>Plain body</p>\r\n",
                subtype=b"alternative")
    parsed = parse(alt)
    assert parsed.body_text == "Plain body"
    assert parsed.attachments == ()
    single = parse(HEAD + b"Content-Type: text/plain; name=mail.txt\r\n\r\nOnly text\r\n")
    assert single.body_text == "Only text"
    assert single.attachments == ()


HTML_NEWS = ("<html><body><h1>Service notice</h1>" + "<p>The mail server moves to a new "
             "data centre on Saturday night; expect twenty minutes without mail.</p>" * 6 +
             "</body></html>")


@pytest.mark.parametrize("stub", [
    "View this mail in your browser: https://news.example/1",
    "To read this newsletter, open it in a web browser.",
    "Service notice",
])
def test_a_plain_alternative_that_is_a_stub_yields_to_the_html(stub: str) -> None:
    raw = mixed(b"Content-Type: text/plain; charset=utf-8\r\n\r\n" + stub.encode() + b"\r\n",
                b"Content-Type: text/html; charset=utf-8\r\n\r\n" + HTML_NEWS.encode() + b"\r\n",
                subtype=b"alternative")
    parsed = parse(raw)
    assert parsed.body_text.startswith("Service notice\n\nThe mail server moves")
    assert parsed.new_text == parsed.body_text


def test_a_real_short_plain_alternative_is_kept() -> None:
    raw = mixed(b"Content-Type: text/plain\r\n\r\nThanks, that fixed it.\r\n",
                b"Content-Type: text/html\r\n\r\n<p>Thanks, that fixed it.</p>"
                b"<p>-- <br>Ann Lee, Finance</p>\r\n", subtype=b"alternative")
    assert parse(raw).body_text == "Thanks, that fixed it."


def test_a_pgp_signature_is_kept_as_a_marked_attachment() -> None:
    raw = (HEAD + b'Content-Type: multipart/signed; micalg=pgp-sha256; '
           b'protocol="application/pgp-signature"; boundary=S\r\n\r\n'
           b"--S\r\n" + TEXT + b"\r\n--S\r\nContent-Type: application/pgp-signature; "
           b"name=signature.asc\r\nContent-Disposition: attachment; filename=signature.asc\r\n"
           b"\r\n-----BEGIN PGP SIGNATURE-----\r\niQEz\r\n-----END PGP SIGNATURE-----\r\n"
           b"--S--\r\n")
    parsed = parse(raw)
    assert parsed.body_text == "The printer on floor 3 is jammed."
    assert [(a.filename, a.content_type, a.signature) for a in parsed.attachments] == [
        ("signature.asc", "application/pgp-signature", True)]


def test_named_inline_text_is_also_the_body_when_there_is_no_other_text() -> None:
    part = b"Content-Type: text/plain\r\nContent-Disposition: inline; filename=msg.txt\r\n\r\n"
    parsed = parse(mixed(part + b"first\r\n", part + b"second\r\n"))
    assert parsed.body_text == "first\n\nsecond"
    assert [a.filename for a in parsed.attachments] == ["msg.txt", "msg.txt"]
