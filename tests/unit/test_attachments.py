"""Attachments: every form they arrive in, and the file names they need on disk."""

from __future__ import annotations

import base64
import hashlib
import struct
from email import message_from_bytes
from email.message import EmailMessage

import pytest

from daemon.intake.attachments import generated_name, safe_filename
from daemon.intake.parse import parse


def base() -> EmailMessage:
    msg = EmailMessage()
    msg["From"] = "Requester <requester@example.com>"
    msg["To"] = "support@example.com"
    msg["Subject"] = "Files"
    msg["Message-ID"] = "<files@example.com>"
    msg.set_content("See attached.\n")
    return msg


def mixed(*parts: bytes, body_charset: str = "utf-8") -> bytes:
    """A multipart/mixed mail with a text body and the given raw parts."""
    head = (
        b"From: a@example.com\r\nTo: support@example.com\r\nSubject: raw parts\r\n"
        b"MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=XX\r\n\r\n"
        b"--XX\r\nContent-Type: text/plain; charset=" + body_charset.encode() + b"\r\n\r\n"
        b"body\r\n"
    )
    return head + b"".join(b"--XX\r\n" + p + b"\r\n" for p in parts) + b"--XX--\r\n"


def test_named_attachment_payload_and_hash() -> None:
    msg = base()
    msg.add_attachment(b"%PDF-1.4 data", maintype="application", subtype="pdf",
                       filename="Report Q3.pdf")
    (attachment,) = parse(bytes(msg)).attachments
    assert attachment.filename == "Report Q3.pdf"
    assert attachment.safe_filename == "Report Q3.pdf"
    assert attachment.content_type == "application/pdf"
    assert attachment.payload == b"%PDF-1.4 data"
    assert attachment.sha256 == hashlib.sha256(b"%PDF-1.4 data").hexdigest()
    assert attachment.size == 13
    assert (attachment.inline, attachment.origin, attachment.content_id) == (False, "mime", None)


def test_unnamed_attachments_get_names_from_their_type() -> None:
    msg = base()
    msg.add_attachment(b"%PDF", maintype="application", subtype="pdf")
    msg.add_attachment(b"\x89PNG", maintype="image", subtype="png")
    names = [a.filename for a in parse(bytes(msg)).attachments]
    assert names == ["attachment-1.pdf", "image-2.png"]


def test_inline_image_with_content_id() -> None:
    msg = base()
    msg.add_alternative('<p>Logo: <img src="cid:logo123@example.com"></p>', subtype="html")
    payload = msg.get_payload()
    assert isinstance(payload, list) and isinstance(payload[1], EmailMessage)
    html_part = payload[1]
    html_part.add_related(b"\x89PNG\r\n", maintype="image", subtype="png",
                          cid="<logo123@example.com>")
    parsed = parse(bytes(msg))
    (image,) = parsed.attachments
    assert image.inline is True
    assert image.content_id == "logo123@example.com"
    assert image.filename == "image-1.png"
    assert parsed.body_text == "See attached."


def test_rfc2231_gbk_filename() -> None:
    part = (
        b"Content-Type: application/pdf\r\n"
        b"Content-Disposition: attachment; filename*=gbk''%D6%D0%CE%C4%B1%A8%B8%E6.pdf\r\n"
        b"Content-Transfer-Encoding: base64\r\n\r\nJVBERg==\r\n"
    )
    (attachment,) = parse(mixed(part)).attachments
    assert attachment.filename == "中文报告.pdf"
    assert attachment.payload == b"%PDF"


def test_rfc2231_continuations_in_utf8() -> None:
    part = (
        b"Content-Type: application/pdf\r\n"
        b"Content-Disposition: attachment;\r\n filename*0*=utf-8''%E5%90%88%E5%90%8C;\r\n"
        b" filename*1*=%E8%8D%89%E6%A1%88.docx\r\n\r\nx\r\n"
    )
    (attachment,) = parse(mixed(part)).attachments
    assert attachment.filename == "合同草案.docx"


def test_rfc2047_gbk_filename_in_quotes() -> None:
    word = "=?gbk?B?" + base64.b64encode("发票.pdf".encode("gbk")).decode() + "?="
    part = (
        b'Content-Type: application/pdf; name="' + word.encode() + b'"\r\n'
        b'Content-Disposition: attachment; filename="' + word.encode() + b'"\r\n\r\nx\r\n'
    )
    (attachment,) = parse(mixed(part)).attachments
    assert attachment.filename == "发票.pdf"


def test_raw_8bit_gbk_filename_uses_the_message_charset() -> None:
    part = (
        b"Content-Type: application/vnd.ms-excel\r\n"
        b'Content-Disposition: attachment; filename="' + "报价单.xls".encode("gbk") + b'"\r\n'
        b"\r\nx\r\n"
    )
    (attachment,) = parse(mixed(part, body_charset="gbk")).attachments
    assert attachment.filename == "报价单.xls"


def test_attached_message_is_kept_whole_as_eml() -> None:
    inner = EmailMessage()
    inner["From"] = "customer@example.com"
    inner["Subject"] = "Original problem"
    inner.set_content("My printer is broken.\n")
    msg = base()
    msg.add_attachment(inner)
    parsed = parse(bytes(msg))
    (attachment,) = parsed.attachments
    assert attachment.origin == "rfc822"
    assert attachment.content_type == "message/rfc822"
    assert attachment.filename == "Original problem.eml"
    assert message_from_bytes(attachment.payload)["Subject"] == "Original problem"
    assert parsed.body_text == "See attached."


def tnef_object(level: int, name: int, data: bytes, kind: int = 0x0006) -> bytes:
    checksum = sum(data) & 0xFFFF
    return struct.pack("<BHHI", level, name, kind, len(data)) + data + struct.pack("<H", checksum)


def winmail(filename: bytes, payload: bytes) -> bytes:
    return (
        struct.pack("<IH", 0x223E9F78, 0x0001)
        + tnef_object(1, 0x9006, struct.pack("<I", 0x10000), 0x0008)
        + tnef_object(2, 0x9002, b"\x00" * 14)
        + tnef_object(2, 0x8010, filename + b"\x00", 0x0001)
        + tnef_object(2, 0x800F, payload)
    )


def test_winmail_dat_is_unpacked() -> None:
    msg = base()
    msg.add_attachment(winmail(b"budget.xlsx", b"PK\x03\x04sheet"), maintype="application",
                       subtype="ms-tnef", filename="winmail.dat")
    (attachment,) = parse(bytes(msg)).attachments
    assert attachment.filename == "budget.xlsx"
    assert attachment.payload == b"PK\x03\x04sheet"
    assert attachment.origin == "tnef"
    assert attachment.content_type == (
        "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
    )


def test_broken_winmail_dat_is_kept_as_it_is() -> None:
    msg = base()
    msg.add_attachment(b"not tnef at all", maintype="application", subtype="ms-tnef",
                       filename="winmail.dat")
    parsed = parse(bytes(msg))
    (attachment,) = parsed.attachments
    assert (attachment.filename, attachment.origin) == ("winmail.dat", "mime")
    assert attachment.payload == b"not tnef at all"
    assert "winmail.dat could not be unpacked; kept as it is" in parsed.defects


@pytest.mark.parametrize("sig_type", ["application/pkcs7-signature",
                                      "application/x-pkcs7-signature"])
def test_smime_signed_content_is_the_body_and_signature_a_marked_attachment(
    sig_type: str,
) -> None:
    raw = (
        b"From: a@example.com\r\nSubject: signed\r\nMIME-Version: 1.0\r\n"
        b'Content-Type: multipart/signed; protocol="' + sig_type.encode() + b'";'
        b" micalg=sha-256; boundary=SIG\r\n\r\n"
        b"--SIG\r\nContent-Type: multipart/mixed; boundary=IN\r\n\r\n"
        b"--IN\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nSigned text.\r\n"
        b"--IN\r\nContent-Type: application/pdf; name=a.pdf\r\n"
        b"Content-Disposition: attachment; filename=a.pdf\r\n\r\n%PDF\r\n--IN--\r\n"
        b"--SIG\r\nContent-Type: " + sig_type.encode() + b"; name=smime.p7s\r\n"
        b"Content-Transfer-Encoding: base64\r\n"
        b"Content-Disposition: attachment; filename=smime.p7s\r\n\r\n"
        b"MIAGCSqGSIb3DQEHAqCAMIACAQE=\r\n"
        b"--SIG--\r\n"
    )
    parsed = parse(raw)
    assert parsed.body_text == "Signed text."
    assert [(a.filename, a.content_type, a.signature) for a in parsed.attachments] == [
        ("a.pdf", "application/pdf", False), ("smime.p7s", sig_type, True)]


def test_named_text_parts_are_attachments_even_inline() -> None:
    msg = base()
    msg.add_attachment("log line 1\n", filename="server.log")
    msg.add_attachment("inline notes\n", disposition="inline", filename="notes.txt")
    msg.add_attachment("more text\n", disposition="inline")
    parsed = parse(bytes(msg))
    assert [(a.filename, a.inline, a.payload) for a in parsed.attachments] == [
        ("server.log", False, b"log line 1\n"), ("notes.txt", True, b"inline notes\n")]
    assert parsed.body_text == "See attached.\n\nmore text"


@pytest.mark.parametrize(
    ("name", "safe"),
    [
        ("../../etc/passwd", "passwd"),
        ("C:\\Users\\me\\report.pdf", "report.pdf"),
        ("..hidden", "hidden"),
        ("a..b.txt", "a.b.txt"),
        ("bad\x00na\x1fme\x7f.txt", "badname.txt"),
        ("invoice\u202efdp.exe", "invoicefdp.exe"),
        ("what?<>|*.doc", "what_____.doc"),
        ("", "attachment"),
        ("...", "attachment"),
        ("/", "attachment"),
        ("con.txt", "_con.txt"),
        ("报价单.xls", "报价单.xls"),
    ],
)
def test_safe_filename(name: str, safe: str) -> None:
    assert safe_filename(name) == safe


def test_safe_filename_caps_length_and_keeps_the_extension() -> None:
    result = safe_filename("x" * 300 + ".pdf")
    assert len(result) == 150
    assert result.endswith("x.pdf")
    assert len(safe_filename("中" * 400)) == 150


def test_generated_names() -> None:
    assert generated_name("application/pdf", 1) == "attachment-1.pdf"
    assert generated_name("image/jpeg", 2) == "image-2.jpg"
    assert generated_name("message/rfc822", 3) == "message-3.eml"
    assert generated_name("application/x-unknown-thing", 4) == "attachment-4.bin"
