"""Hostile mails, generated (never copied): one builder per abuse of issue 13.

Each builder returns CRLF bytes. Sizes are parameters so the suite can run a scaled-down copy
and ``bench/hostile.py`` the full size the issue measured.
"""

from __future__ import annotations

import base64

HEAD = (b"To: support@corp.example\r\nDate: Fri, 27 Oct 2023 09:00:00 +0800\r\n"
        b"MIME-Version: 1.0\r\n")


def _mail(headers: bytes, body: bytes = b"hello\r\n", *, sender: bytes = b"a@evil.example",
          message_id: bytes = b"<hostile@evil.example>",
          content_type: bytes = b"text/plain; charset=utf-8") -> bytes:
    return (b"From: " + sender + b"\r\n" + HEAD + b"Message-ID: " + message_id + b"\r\n"
            + headers + b"Content-Type: " + content_type + b"\r\n\r\n" + body)


def encoded_word_subject(words: int = 100_000) -> bytes:
    """A Subject of ``words`` RFC 2047 encoded-words (each one Chinese character, base64)."""
    word = b"=?utf-8?b?" + base64.b64encode("票".encode()) + b"?="
    folded = b"\r\n ".join(word for _ in range(words))
    return _mail(b"Subject: " + folded + b"\r\n")


def long_subject(size: int = 10 * 1024 * 1024) -> bytes:
    """A plain Subject of ``size`` bytes, folded every 76 characters as clients fold."""
    line = b"A" * 75
    folded = b"\r\n ".join(line for _ in range(size // 76))
    return _mail(b"Subject: " + folded + b"\r\n")


def many_addresses(count: int = 10_000, header: bytes = b"Cc") -> bytes:
    """``count`` addresses in one From or Cc header."""
    addrs = b",\r\n ".join(b"user%d <user%d@many.example>" % (i, i) for i in range(count))
    if header.lower() == b"from":
        return _mail(b"Subject: many senders\r\n", sender=addrs)
    return _mail(b"Subject: many recipients\r\n" + header + b": " + addrs + b"\r\n")


def large_body(size: int = 50 * 1024 * 1024) -> bytes:
    """A text body of ``size`` bytes in 76-character lines."""
    line = b"x" * 74 + b"\r\n"
    return _mail(b"Subject: big body\r\n", line * (size // len(line)))


def large_attachment(size: int = 30 * 1024 * 1024) -> bytes:
    """One base64 attachment of ``size`` bytes (not compressible noise: a counter pattern)."""
    payload = bytes(range(256)) * (size // 256)
    encoded = base64.encodebytes(payload).replace(b"\n", b"\r\n")
    boundary = b"b-hostile"
    body = (b"--" + boundary + b"\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nsee file\r\n"
            b"--" + boundary + b"\r\nContent-Type: application/octet-stream\r\n"
            b"Content-Disposition: attachment; filename=\"big.bin\"\r\n"
            b"Content-Transfer-Encoding: base64\r\n\r\n" + encoded + b"--" + boundary
            + b"--\r\n")
    return _mail(b"Subject: big file\r\n", body,
                 content_type=b"multipart/mixed; boundary=\"" + boundary + b"\"")


def many_headers(count: int = 100_000) -> bytes:
    """``count`` distinct X- headers."""
    extra = b"".join(b"X-Junk-%d: value %d\r\n" % (i, i) for i in range(count))
    return _mail(b"Subject: many headers\r\n" + extra)


def new_request(i: int, sender: str = "flood@evil.example") -> bytes:
    """An ordinary new request; the i-th of a flood from one sender."""
    return _mail(b"Subject: request %d\r\n" % i, sender=sender.encode(),
                 message_id=b"<flood.%d.%s>" % (i, sender.replace("@", ".").encode()))


def many_parts(count: int = 20_000) -> bytes:
    """A multipart/mixed of ``count`` tiny text parts."""
    boundary = b"b-many"
    part = (b"--" + boundary + b"\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n"
            b"part\r\n")
    body = part * count + b"--" + boundary + b"--\r\n"
    return _mail(b"Subject: many parts\r\n", body,
                 content_type=b"multipart/mixed; boundary=\"" + boundary + b"\"")


def deep_nesting(depth: int = 200, leaf: bytes = b"deep text\r\n") -> bytes:
    """``depth`` multipart/mixed parts, each holding the next, a text leaf at the bottom."""
    inner = b"Content-Type: text/plain; charset=utf-8\r\n\r\n" + leaf
    for level in range(depth - 1, 0, -1):
        boundary = b"b-deep-%d" % level
        inner = (b"Content-Type: multipart/mixed; boundary=\"" + boundary + b"\"\r\n\r\n"
                 b"--" + boundary + b"\r\n" + inner + b"\r\n--" + boundary + b"--\r\n")
    boundary = b"b-deep-0"
    body = b"--" + boundary + b"\r\n" + inner + b"\r\n--" + boundary + b"--\r\n"
    return _mail(b"Subject: deep nesting\r\n", body,
                 content_type=b"multipart/mixed; boundary=\"" + boundary + b"\"")


def huge_part_header(size: int = 5 * 1024 * 1024) -> bytes:
    """A text body, then an attachment whose header block is ``size`` bytes of X- fields
    (its Content-Type and file name come after them)."""
    junk = b"".join(b"X-Pad-%d: %s\r\n" % (i, b"p" * 60) for i in range(size // 72))
    boundary = b"b-header"
    body = (b"--" + boundary + b"\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nsee file\r\n"
            b"--" + boundary + b"\r\n" + junk + b"Content-Type: application/octet-stream\r\n"
            b"Content-Disposition: attachment; filename=\"after-junk.bin\"\r\n"
            b"Content-Transfer-Encoding: base64\r\n\r\n"
            + base64.encodebytes(b"payload after a huge header").replace(b"\n", b"\r\n")
            + b"--" + boundary + b"--\r\n")
    return _mail(b"Subject: huge part header\r\n", body,
                 content_type=b"multipart/mixed; boundary=\"" + boundary + b"\"")


def attachment_payload(size: int) -> bytes:
    """The bytes :func:`large_attachment` attaches (to compare with what was stored)."""
    return bytes(range(256)) * (size // 256)
