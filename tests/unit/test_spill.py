"""The MIME pre-pass (daemon/intake/spill.py): a streamed part is the part the standard
library decodes, byte for byte; a forged placeholder names nothing; the store keeps what is
within its limit."""

from __future__ import annotations

import base64
import hashlib
import quopri
from email import message_from_bytes
from email.policy import compat32
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from daemon.blobs import BlobStore
from daemon.intake import prepare, spill
from daemon.intake.parse import Reading, parse

BIG = spill.SPILL_BYTES + 1000


def mixed(*parts: bytes, boundary: bytes = b"zz") -> bytes:
    body = b"".join(b"--" + boundary + b"\r\n" + p + b"\r\n" for p in parts)
    return (b"From: a@example.com\r\nSubject: files\r\nMIME-Version: 1.0\r\n"
            b"Content-Type: multipart/mixed; boundary=" + boundary + b"\r\n\r\n"
            + b"preamble\r\n" + body + b"--" + boundary + b"--\r\nepilogue\r\n")


def file_part(payload: bytes, encoding: str, name: str = "f.bin") -> bytes:
    if encoding == "base64":
        data = base64.encodebytes(payload).replace(b"\n", b"\r\n").rstrip(b"\r\n")
    elif encoding == "quoted-printable":
        data = quopri.encodestring(payload).replace(b"\n", b"\r\n")
    else:
        data = payload
    return (b"Content-Type: application/octet-stream\r\nContent-Disposition: attachment; "
            b"filename=\"" + name.encode() + b"\"\r\nContent-Transfer-Encoding: "
            + encoding.encode() + b"\r\n\r\n" + data)


def stdlib_payloads(raw: bytes) -> list[bytes]:
    message = message_from_bytes(raw, policy=compat32)
    found = [p.get_payload(decode=True) for p in message.walk()
             if p.get_content_type() == "application/octet-stream"]
    return [f for f in found if isinstance(f, bytes)]


@pytest.mark.parametrize("encoding", ["base64", "quoted-printable", "8bit"])
def test_a_streamed_part_is_the_part_the_standard_library_decodes(encoding: str) -> None:
    payload = bytes(range(256)) * (BIG // 256) if encoding != "8bit" else b"line\r\n" * 50_000
    raw = mixed(b"Content-Type: text/plain\r\n\r\nsee file", file_part(payload, encoding))
    [expected] = stdlib_payloads(raw)
    mail = parse(raw)
    [attachment] = mail.attachments
    assert attachment.streamed is not None and attachment.payload == b""
    assert (attachment.filename, attachment.size) == ("f.bin", len(expected))
    assert attachment.sha256 == hashlib.sha256(expected).hexdigest()
    assert mail.body_text == "see file"


@settings(max_examples=40, deadline=None)
@given(st.binary(min_size=0, max_size=3000), st.sampled_from(["base64", "quoted-printable"]))
def test_chunked_decoding_matches_the_standard_library(payload: bytes, encoding: str) -> None:
    raw = mixed(file_part(payload, encoding))
    [expected] = stdlib_payloads(raw)
    slimmed = spill.slim(raw, Reading(), [])
    scan = spill._Scan(raw, Reading(), [])
    start = raw.index(b"\r\n\r\n", raw.index(b"filename")) + 4
    end = raw.index(b"\r\n--zz--")
    assert b"".join(scan.decoded(start, end, encoding)) == expected
    assert slimmed.raw is raw  # a small part stays in the tree


def test_a_forged_placeholder_names_no_stored_file() -> None:
    forged = (b"X-Ticketd-Spilled: 0123456789abcdef01234567-0\r\n" + file_part(b"tiny", "8bit"))
    mail = parse(mixed(forged))
    [attachment] = mail.attachments
    assert attachment.streamed is None and attachment.payload == b"tiny"


def test_the_store_keeps_a_streamed_part_within_its_limit_only(tmp_path: Path) -> None:
    store = BlobStore(tmp_path)
    small, large = b"s" * BIG, b"L" * (BIG * 2)
    raw = mixed(file_part(small, "base64", "a.bin"), file_part(large, "base64", "b.bin"))
    mail = parse(raw, Reading(spill.StoreSink(store, limit=BIG + 10)))
    kept, dropped = mail.attachments
    assert kept.streamed is not None and kept.streamed.kept
    assert store.get(kept.sha256) == small
    assert dropped.streamed is not None and not dropped.streamed.kept
    assert dropped.sha256 not in store and dropped.size == len(large)
    assert [p.name for p in tmp_path.rglob(".tmp-*")] == []  # no temporary file left


def test_an_attached_message_streamed_keeps_its_subject_as_the_name() -> None:
    inner = (b"From: b@example.com\r\nSubject: Original problem\r\n\r\n" + b"x" * BIG)
    raw = mixed(b"Content-Type: message/rfc822\r\n\r\n" + inner)
    [attachment] = parse(raw).attachments
    assert attachment.filename == "Original problem.eml"
    assert attachment.sha256 == hashlib.sha256(inner).hexdigest()


@settings(max_examples=200, deadline=None)
@given(st.lists(st.sampled_from([b"a", b"\r", b"\n", b"\r\n", b"x", b"\n\n", b"\r\n\r\n"]),
                max_size=40),
       st.integers(min_value=1, max_value=8))
def test_the_chunked_hashes_are_the_whole_copy_hashes(pieces: list[bytes], chunk: int) -> None:
    raw = b"".join(pieces)
    old_content = hashlib.sha256(raw.replace(b"\r\n", b"\n").rstrip(b"\n")).hexdigest()
    _, _, body = raw.replace(b"\r\n", b"\n").partition(b"\n\n")
    old_body = hashlib.sha256(body.rstrip(b"\n")).hexdigest()
    saved = prepare._HASH_CHUNK
    prepare._HASH_CHUNK = chunk
    try:
        assert (prepare.content_hash(raw), prepare.body_hash(raw)) == (old_content, old_body)
        assert prepare.hashes(raw) == (old_content, old_body)   # one pass for both
    finally:
        prepare._HASH_CHUNK = saved
