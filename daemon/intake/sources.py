"""Where raw mail comes from when it is not IMAP: .eml files, mbox files, Maildirs, stdin.

Each source yields :class:`RawMail` (the bytes exactly as stored, plus where they came from),
never decoded text: decoding is the parser's job, and doing it here destroys GBK and Big5 mail.

A file named on the command line is always read. In a plain folder (not a Maildir) only mail
files are taken: ``*.eml`` and mbox files (recognised by their first bytes, ``From ``); any
other file (a ``manifest.jsonl``, a ``summary.json``, a picture) is skipped and named through
the ``skipped`` callback, so an export folder never fills the quarantine with non-mail.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from daemon.errors import UsageError


@dataclass(frozen=True)
class RawMail:
    data: bytes
    origin: str  # "file:/path", "mbox:/path#3", "maildir:/path/cur/xyz", "stdin"
    # The envelope recipients the server was given (LMTP RCPT TO); empty when the source
    # does not know them (then only the MTA's Delivered-To and similar headers tell).
    envelope_to: tuple[str, ...] = ()


def _is_maildir(path: Path) -> bool:
    return path.is_dir() and (path / "cur").is_dir() and (path / "new").is_dir()


def _looks_like_mbox(path: Path) -> bool:
    with path.open("rb") as fh:
        return fh.read(5) == b"From "


MAIL_SUFFIXES = frozenset({".eml"})
SKIP_REASON = "not a mail file (a folder gives its *.eml and mbox files)"

Skipped = Callable[[Path, str], None]


def _takes(item: Path) -> bool:
    """Whether a file found in a plain folder is mail: ``*.eml``, or an mbox by content."""
    if not item.is_file() or item.name.startswith("."):
        return False
    return item.suffix.lower() in MAIL_SUFFIXES or _looks_like_mbox(item)


def _folder(path: Path, skipped: Skipped | None) -> Iterator[Path]:
    """The mail files of a plain folder, in order; the others are reported to ``skipped``."""
    for item in sorted(path.rglob("*")):
        if not item.is_file() or item.name.startswith("."):
            continue
        if _takes(item):
            yield item
        elif skipped is not None:
            skipped(item, SKIP_REASON)


_MBOX_QUOTED_FROM = re.compile(rb"^>(>*From )", re.MULTILINE)
# An envelope line as MTAs write it: "From sender Fri Oct 27 09:12:00 2023" (asctime date).
_ENVELOPE = re.compile(
    rb"^From \S*\s+(?:Mon|Tue|Wed|Thu|Fri|Sat|Sun) (?:Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|"
    rb"Nov|Dec) +\d{1,2} \d{1,2}:\d\d(?::\d\d)?")


def _is_envelope(line: bytes, after_blank: bool) -> bool:
    """A new message starts only at an envelope line at the top or after a blank line; a body
    line that merely begins with "From " (and was not quoted) never splits a mail."""
    return after_blank and line.startswith(b"From ") and _ENVELOPE.match(line) is not None


def iter_mbox(lines: Iterable[bytes]) -> Iterator[bytes]:
    """The messages of an mbox stream, envelope lines dropped and ``>From `` unquoted
    (mboxrd), so the bytes are those of the mail as sent and deduplicate against an IMAP
    copy. Streams: a large mbox never sits in memory whole."""
    current: list[bytes] = []
    after_blank = True
    started = False
    for line in lines:
        if _is_envelope(line, after_blank) or (not started and line.startswith(b"From ")):
            if started:
                yield _finish_mbox_message(current)
            current, started = [], True
        elif started:
            current.append(line)
        after_blank = line in (b"\n", b"\r\n")
    if started:
        yield _finish_mbox_message(current)


def _finish_mbox_message(lines: list[bytes]) -> bytes:
    if lines and lines[-1] in (b"\n", b"\r\n"):
        lines = lines[:-1]  # the separator before the next envelope line
    return _MBOX_QUOTED_FROM.sub(rb"\1", b"".join(lines))


def _mbox(path: Path) -> Iterator[RawMail]:
    with path.open("rb") as fh:
        for index, data in enumerate(iter_mbox(fh)):
            yield RawMail(data, f"mbox:{path}#{index + 1}")


def _maildir(path: Path) -> Iterator[RawMail]:
    for sub in ("new", "cur"):
        for item in sorted((path / sub).iterdir()):
            if item.is_file() and not item.name.startswith("."):
                yield RawMail(item.read_bytes(), f"maildir:{item}")


def _envelopes(lines: Iterable[bytes]) -> Iterator[None]:
    after_blank = True
    for index, line in enumerate(lines):
        if _is_envelope(line, after_blank) or (index == 0 and line.startswith(b"From ")):
            yield None
        after_blank = line in (b"\n", b"\r\n")


def count(paths: Sequence[str]) -> int | None:
    """How many messages the paths hold (for a progress bar); None when unknown (stdin)."""
    total = 0
    for name in paths:
        if name == "-":
            return None
        path = Path(name)
        if _is_maildir(path):
            total += sum(1 for sub in ("new", "cur") for p in (path / sub).iterdir()
                         if p.is_file() and not p.name.startswith("."))
        elif path.is_dir():
            for item in _folder(path, None):
                total += _count_file(item)
        elif path.is_file():
            total += _count_file(path)
    return total


def _count_file(path: Path) -> int:
    if _looks_like_mbox(path):
        with path.open("rb") as fh:
            return sum(1 for _ in _envelopes(fh))
    return 1


def read(paths: Sequence[str], skipped: Skipped | None = None) -> Iterator[RawMail]:
    """Every message under the given paths, in order; '-' reads one message from stdin.

    ``skipped(path, why)`` hears of each file of a plain folder that is not taken."""
    for name in paths:
        if name == "-":
            data = sys.stdin.buffer.read()
            if data.startswith(b"From "):  # an MTA's envelope line, or a whole mbox
                yield from _stdin_mbox(data)
            else:
                yield RawMail(data, "stdin")
            continue
        path = Path(name)
        if not path.exists():
            raise UsageError(f"{name}: no such file or folder")
        if _is_maildir(path):
            yield from _maildir(path)
        elif path.is_dir():
            for item in _folder(path, skipped):
                yield from _file(item)
        else:
            yield from _file(path)


def _file(path: Path) -> Iterator[RawMail]:
    if _looks_like_mbox(path):
        yield from _mbox(path)
    else:
        yield RawMail(path.read_bytes(), f"file:{path}")


def _stdin_mbox(data: bytes) -> Iterator[RawMail]:
    for index, message in enumerate(iter_mbox(data.splitlines(keepends=True))):
        yield RawMail(message, f"stdin#{index + 1}")
