"""Bounded memory per mail (issue 13.4, issue 15's RSS goal): each hostile mail is ingested by
the real ``ticketd ingest`` in a child process, whose own peak resident set (VmHWM:
interpreter, imports, the mail, the database driver) must stay under 250 MiB, within a CPU
bound, with nothing lost: the ticket is opened, a streamed attachment is in the store byte for
byte, and every cut is a line in the message's defects.

Before the MIME pre-pass (:mod:`daemon.intake.spill`): the 30 MB attachment peaked at 434 MiB
and the 50 MB body did not finish within 300 s.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path

import pytest
from sqlalchemy import select

from daemon.app import App
from daemon.blobs import BlobStore
from daemon.intake import limits, spill
from daemon.intake.parse import parse
from daemon.models import Attachment, Message
from tests.conftest import make_config
from tests.hostile import mails
from tests.hostile.measure import MIB, Measured, ingest_measured, write_site

MB = 1024 * 1024
PEAK_LIMIT = 250 * MIB

pytestmark = pytest.mark.slow


def ingest(tmp_path: Path, database_url: str, raw: bytes) -> tuple[Measured, App]:
    """The mail through ``ticketd ingest`` in a child; an App on the same database and store
    to look at what it wrote."""
    config = write_site(tmp_path, database_url)
    mail_file = tmp_path / "hostile.eml"
    mail_file.write_bytes(raw)
    measured = ingest_measured(config, mail_file)
    assert measured.status == 0, measured.stderr
    [result] = measured.results
    assert result["action"] == "created", result
    assert measured.peak_rss < PEAK_LIMIT, f"peak RSS {measured.peak_mib:.0f} MiB"
    app = App(make_config(tmp_path, database_url, attachments={
        "dir": str(tmp_path / "attachments"), "max_bytes": 40 * MB}))
    return measured, app


def stored(app: App) -> tuple[Message, list[Attachment]]:
    with app.db.transaction() as session:
        message = session.scalars(select(Message).where(Message.direction == "in")).one()
        session.expunge(message)
        files = list(session.scalars(select(Attachment).order_by(Attachment.id)))
        for item in files:
            session.expunge(item)
    return message, files


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(MB), b""):
            digest.update(chunk)
    return digest.hexdigest()


def test_a_30_mb_attachment_is_streamed_to_the_store_intact(
        tmp_path: Path, database_url: str) -> None:
    raw = mails.large_attachment(30 * MB)
    original = mails.attachment_payload(30 * MB)
    measured, app = ingest(tmp_path, database_url, raw)
    assert measured.cpu < 20, f"{measured.cpu:.1f} s"
    message, [attachment] = stored(app)
    assert (attachment.filename, attachment.size, attachment.skipped) == (
        "big.bin", len(original), None)
    assert attachment.sha256 == hashlib.sha256(original).hexdigest()
    path = BlobStore(app.attachments_dir).path_of(attachment.sha256)
    assert sha256_of(path) == attachment.sha256  # the stored bytes are the original's
    assert message.body_text == "see file"
    assert message.raw_sha256 == hashlib.sha256(raw).hexdigest()  # the raw kept whole
    app.close()


def test_a_50_mb_body_is_read_up_to_max_body_bytes(tmp_path: Path, database_url: str) -> None:
    raw = mails.large_body(50 * MB)
    measured, app = ingest(tmp_path, database_url, raw)
    assert measured.cpu < 40, f"{measured.cpu:.1f} s"  # before: > 300 s
    message, files = stored(app)
    assert files == []
    cap = app.config.mail.max_body_bytes
    assert cap * 0.95 < len(message.body_text) <= cap  # CRLF read as LF
    assert message.body_text.startswith("x" * 74 + "\n")
    assert message.raw is not None and len(message.raw) == len(raw)
    app.close()


@pytest.mark.parametrize(("name", "build", "defect"), [
    ("20,000 parts", lambda: mails.many_parts(20_000),
     f"MIME: more than {spill.MAX_PARTS:,} parts; read the first {spill.MAX_PARTS:,}, 19,000"),
    ("200-deep nesting", lambda: mails.deep_nesting(200), "MIME nesting deeper than 40 levels"),
    ("5 MB part header", lambda: mails.huge_part_header(5 * MB), "part 2: header block of 5,"),
], ids=["parts", "nesting", "part-header"])
def test_a_hostile_structure_is_read_within_its_caps(
        tmp_path: Path, database_url: str, name: str, build: Callable[[], bytes],
        defect: str) -> None:
    raw = build()
    measured, app = ingest(tmp_path, database_url, raw)
    assert measured.cpu < 20, f"{name}: {measured.cpu:.1f} s"
    message, files = stored(app)
    assert message.raw is not None and len(message.raw) == len(raw)
    defects = parse(raw).defects  # what `ticketd inspect` lists for the mail
    assert any(line.startswith(defect) for line in defects), defects
    if name == "5 MB part header":
        # the type and name after 5 MB of junk fields are still read
        assert [(f.filename, f.size) for f in files] == [("after-junk.bin", 27)]
        assert limits.MAX_PART_HEADER_BYTES < 100 * 1024
    if name == "20,000 parts":
        assert message.body_text.count("part") == spill.MAX_PARTS
    app.close()
