"""The parse worker (daemon/intake/parsing.py) reads a batch exactly as this process would,
large parts included: they are streamed into the attachment store by the worker, so what
comes back is small and the stored file is whole."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

from daemon.blobs import BlobStore
from daemon.classify import Reader
from daemon.config import from_mapping
from daemon.intake import rules, spill
from daemon.intake.parse import Reading
from daemon.intake.parsed import ParsedMail
from daemon.intake.parsing import ParseAhead, Parsed, parse_batch
from daemon.intake.prepare import Prepared, Preparing, conclude, parse_or_reason
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


CONFIG = from_mapping({"support": {"address": "support@corp.example"},
                       "database": {"url": "sqlite://"}}, where="test", base=Path("."))


def how(reading: Reading | None = None) -> Preparing:
    return Preparing(reading or Reading(),
                     rules.RuleContext(own_addresses=frozenset({"support@corp.example"}),
                                       loop_header="X-Ticketd-Loop",
                                       loop_value="support@corp.example"),
                     Reader.from_config(CONFIG))


def summary(mails: list[Parsed]) -> list[object]:
    out: list[object] = []
    for item in mails:
        m = item.mail if isinstance(item, Prepared) else item
        out.append(m if isinstance(m, str) else
                   (m.subject, m.body_text, [(a.filename, a.size, a.sha256)
                                             for a in m.attachments]))
    return out


def test_the_worker_streams_large_parts_into_the_store_and_reads_like_this_process(
        tmp_path: Path) -> None:
    raws, payload = batch()
    worker_store, local_store = BlobStore(tmp_path / "w"), BlobStore(tmp_path / "l")
    with ParseAhead(how(Reading(spill.StoreSink(worker_store))), workers=1) as ahead:
        assert ahead.wait_ready(timeout=120)
        pending = ahead.submit(raws)
        assert pending.in_worker
        from_worker = pending.result()
    here = parse_batch(raws, how(Reading(spill.StoreSink(local_store))))
    assert summary(from_worker) == summary(here)
    assert from_worker[:2] == here[:2]   # hashes, rule hits, classification: all equal
    big = from_worker[0]
    assert isinstance(big, Prepared)
    [attachment] = big.mail.attachments
    digest = hashlib.sha256(payload).hexdigest()
    assert attachment.streamed is not None and attachment.payload == b""
    assert attachment.sha256 == digest and worker_store.get(digest) == payload
    plain = from_worker[1]
    assert isinstance(plain, Prepared) and "打印机" in plain.mail.body_text


def test_without_a_worker_the_batch_is_read_here(tmp_path: Path) -> None:
    raws, payload = batch()
    store = BlobStore(tmp_path)
    with ParseAhead(how(Reading(spill.StoreSink(store))), workers=0) as ahead:
        pending = ahead.submit(raws)
        assert not pending.in_worker
        mails = pending.result()
    assert store.get(hashlib.sha256(payload).hexdigest()) == payload
    assert summary(mails) == summary(parse_batch(raws, how()))


def test_until_the_worker_has_started_a_batch_is_read_here(tmp_path: Path) -> None:
    raws, _ = batch()
    with ParseAhead(how(), workers=1) as ahead:
        # the first submit comes before a spawned interpreter can have imported anything
        first = ahead.submit(raws)
        assert ahead.wait_ready(timeout=120)
        later = ahead.submit(raws)
        assert not first.in_worker and later.in_worker
        assert first.result() == later.result()


NEW = ("From: Li Lei <li.lei@example.com>\r\nTo: support@corp.example\r\n"
       "Subject: VPN 无法连接，影响全组\r\nDate: Tue, 03 Nov 2026 09:15:00 +0800\r\n"
       "Message-ID: <n1@example.com>\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n"
       "系统: VPN\r\n今天上午开始无法连接，全组都受影响，很紧急。\r\n").encode()
REPLY = NEW.replace(b"Message-ID: <n1@example.com>",
                    b"Message-ID: <r1@example.com>\r\nIn-Reply-To: <n1@example.com>")
UNDATED = NEW.replace(b"Date: Tue, 03 Nov 2026 09:15:00 +0800\r\n", b"")
AUTO = NEW.replace(b"Message-ID: <n1@example.com>",
                   b"Message-ID: <a1@example.com>\r\nAuto-Submitted: auto-replied")


def test_a_new_request_is_classified_ahead_with_its_own_date_and_nothing_else_is() -> None:
    prepared = parse_batch([RawMail(r, f"t:{n}") for n, r in
                            enumerate((NEW, REPLY, UNDATED, AUTO))], how())
    new, reply, undated, auto = prepared
    assert isinstance(new, Prepared) and new.found is not None and new.hit is None
    mail = new.mail
    assert new.found == how().reader.classify(mail.subject, mail.new_text, now=mail.date)
    assert new.found.fields  # the VPN system is read
    # a reply is threaded first (no classification ahead); an undated mail is classified
    # with the clock by intake itself; an auto-reply is no ticket at all
    assert isinstance(reply, Prepared) and reply.found is None
    assert isinstance(undated, Prepared) and undated.found is None
    assert isinstance(auto, Prepared) and auto.hit is not None and auto.found is None
    for raw, item in zip((NEW, REPLY, UNDATED, AUTO), prepared, strict=True):
        assert isinstance(item, Prepared)
        assert item == conclude(raw, item.mail, how(), classify=True)


def test_a_mail_whose_conclusions_fail_comes_back_bare_for_intake_to_judge() -> None:
    broken = Preparing(Reading(), None, Reader.from_config(CONFIG))  # type: ignore[arg-type]
    [item] = parse_batch([RawMail(NEW, "t:new")], broken)
    assert isinstance(item, ParsedMail)
    assert item == parse_or_reason(RawMail(NEW, "t:new"))


def test_the_worker_imports_no_database_code() -> None:
    """The spawned worker imports what parsing needs: SQLAlchemy alone would double its
    start-up (~0.25 s of CPU) before it parses anything."""
    probe = ("import sys, daemon.intake.parsing; "
             "print(sorted(m for m in sys.modules if m.split('.')[0] == 'sqlalchemy'))")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                         check=True, cwd=Path(__file__).resolve().parents[2])
    assert out.stdout.strip() == "[]"


def test_the_composing_worker_imports_no_database_code() -> None:
    """The composing worker (forkserver) imports the module of the function it runs: with
    the app, SQLAlchemy and the models it took ~0.6 s of CPU to start, on the core that also
    parses (issue 15); writing a mail needs templates and MIME only."""
    probe = ("import sys, daemon.replies.composers; "
             "print(sorted(m for m in sys.modules if m.split('.')[0] == 'sqlalchemy' "
             "or m in ('daemon.app', 'daemon.db', 'daemon.models')))")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                         check=True, cwd=Path(__file__).resolve().parents[2])
    assert out.stdout.strip() == "[]"


def test_a_batch_asked_to_be_read_here_never_goes_to_the_worker(tmp_path: Path) -> None:
    """IMAP reads a batch of big attachments here: handing it over would copy it twice."""
    raws, payload = batch()
    store = BlobStore(tmp_path)
    with ParseAhead(how(Reading(spill.StoreSink(store))), workers=1) as ahead:
        assert ahead.wait_ready(timeout=120)
        pending = ahead.submit(raws, here=True)
        assert not pending.in_worker
        mails = pending.result()
    assert store.get(hashlib.sha256(payload).hexdigest()) == payload
    assert summary(mails) == summary(parse_batch(raws, how()))
