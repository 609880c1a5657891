"""The parse worker (daemon/intake/parsing.py) reads a batch exactly as this process would,
large parts included: they are streamed into the attachment store by the worker, so what
comes back is small and the stored file is whole."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from daemon.blobs import BlobStore
from daemon.intake import spill
from daemon.intake.parse import Reading
from daemon.intake.parsed import ParsedMail
from daemon.intake.parsing import ParseAhead, parse_batch
from daemon.intake.sources import RawMail
from tests.unit.test_spill import BIG, file_part, mixed


def batch() -> tuple[list[RawMail], bytes]:
    payload = os.urandom(BIG * 2)
    big = mixed(b"Content-Type: text/plain\r\n\r\nthe log is attached",
                file_part(payload, "base64", "server.log"))
    plain = (b"From: b@example.com\r\nSubject: =?UTF-8?B?5omT5Y2w5py65LiN6IO955So?=\r\n"
             b"Content-Type: text/plain; charset=utf-8\r\n\r\n" + "打印机不能用".encode())
    return [RawMail(big, "file:big.eml"), RawMail(plain, "file:plain.eml"),
            RawMail(b"\x00\xff" * 10, "file:junk.eml")], payload


def summary(mails: list[ParsedMail | str]) -> list[object]:
    return [m if isinstance(m, str) else
            (m.subject, m.body_text, [(a.filename, a.size, a.sha256) for a in m.attachments])
            for m in mails]


def test_the_worker_streams_large_parts_into_the_store_and_reads_like_this_process(
        tmp_path: Path) -> None:
    raws, payload = batch()
    worker_store, local_store = BlobStore(tmp_path / "w"), BlobStore(tmp_path / "l")
    with ParseAhead(Reading(spill.StoreSink(worker_store)), workers=1) as ahead:
        from_worker = ahead.submit(raws).result()
    here = parse_batch(raws, Reading(spill.StoreSink(local_store)))
    assert summary(from_worker) == summary(here)
    big = from_worker[0]
    assert isinstance(big, ParsedMail)
    [attachment] = big.attachments
    digest = hashlib.sha256(payload).hexdigest()
    assert attachment.streamed is not None and attachment.payload == b""
    assert attachment.sha256 == digest and worker_store.get(digest) == payload
    assert isinstance(from_worker[1], ParsedMail) and "打印机" in from_worker[1].body_text


def test_without_a_worker_the_batch_is_read_here(tmp_path: Path) -> None:
    raws, payload = batch()
    store = BlobStore(tmp_path)
    with ParseAhead(Reading(spill.StoreSink(store)), workers=0) as ahead:
        mails = ahead.submit(raws).result()
    assert store.get(hashlib.sha256(payload).hexdigest()) == payload
    assert summary(mails) == summary(parse_batch(raws, Reading()))
