"""Repair a damaged header block before the MIME parser sees it, and say what was repaired.

Why this module exists: the standard library parser ends the header block at the first line
that is neither ``Name: value`` nor a continuation (a line starting with whitespace), and reads
everything after it as the body. Two kinds of damage in real mail make it lose the From and
Subject that a mail client still shows:

* **A continuation line that lost its leading whitespace** (a long ``Received`` or ``To``
  refolded by a broken gateway): the line is joined to the header above it, as long as
  headers still follow it (a line ``Name: value`` with a name mail uses further down the
  block); otherwise it really is where the body starts, and the block ends there as before.
* **Junk before the first header**: a blank line, an mbox ``From `` envelope line (or its
  ``>From `` form), a line of text. Up to :data:`MAX_JUNK_LINES` such lines are dropped when
  a header block follows them. A UTF-8 byte order mark or whitespace before the first
  header is removed.

:func:`repair_header_block` returns the bytes to parse and one sentence per repair; the
original bytes stay what is hashed, deduplicated and quarantined. It reads each line of the
header block once (a look-ahead is computed in one backward pass), so its cost is linear in
the size of the header block.
"""

from __future__ import annotations

import re

__all__ = ["MAX_JUNK_LINES", "block_end", "repair_header_block"]

MAX_JUNK_LINES = 10
_BOM = b"\xef\xbb\xbf"
# A header field line: printable ASCII name without colon or space, then a colon.
_FIELD = re.compile(rb"([\x21-\x39\x3b-\x7e]+)[ \t]*:")
# Names that only a header block holds; a line naming one proves the block goes on.
_KNOWN = frozenset({
    b"from", b"to", b"cc", b"bcc", b"subject", b"date", b"message-id", b"received",
    b"return-path", b"mime-version", b"content-type", b"content-transfer-encoding",
    b"content-disposition", b"sender", b"reply-to", b"in-reply-to", b"references",
    b"delivered-to", b"user-agent", b"thread-topic", b"thread-index", b"importance",
    b"priority", b"precedence", b"auto-submitted", b"authentication-results",
    b"dkim-signature", b"domainkey-signature", b"envelope-to", b"organization",
})
_KNOWN_PREFIXES = (b"x-", b"list-", b"arc-", b"resent-", b"content-")


def _field_name(line: bytes) -> bytes | None:
    match = _FIELD.match(line)
    return match.group(1).lower() if match else None


def _known(name: bytes | None) -> bool:
    return name is not None and (name in _KNOWN or name.startswith(_KNOWN_PREFIXES))


def _blank(line: bytes) -> bool:
    return not line.strip(b"\r\n")


def _junk_prefix(lines: list[bytes]) -> int:
    """How many leading lines to drop: junk followed by a header block, else 0."""
    for index, line in enumerate(lines[: MAX_JUNK_LINES + 1]):
        if _field_name(line) is None:
            continue
        if index == 0:
            return 0
        return index if _known(_field_name(line)) else 0
    return 0


def repair_header_block(raw: bytes) -> tuple[bytes, list[str]]:
    """``raw`` with its header block repaired, and what was repaired (empty: unchanged)."""
    repairs: list[str] = []
    if raw.startswith(_BOM):
        raw = raw[len(_BOM):]
        repairs.append("header block: byte order mark before the first header removed")
    head_end = block_end(raw)
    lines = raw[:head_end].split(b"\n")
    if lines and lines[0][:1] in (b" ", b"\t") and _field_name(lines[0].lstrip()) is not None:
        lines[0] = lines[0].lstrip()
        repairs.append("header block: whitespace before the first header removed")
    skip = _junk_prefix(lines)
    if skip:
        shown = b" | ".join(x.strip() for x in lines[:skip])[:60].decode("ascii", "replace")
        repairs.append(f"header block: {skip} junk line{'s' if skip > 1 else ''} before the "
                       f"first header skipped ({shown or 'blank'})")
        lines = lines[skip:]
    # known_after[i]: a known header name appears at or after line i, before a blank line.
    known_after = [False] * (len(lines) + 1)
    for index in range(len(lines) - 1, -1, -1):
        if _blank(lines[index]):
            known_after[index] = False
        else:
            known_after[index] = known_after[index + 1] or _known(_field_name(lines[index]))
    joined = 0
    for index, line in enumerate(lines):
        if _blank(line):
            break
        if index == 0 or line[:1] in (b" ", b"\t") or _field_name(line) is not None:
            continue
        if not known_after[index + 1]:
            break  # the body starts here (a mail without the blank line)
        lines[index] = b" " + line
        joined += 1
    if joined:
        repairs.append(f"header block: {joined} continuation line{'s' if joined > 1 else ''} "
                       "without leading whitespace joined to the header above")
    if not repairs:
        return raw, []
    return b"\n".join(lines) + raw[head_end:], repairs


def block_end(raw: bytes) -> int:
    """Offset of the end of the header block: the first blank line after the first header
    (blank lines and junk before it are searched past, up to MAX_JUNK_LINES lines)."""
    position = 0
    for _ in range(MAX_JUNK_LINES + 1):
        end = raw.find(b"\n", position)
        if end < 0:
            return len(raw)
        if _field_name(raw[position:end + 1]) is not None:
            break
        position = end + 1
    blank = re.compile(rb"\n\r?\n")
    match = blank.search(raw, position)
    return match.start() + 1 if match else len(raw)
