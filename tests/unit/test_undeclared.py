"""Undeclared 8-bit text and CJK edge cases: the charset a reader would pick, with the repair.

Bytes without a label are read in the charset the message declares elsewhere, or the one its
body turned out to be in, then by plausibility among the charsets mail is sent in; ISO-2022-JP
is read with Microsoft's extensions, and Japanese mislabelled as its sibling is repaired.
"""

from __future__ import annotations

import base64
from urllib.parse import quote_from_bytes

import pytest

from daemon.intake.charsets import decode_bytes, decode_header_value
from daemon.intake.iso2022jp import decode as decode_cp50221
from daemon.intake.parse import parse
from daemon.intake.parsed import CharsetNote
from daemon.intake.plausibility import score

HEAD = b"From: a@client.example\r\nTo: support@corp.example\r\nMIME-Version: 1.0\r\n"
GB_BODY = "您好，附件是本季度的绩效管理办法，请查收。如有问题请联系人力资源部。".encode("gbk")


def single(subject: bytes, body: bytes, ctype: bytes = b"text/plain") -> bytes:
    return (HEAD + b"Subject: " + subject + b"\r\nContent-Type: " + ctype +
            b"\r\nContent-Transfer-Encoding: 8bit\r\n\r\n" + body + b"\r\n")


def test_raw_gb2312_subject_follows_an_unlabelled_chinese_body() -> None:
    parsed = parse(single("转发：绩效管理问题".encode("gb2312"), GB_BODY))
    assert parsed.subject == "转发：绩效管理问题"
    assert parsed.body_text == GB_BODY.decode("gbk")
    assert CharsetNote("part 1 text/plain", None, "gb18030",
                       "no charset declared, detected as gb18030") in parsed.charsets
    assert CharsetNote("subject", None, "gb18030", "no charset declared, decoded as gb18030 "
                       "(charset of the same message)") in parsed.charsets


def test_raw_gb2312_subject_beats_a_latin1_label_of_the_body() -> None:
    parsed = parse(single("转发：绩效管理问题".encode("gb2312"), b"see below",
                          b"text/plain; charset=iso-8859-1"))
    assert parsed.subject == "转发：绩效管理问题"
    assert CharsetNote("subject", None, "gb18030", "no charset declared, detected as gb18030") \
        in parsed.charsets


def test_raw_gbk_file_name_is_not_read_as_korean() -> None:
    name = "绩效管理办法.xls".encode("gbk")
    raw = (HEAD + b"Subject: report\r\nContent-Type: multipart/mixed; boundary=B\r\n\r\n"
           b"--B\r\nContent-Type: text/plain; charset=us-ascii\r\n\r\nsee file\r\n"
           b'--B\r\nContent-Type: application/vnd.ms-excel; name="' + name + b'"\r\n'
           b'Content-Disposition: attachment; filename="' + name + b'"\r\n\r\nxx\r\n--B--\r\n')
    parsed = parse(raw)
    assert [a.filename for a in parsed.attachments] == ["绩效管理办法.xls"]
    assert CharsetNote("attachment name, part 2", None, "gb18030",
                       "no charset declared, detected as gb18030") in parsed.charsets


@pytest.mark.parametrize("body", [b"hello", "Grüße".encode()])
def test_latin1_name_in_from_and_subject(body: bytes) -> None:
    raw = (b"From: " + "Jörg Müller".encode("latin-1") + b" <j@client.example>\r\n"
           b"Subject: Hofj\xe4geralle 12\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n"
           + body + b"\r\n")
    parsed = parse(raw)
    assert parsed.subject == "Hofjägeralle 12"
    assert parsed.from_ is not None
    assert parsed.from_.name == "Jörg Müller"
    assert "\ufffd" not in parsed.subject + parsed.from_.name


def test_a_latin1_byte_inside_utf8_text_is_read_as_a_letter_not_as_u_fffd() -> None:
    text, note = decode_bytes("Grüße aus der ".encode() + b"Hofj\xe4geralle", None, "subject")
    assert text == "Grüße aus der Hofjägeralle"
    assert note.repair == ("no charset declared, decoded as utf-8 with 1 stray byte read as "
                           "windows-1252")


def test_an_unlabelled_gbk_body_mostly_in_english_is_gb18030() -> None:
    body = ("Hi team,\n\nThe server is down again. 服务器又宕机了，请尽快处理。\n\n"
            "Thanks\nLi Wei\nIT Dept, Shanghai office\nTel: +86 21 5555 1234")
    parsed = parse(single(b"server down", body.encode("gbk")))
    assert parsed.body_text == body
    assert CharsetNote("part 1 text/plain", None, "gb18030",
                       "no charset declared, detected as gb18030") in parsed.charsets


def test_plausibility_prefers_common_hanzi_to_latin_symbols_and_rare_hangul() -> None:
    data = "转发：绩效管理".encode("gb2312")
    assert score(data.decode("gb18030")) > score(data.decode("latin-1"))
    assert score(data.decode("gb18030")) > score(data.decode("cp949"))
    hangul = "안녕하세요, 프린터가 고장났습니다".encode("cp949")
    assert score(hangul.decode("cp949")) > score(hangul.decode("gb18030"))


# ---------------------------------------------------------------- Japanese

# JIS X 0208 bytes of ① (NEC row 13, 0x2D21), ② (0x2D22) and 﨑 (NEC-selected IBM row 89,
# 0x7975), as CP50220/CP50221 write them; 会議 is 0x3271 0x3544.
CIRCLED = b"\x1b$B-!-\"\x1b(B \x1b$B2q5D\x1b(B \x1b$Byu\x1b(B"


def test_iso_2022_jp_with_microsoft_extensions_is_decoded() -> None:
    assert decode_cp50221(CIRCLED) == "①② 会議 﨑"
    words = base64.b64encode(CIRCLED).decode()
    raw = (HEAD + f"Subject: =?ISO-2022-JP?B?{words}?=\r\n".encode() +
           b"Content-Type: text/plain; charset=ISO-2022-JP\r\n\r\n" + CIRCLED + b"\r\n")
    parsed = parse(raw)
    assert parsed.subject == "①② 会議 﨑"
    assert parsed.body_text == "①② 会議 﨑"
    note = CharsetNote("subject", "iso-2022-jp", "cp50221",
                       "iso-2022-jp declared, decoded as cp50221")
    assert note in parsed.charsets
    assert "\ufffd" not in parsed.body_text


def test_half_width_katakana_escape_and_invalid_bytes() -> None:
    assert decode_cp50221(b"\x1b(I12\x1b(B") == "ｱｲ"
    with pytest.raises(UnicodeDecodeError):
        decode_cp50221(b"\x1b$B\x80\x80\x1b(B")


def test_shift_jis_labelled_iso_2022_jp_and_the_reverse() -> None:
    sjis = base64.b64encode("会議の件について".encode("cp932")).decode()
    decoded = decode_header_value(f"=?ISO-2022-JP?B?{sjis}?=", "subject")
    assert decoded.text == "会議の件について"
    assert decoded.notes == (CharsetNote(
        "subject", "iso-2022-jp", "cp932", "iso-2022-jp declared, decoded as cp932 (the "
        "declared charset cannot decode the bytes)"),)
    jis = base64.b64encode("会議の件について".encode("iso2022_jp")).decode()
    decoded = decode_header_value(f"=?shift_jis?B?{jis}?=", "subject")
    assert decoded.text == "会議の件について"
    assert decoded.notes[0].repair == ("shift_jis declared, decoded as iso-2022-jp (escape "
                                       "sequences in the text)")


@pytest.mark.parametrize("disposition", [
    "attachment; filename*=iso-2022-jp''{pct}",
    "attachment; filename*=ISO-2022-JP'ja'{pct}",
    "attachment; filename*0*=iso-2022-jp''{pct}",
    'attachment; filename="{raw}"',
])
def test_iso_2022_jp_file_names(disposition: str) -> None:
    jis = "会議資料①.pdf".encode("cp932").decode("cp932")
    data = b"\x1b$B2q5D;qNA-!\x1b(B.pdf"
    assert decode_cp50221(data) == jis
    value = disposition.format(pct=quote_from_bytes(data), raw=data.decode("ascii"))
    raw = (HEAD + b"Subject: x\r\nContent-Type: multipart/mixed; boundary=B\r\n\r\n"
           b"--B\r\nContent-Type: text/plain\r\n\r\nhi\r\n--B\r\n"
           b"Content-Type: application/pdf\r\nContent-Disposition: " + value.encode() +
           b"\r\n\r\n%PDF\r\n--B--\r\n")
    parsed = parse(raw)
    assert [a.filename for a in parsed.attachments] == ["会議資料①.pdf"]


def test_raw_iso_2022_jp_subject_without_encoded_words() -> None:
    parsed = parse(HEAD + b"Subject: " + "会議の件".encode("iso2022_jp") + b"\r\n\r\nx\r\n")
    assert parsed.subject == "会議の件"
