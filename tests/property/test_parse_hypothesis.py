"""parse() returns a ParsedMail or raises Quarantine: never anything else, whatever the bytes."""

from __future__ import annotations

from email.message import EmailMessage

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from daemon.errors import Quarantine
from daemon.intake.parse import parse
from daemon.intake.parsed import ParsedMail


def _seed_messages() -> list[bytes]:
    plain = EmailMessage()
    plain["From"] = "张三 <zhang@example.com>"
    plain["To"] = "Support <support@example.com>, group: a@example.com;"
    plain["Subject"] = "打印机 broken"
    plain["Message-ID"] = "<seed@example.com>"
    plain["References"] = "<a@example.com> <b@example.com>"
    plain["Date"] = "Fri, 27 Oct 2023 10:00:00 +0800"
    plain.set_content("您好\n\nOn Fri, Support wrote:\n> restart it\n")
    plain.add_alternative("<p>您好</p><blockquote type='cite'>restart</blockquote>",
                          subtype="html")
    plain.add_attachment(b"%PDF-1.4", maintype="application", subtype="pdf",
                         filename="报告.pdf")
    inner = EmailMessage()
    inner["Subject"] = "inner"
    inner.set_content("forwarded")
    plain.add_attachment(inner)
    gbk = (
        b"From: =?gb2312?B?1cXI/Q==?= <z@example.com>\r\nSubject: =?gbk?B?tPLTobv6?=\r\n"
        b"MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=XX\r\n\r\n"
        b"--XX\r\nContent-Type: text/plain; charset=gb2312\r\n"
        b"Content-Transfer-Encoding: base64\r\n\r\nxPq6ww==\r\n"
        b"--XX\r\nContent-Type: application/ms-tnef; name=winmail.dat\r\n"
        b"Content-Transfer-Encoding: base64\r\n\r\neJ8+IgEA\r\n--XX--\r\n"
    )
    return [bytes(plain), gbk]


SEEDS = _seed_messages()


def _check(raw: bytes) -> None:
    try:
        result = parse(raw)
    except Quarantine:
        return
    assert isinstance(result, ParsedMail)
    assert result.raw_size == len(raw)


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    data = bytearray(draw(st.sampled_from(SEEDS)))
    for _ in range(draw(st.integers(0, 6))):
        action = draw(st.sampled_from(["flip", "truncate", "duplicate", "boundary", "insert"]))
        if not data:
            break
        position = draw(st.integers(0, len(data) - 1))
        if action == "flip":
            data[position] = draw(st.integers(0, 255))
        elif action == "truncate":
            del data[position:]
        elif action == "duplicate":
            end = data.find(b"\n", position)
            line = data[data.rfind(b"\n", 0, position) + 1 : end + 1 if end >= 0 else None]
            data[position:position] = line * draw(st.integers(1, 3))
        elif action == "boundary":
            for marker in (b"--XX", b"--===", b"boundary="):
                damage = draw(st.sampled_from([b"--", b"-X", b"", marker[:2]]))
                data = data.replace(marker, damage, 1)
        else:
            data[position:position] = draw(st.binary(max_size=16))
    return bytes(data)


FAST = settings(max_examples=200, deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


@FAST
@given(st.binary(max_size=2048))
def test_arbitrary_bytes(raw: bytes) -> None:
    _check(raw)


@FAST
@given(mutated())
def test_mutated_messages(raw: bytes) -> None:
    _check(raw)


@FAST
@given(st.text(max_size=300), st.text(max_size=300))
def test_arbitrary_header_and_body_text(header: str, body: str) -> None:
    raw = ("From: a@example.com\r\nSubject: " + header + "\r\n\r\n" + body).encode(
        "utf-8", "surrogatepass"
    )
    _check(raw)


def test_seeds_parse() -> None:
    for seed in SEEDS:
        assert isinstance(parse(seed), ParsedMail)
