"""Where raw mail comes from when it is not IMAP: .eml files, mbox files, Maildirs, stdin.

Each source yields :class:`RawMail` (the bytes exactly as stored, plus where they came from),
never decoded text: decoding is the parser's job, and doing it here destroys GBK and Big5 mail.
"""

from __future__ import annotations

import mailbox as stdlib_mailbox
import re
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from daemon.errors import UsageError


@dataclass(frozen=True)
class RawMail:
    data: bytes
    origin: str  # "file:/path", "mbox:/path#3", "maildir:/path/cur/xyz", "stdin"


def _is_maildir(path: Path) -> bool:
    return path.is_dir() and (path / "cur").is_dir() and (path / "new").is_dir()


def _looks_like_mbox(path: Path) -> bool:
    with path.open("rb") as fh:
        return fh.read(5) == b"From "


_MBOX_QUOTED_FROM = re.compile(rb"^>(>*From )", re.MULTILINE)


def _mbox(path: Path) -> Iterator[RawMail]:
    """Each message of an mbox, with the ``>From `` quoting of the format undone (mboxrd), so
    the bytes are those of the mail as sent and deduplicate against an IMAP copy."""
    box = stdlib_mailbox.mbox(path, create=False)
    try:
        for index, key in enumerate(box.iterkeys()):
            data = _MBOX_QUOTED_FROM.sub(rb"\1", box.get_bytes(key))
            yield RawMail(data, f"mbox:{path}#{index + 1}")
    finally:
        box.close()


def _maildir(path: Path) -> Iterator[RawMail]:
    for sub in ("new", "cur"):
        for item in sorted((path / sub).iterdir()):
            if item.is_file() and not item.name.startswith("."):
                yield RawMail(item.read_bytes(), f"maildir:{item}")


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
            total += sum(1 for p in path.rglob("*") if p.is_file() and not p.name.startswith("."))
        elif path.is_file() and _looks_like_mbox(path):
            box = stdlib_mailbox.mbox(path, create=False)
            total += len(box)
            box.close()
        else:
            total += 1
    return total


def read(paths: Sequence[str]) -> Iterator[RawMail]:
    """Every message under the given paths, in order; '-' reads one message from stdin."""
    for name in paths:
        if name == "-":
            data = sys.stdin.buffer.read()
            if data.startswith(b"From ") and b"\nFrom " in data:
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
            for item in sorted(path.rglob("*")):
                if item.is_file() and not item.name.startswith("."):
                    yield from _file(item)
        else:
            yield from _file(path)


def _file(path: Path) -> Iterator[RawMail]:
    if _looks_like_mbox(path):
        yield from _mbox(path)
    else:
        yield RawMail(path.read_bytes(), f"file:{path}")


def _stdin_mbox(data: bytes) -> Iterator[RawMail]:
    import tempfile

    with tempfile.NamedTemporaryFile(suffix=".mbox") as tmp:
        tmp.write(data)
        tmp.flush()
        for mail in _mbox(Path(tmp.name)):
            yield RawMail(mail.data, mail.origin.replace(f"mbox:{tmp.name}", "stdin"))
