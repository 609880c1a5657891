"""What intake concludes from a message's bytes alone, before the database is asked.

Parsing, the two hashes deduplication keys on, the rules (auto-reply, bounce, list, loop) and,
for a mail that looks like a new request, its classification (category, team, priority,
fields): all pure, bytes and config in, values out. On a backlog the parse worker
(:mod:`daemon.intake.parsing`) does them for the next batch while this process writes the
current one; :func:`daemon.intake.pipeline.decide` then asks the database only what the
database knows. Every value here is what intake would compute itself: a mail handed in
without them (a single LMTP delivery, ``ticketd inspect``) gets them in this process.
"""

from __future__ import annotations

import hashlib
import logging
import re
from collections.abc import Iterator
from dataclasses import dataclass

from daemon.classify import Classification, Reader
from daemon.errors import Quarantine
from daemon.intake import rules
from daemon.intake.parse import Reading, parse
from daemon.intake.parsed import ParsedMail
from daemon.intake.sources import RawMail

log = logging.getLogger("ticketd.intake")


@dataclass(frozen=True)
class Preparing:
    """What the pure steps need of the config: how to read a mail, what the rules know about
    us, how requests are classified."""

    reading: Reading
    rules: rules.RuleContext
    reader: Reader


@dataclass(frozen=True)
class Prepared:
    """One parsed message with its pure conclusions."""

    mail: ParsedMail
    content_hash: str
    body_hash: str
    hit: rules.RuleHit | None
    # The classification a new ticket would get, read with the mail's own Date; None when
    # not computed (a reply, a mail without a Date: intake classifies it itself if needed).
    found: Classification | None = None


def content_hash(raw: bytes) -> str:
    """sha256 of the message with line endings normalised (IMAP CRLF vs. file LF)."""
    return _normalised_sha256(raw, 0)


def body_hash(raw: bytes) -> str:
    """sha256 of the body alone: the same mail seen in two folders differs only in headers."""
    # The body starts after the first LF LF of the normalised bytes: LF, optional CR, LF.
    found = _BLANK_LINE.search(raw)
    return _normalised_sha256(raw, found.end() if found else len(raw))


_BLANK_LINE = re.compile(rb"\n\r?\n")
_HASH_CHUNK = 1024 * 1024


def _normalised_chunks(raw: bytes, start: int) -> Iterator[bytes]:
    """``raw[start:]`` with CRLF as LF and trailing LFs dropped, in chunks: a 50 MB mail is
    hashed without the two or three whole copies ``replace`` and ``rstrip`` made."""
    view = memoryview(raw)
    end = _content_end(raw, start)
    at = start
    while at < end:
        cut = min(at + _HASH_CHUNK, end)
        if cut < end and raw[cut - 1] == 0x0D and raw[cut] == 0x0A:
            cut += 1  # never split a CRLF
        yield bytes(view[at:cut]).replace(b"\r\n", b"\n")
        at = cut


def _content_end(raw: bytes, start: int) -> int:
    """Where ``raw[start:]`` ends without its trailing line ends (LF or CRLF)."""
    end = len(raw)
    while end > start and raw[end - 1] == 0x0A:
        end -= 2 if end - 2 >= start and raw[end - 2] == 0x0D else 1
    return end


def _normalised_sha256(raw: bytes, start: int) -> str:
    digest = hashlib.sha256()
    for chunk in _normalised_chunks(raw, start):
        digest.update(chunk)
    return digest.hexdigest()


def hashes(raw: bytes) -> tuple[str, str]:
    """(:func:`content_hash`, :func:`body_hash`) with the body's line endings normalised once
    for both: that copy costs four times the hashing itself."""
    found = _BLANK_LINE.search(raw)
    start = found.end() if found else len(raw)
    if _content_end(raw, start) == start:  # no body but line ends: the trailing line ends
        return content_hash(raw), _normalised_sha256(raw, start)  # reach into the header
    # The body starts right after a LF, so no CRLF spans the cut, and the trailing line
    # ends are the body's: the header block and the body normalised apart are the whole
    # mail normalised.
    head = raw[:start].replace(b"\r\n", b"\n")
    whole_digest, body_digest = hashlib.sha256(head), hashlib.sha256()
    for chunk in _normalised_chunks(raw, start):
        whole_digest.update(chunk)
        body_digest.update(chunk)
    return whole_digest.hexdigest(), body_digest.hexdigest()


def parse_or_reason(raw: RawMail, reading: Reading | None = None) -> ParsedMail | str:
    """The parsed mail, or why it must be quarantined (the parser never takes intake down)."""
    try:
        return parse(raw.data, reading)
    except Quarantine as exc:
        return exc.reason
    except Exception as exc:
        log.exception("parser crashed on %s", raw.origin)
        return f"parser error: {type(exc).__name__}: {exc}"


def prepare(raw: RawMail, how: Preparing) -> Prepared | ParsedMail | str:
    """Parse ``raw`` and draw every pure conclusion, or say why it must be quarantined. A
    mail whose conclusions fail comes back bare: intake draws them again inside its safety
    net, which quarantines the mail with the step that failed."""
    mail = parse_or_reason(raw, how.reading)
    if isinstance(mail, str):
        return mail
    try:
        return conclude(raw.data, mail, how, classify=True)
    except Exception:
        return mail


def conclude(raw: bytes, mail: ParsedMail, how: Preparing, *, classify: bool) -> Prepared:
    """The pure conclusions on an already parsed ``mail``. ``classify``: also classify it when
    it looks like a new request (no rule hit, answers nothing)."""
    hit = rules.first_match(mail, how.rules)
    found = None
    if classify and hit is None and mail.date is not None and looks_new(mail):
        found = how.reader.classify(mail.subject, mail.new_text or mail.body_text,
                                    now=mail.date)
    return Prepared(mail, *hashes(raw), hit, found)


def looks_new(mail: ParsedMail) -> bool:
    """A mail that names no earlier mail: most likely a new request (the threader decides;
    this only says whether classifying it ahead is likely to be of use)."""
    return not mail.in_reply_to and not mail.references
