"""Charset decoding and repair: every charset real support mail arrives in.

Each case builds its own bytes; the labels are the ones clients really send, including the
wrong ones (gb2312 for GBK text, iso-8859-1 for windows-1252 or UTF-8, big5 for HKSCS).
"""

from __future__ import annotations

import base64

import pytest

from daemon.intake.charsets import canonical_codec, decode_bytes, decode_header_value
from daemon.intake.parse import parse
from daemon.intake.parsed import Address, CharsetNote


def encoded_word(text: str, label: str, codec: str) -> str:
    payload = base64.b64encode(text.encode(codec)).decode("ascii")
    return f"=?{label}?B?{payload}?="


def mail(
    subject: str, from_header: str, body: bytes, label: str | None, cte: str = "8bit"
) -> bytes:
    ctype = "text/plain" + (f"; charset={label}" if label else "")
    head = (
        f"From: {from_header}\r\nTo: support@example.com\r\nSubject: {subject}\r\n"
        f"Message-ID: <c1@example.com>\r\nMIME-Version: 1.0\r\nContent-Type: {ctype}\r\n"
        f"Content-Transfer-Encoding: {cte}\r\n\r\n"
    ).encode("ascii")
    if cte == "base64":
        body = base64.encodebytes(body)
    return head + body


# label as sent, text, codec that produces the bytes, codec the note must name, repair note
CASES = [
    ("gb2312", "打印机坏了，朱镕基", "gb18030", "gb18030", "gb2312 declared, decoded as gb18030"),
    ("gbk", "您好，打印机无法连接网络", "gbk", "gb18030", "gbk declared, decoded as gb18030"),
    ("gb18030", "发票金额 €100 𠀀", "gb18030", "gb18030", None),
    ("big5", "您好，印表機壞了，唔該嘅", "big5hkscs", "big5hkscs",
     "big5 declared, decoded as big5hkscs"),
    ("iso-2022-jp", "プリンターが壊れました", "iso2022_jp", "iso-2022-jp", None),
    ("iso-8859-1", "Café crème brûlée", "latin-1", "iso-8859-1", None),
    ("iso-8859-2", "Zażółć gęślą jaźń", "iso-8859-2", "iso-8859-2", None),
    ("iso-8859-5", "Здравствуйте, принтер", "iso-8859-5", "iso-8859-5", None),
    ("windows-1251", "Здравствуйте, принтер не работает", "cp1251", "windows-1251", None),
    ("windows-1252", "Café “quotes” – fine", "cp1252", "windows-1252", None),
]


@pytest.mark.parametrize(("label", "text", "codec", "used", "repair"), CASES,
                         ids=[c[0] for c in CASES])
def test_subject_from_name_and_body_in_each_charset(
    label: str, text: str, codec: str, used: str, repair: str | None
) -> None:
    raw = mail(
        subject=encoded_word(text, label, codec),
        from_header=f"{encoded_word(text[:4], label, codec)} <Sender@Example.COM>",
        body=text.encode(codec) + b"\r\n",
        label=label,
        cte="7bit" if label == "iso-2022-jp" else "base64",
    )
    parsed = parse(raw)
    assert parsed.subject == text
    assert parsed.from_ is not None
    assert parsed.from_.name == text[:4]
    assert parsed.from_.email == "sender@example.com"
    assert parsed.body_text == text
    assert CharsetNote("subject", label, used, repair) in parsed.charsets
    assert CharsetNote("part 1 text/plain", label, used, repair) in parsed.charsets


def test_gb2312_label_always_decoded_with_gb18030_even_when_text_fits_gb2312() -> None:
    text, note = decode_bytes("你好".encode("gb2312"), "GB2312", "body")
    assert text == "你好"
    assert note == CharsetNote("body", "gb2312", "gb18030", "gb2312 declared, decoded as gb18030")


def test_latin1_label_with_windows_1252_bytes_is_repaired() -> None:
    text, note = decode_bytes("“Smart” quotes – dash".encode("cp1252"), "iso-8859-1", "body")
    assert text == "“Smart” quotes – dash"
    assert note.used == "windows-1252"
    assert note.repair == "iso-8859-1 declared, decoded as windows-1252"


def test_utf8_mislabelled_as_latin1_is_decoded_as_utf8() -> None:
    raw = mail("Zurich", "a@example.com", "Grüße aus Zürich".encode(), "iso-8859-1")
    parsed = parse(raw)
    assert parsed.body_text == "Grüße aus Zürich"
    assert CharsetNote(
        "part 1 text/plain", "iso-8859-1", "utf-8", "iso-8859-1 declared, decoded as utf-8"
    ) in parsed.charsets


def test_unlabelled_utf8_body() -> None:
    parsed = parse(mail("Hi", "a@example.com", "naïve café 中文".encode(), None))
    assert parsed.body_text == "naïve café 中文"
    assert CharsetNote(
        "part 1 text/plain", None, "utf-8", "no charset declared, decoded as utf-8"
    ) in parsed.charsets


def test_unlabelled_gbk_body_is_detected() -> None:
    text = "您好，我们的打印机昨天开始无法连接网络，请帮忙看一下。谢谢！"
    decoded, note = decode_bytes(text.encode("gbk"), None, "body")
    assert decoded == text
    assert note.used == "gb18030"
    assert note.repair == "no charset declared, detected as gb18030"


def test_raw_8bit_subject_uses_the_charset_of_the_same_message() -> None:
    subject = "打印机坏了".encode("gbk")
    raw = (
        b"From: a@example.com\r\nSubject: " + subject + b"\r\nMIME-Version: 1.0\r\n"
        b"Content-Type: text/plain; charset=gbk\r\nContent-Transfer-Encoding: 8bit\r\n\r\n"
        + "请帮忙".encode("gbk") + b"\r\n"
    )
    parsed = parse(raw)
    assert parsed.subject == "打印机坏了"
    assert parsed.body_text == "请帮忙"
    assert CharsetNote(
        "subject", None, "gb18030",
        "no charset declared, decoded as gb18030 (charset of the same message)",
    ) in parsed.charsets


def test_raw_8bit_utf8_from_name() -> None:
    raw = "From: Jürgen Müller <JM@Example.de>\r\nSubject: x\r\n\r\nbody\r\n".encode()
    parsed = parse(raw)
    assert parsed.from_ is not None
    assert (parsed.from_.name, parsed.from_.email) == ("Jürgen Müller", "jm@example.de")


def test_encoded_words_splitting_a_multibyte_character_are_joined_before_decoding() -> None:
    data = "中文标题".encode()
    first, second = base64.b64encode(data[:4]).decode(), base64.b64encode(data[4:]).decode()
    decoded = decode_header_value(f"=?UTF-8?B?{first}?=\r\n =?UTF-8?B?{second}?=", "subject")
    assert decoded.text == "中文标题"
    assert decoded.notes == (CharsetNote("subject", "utf-8", "utf-8"),)


def test_q_encoding_mixed_with_plain_text_keeps_the_spaces_that_matter() -> None:
    decoded = decode_header_value("Re: =?iso-8859-1?Q?Caf=E9_cr=E8me?= order", "subject")
    assert decoded.text == "Re: Café crème order"


def test_encoded_words_in_different_charsets_next_to_each_other() -> None:
    value = f"{encoded_word('你好', 'gbk', 'gbk')} {encoded_word(' Zürich', 'utf-8', 'utf-8')}"
    assert decode_header_value(value, "subject").text == "你好 Zürich"


def test_broken_base64_padding_and_unknown_charset_degrade() -> None:
    assert decode_header_value("=?utf-8?B?5Lit5paH?=", "subject").text == "中文"
    unknown = decode_header_value("=?x-made-up?Q?hello?=", "subject")
    assert unknown.text == "hello"


def test_control_characters_in_decoded_headers_become_spaces() -> None:
    value = "=?utf-8?Q?a=0D=0AInjected:_yes?="
    assert decode_header_value(value, "subject").text == "a  Injected: yes"


def test_plain_ascii_header_has_no_note() -> None:
    assert decode_header_value("Hello", "subject").notes == ()


def test_canonical_codec() -> None:
    assert canonical_codec('"GB2312"') == "gb2312"
    assert canonical_codec("unknown-8bit") is None
    assert canonical_codec("ks_c_5601-1987") == "euc_kr"
    assert canonical_codec("no-such-charset") is None
    assert canonical_codec(None) is None


def test_truncated_utf8_keeps_utf8_with_a_replacement_character() -> None:
    data = "Юникод запрещен".encode() + b"\xd0"
    text, note = decode_bytes(data, None, "from")
    assert text == "Юникод запрещен\ufffd"
    assert note.used == "utf-8"
    assert note.repair == "no charset declared, decoded as utf-8 with 1 replacement character"


@pytest.mark.parametrize(
    ("value", "text"),
    [
        ("=?us-ascii?Q?ABC / 123 / West?=", "ABC / 123 / West"),
        ("Re:=?UTF-8?Q? Personal=C3=A4nderung?=", "Re: Personaländerung"),
        ("=?UTF-8?Q? Personal=C3=A4nderung?=", "Personaländerung"),
        # folded inside the word, in the middle of an escape
        ("=?utf-8?Q?Gr=C3=\r\n BC=C3=9Fe?=", "Grüße"),
        ("=?utf-8?Q?Gr=C\r\n 3=BC=C3=9Fe?=", "Grüße"),
        # split mid-character across words, and mid-group in base64
        ("=?utf-8?Q?caf=C3?=\r\n =?utf-8?Q?=A9?=", "café"),
        ("=?utf-8?B?5L2g5a?=\r\n =?utf-8?B?W9?=", "你好"),
        # adjacent words in different charsets, with and without whitespace
        ("=?gb2312?B?16q3og==?==?utf-8?Q?=EF=BC=9A?=", "转发："),
        ("=?utf-8?Q?Caf=C3=A9?=\r\n =?iso-8859-1?Q?_na=EFve?=", "Café naïve"),
        ("=?UTF-8?B?5L2g5aW9?=abc", "你好abc"),
    ],
)
def test_encoded_words_as_real_clients_write_them(value: str, text: str) -> None:
    assert decode_header_value(value, "subject").text == text


def test_encoded_word_scan_is_linear_on_hostile_input() -> None:
    value = "=?utf-8?q?" * 20_000 + "x" * 10_000
    assert decode_header_value(value, "subject").text.endswith("x")


def test_an_encoded_word_holding_a_comma_does_not_split_the_address_list() -> None:
    value = "=?utf-8?Q?M=C3=BCller,_Hans?= <hans@example.com>, =?utf-8?Q?B=C3=B6b?= <b@example.com>"
    raw = f"From: {value}\r\nTo: {value}\r\nSubject: s\r\n\r\nbody\r\n".encode()
    parsed = parse(raw)
    assert parsed.from_ == Address("Müller, Hans", "hans@example.com")
    assert parsed.to == (Address("Müller, Hans", "hans@example.com"),
                         Address("Böb", "b@example.com"))
    assert parsed.defects == ()


@pytest.mark.parametrize(("label", "codec"), [
    ("x-gbk", "gbk"), ("GB2312_CHARSET", "gbk"), ("x-sjis", "cp932"), ("windows-31j", "cp932"),
    ("x-x-big5", "big5"), ("windows-874", "cp874"), ("x-windows-949", "cp949"),
])
def test_labels_clients_send_that_python_does_not_know(label: str, codec: str) -> None:
    assert canonical_codec(label) == codec
