"""Before any parser sees a mail: stream its large attachments to the store, cut over-long
body text, and cap its MIME structure, all on the raw bytes.

Why this module exists: the standard library's parser holds a mail as ``str`` (twice the
bytes for 8-bit data), mail-parser copies every part again, and decoding makes one more copy
of each payload, so a 50 MB body or a 30 MB attachment cost 450-550 MB of memory. Here one
linear scan over the bytes finds the MIME structure the way the standard library's parser
does (header blocks end at the first blank line or at the first line that is not a header,
delimiter lines are ``--boundary`` with optional ``--``, spaces and tabs; the line break before
a delimiter belongs to it) and writes a slimmer copy of the mail for the parser:

* an **attachment** leaf larger than :data:`SPILL_BYTES` (encoded), or any once the mail's
  attachments left in the copy reach :data:`IN_TREE_BYTES`, is decoded in chunks
  (base64, quoted-printable, or as it is) straight into the :class:`PartSink` (the
  attachment store, content-addressed by sha256) and replaced by a placeholder that keeps
  its header block, so its name, type and disposition are read as before, behind a first
  field ``X-Ticketd-Spilled: <token>``. The token is random per mail, so a sender cannot
  forge a placeholder that names someone else's file. An attached message
  (``message/rfc822``) keeps its own header block in the placeholder (its Subject names the
  ``.eml``). An Outlook ``winmail.dat`` up to :data:`TNEF_IN_TREE` stays in the copy to be
  unpacked; a larger one is kept as it is.
* **body text** (the parts :func:`~daemon.intake.attachments.is_body_leaf` reads as text)
  is read up to ``[mail] max_body_bytes`` decoded bytes in all; the rest is cut at a line end
  and the cut is a line in ``defects``.
* **structure**: at most :data:`MAX_PARTS` parts are read (the rest of each multipart is
  closed off), multiparts nest at most ``MAX_DEPTH`` deep (deeper content is left out), one
  part's header block is cut to ``limits.MAX_PART_HEADER_BYTES``, a preamble or epilogue over
  :data:`MAX_TEXT_AROUND` is left out. Each cut is a line in ``defects``.

The raw bytes themselves are never changed: they are what is stored, hashed, deduplicated
and quarantined. A mail within every cap is passed on as the same object (no copy).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
import secrets
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from email.message import Message
from email.parser import BytesHeaderParser
from email.policy import compat32
from itertools import takewhile
from typing import Protocol

from daemon.blobs import BlobStore, Written
from daemon.config import Config, MailConfig
from daemon.intake.attachments import MAX_DEPTH, TNEF_TYPES, is_body_leaf
from daemon.intake.headerblock import block_end, repair_header_block
from daemon.intake.limits import bounded_headers, bounded_part_headers

__all__ = [
    "IN_TREE_BYTES",
    "MAX_BODY_BYTES",
    "MAX_PARTS",
    "SPILL_BYTES",
    "SPILL_HEADER",
    "DigestSink",
    "PartSink",
    "PartWriter",
    "Reading",
    "Slimmed",
    "StoreSink",
    "reading_for",
    "slim",
]

SPILL_BYTES = 256 * 1024          # an attachment larger than this (encoded) is streamed out
IN_TREE_BYTES = 2 * 1024 * 1024   # encoded attachment bytes left to the parser per mail
TNEF_IN_TREE = 8 * 1024 * 1024    # a winmail.dat up to this size is unpacked (needs it whole)
MAX_BODY_BYTES = MailConfig().max_body_bytes  # [mail] max_body_bytes, when no config is given
MAX_PARTS = 1000
MAX_TEXT_AROUND = 64 * 1024       # a multipart's preamble or epilogue
CHUNK = 1024 * 1024
SPILL_HEADER = "X-Ticketd-Spilled"

_IDENTITY = frozenset({"", "7bit", "8bit", "binary"})
_DECODABLE = _IDENTITY | {"base64", "quoted-printable"}
_MESSAGES = frozenset({"message/rfc822", "message/global"})
# The standard library's test for a header line (email.feedparser.headerRE).
_HEADER_LINE = re.compile(rb"From |[\x21-\x39\x3b-\x7e]*:|[\t ]")
_BASE64_ALPHABET = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
_NOT_BASE64 = bytes(b for b in range(256) if b not in _BASE64_ALPHABET)


class PartWriter(Protocol):
    """Takes one part's decoded bytes in chunks."""

    def write(self, chunk: bytes) -> None: ...

    def close(self) -> Written: ...

    def abort(self) -> None: ...


class PartSink(Protocol):
    """Where streamed parts go: the attachment store (intake) or nowhere (inspect)."""

    def open(self) -> PartWriter: ...


@dataclass(frozen=True)
class StoreSink:
    """The real sink: the content-addressed store; a part over ``limit`` bytes is hashed and
    counted, not kept (intake records it as skipped, as ``[attachments] max_bytes`` says)."""

    store: BlobStore
    limit: int | None = None

    def open(self) -> PartWriter:
        return self.store.writer(self.limit)


class _Digest:
    def __init__(self) -> None:
        self._hash = hashlib.sha256()
        self._size = 0

    def write(self, chunk: bytes) -> None:
        self._hash.update(chunk)
        self._size += len(chunk)

    def close(self) -> Written:
        return Written(self._hash.hexdigest(), self._size, kept=False)

    def abort(self) -> None:
        """Nothing was kept."""


class DigestSink:
    """The sink that keeps nothing: size and sha256 only (``ticketd inspect``, tests)."""

    def open(self) -> PartWriter:
        return _Digest()


@dataclass(frozen=True)
class Reading:
    """How one mail is read: where streamed parts go, how much body text is kept."""

    sink: PartSink = field(default_factory=DigestSink)
    max_body_bytes: int = MAX_BODY_BYTES


def reading_for(config: Config, store: BlobStore | None = None) -> Reading:
    """The config's reading: into ``store`` (parts over ``[attachments] max_bytes`` hashed,
    not kept), or into nothing (``ticketd inspect``)."""
    sink: PartSink = StoreSink(store, config.attachments.max_bytes) if store is not None \
        else DigestSink()
    return Reading(sink, config.mail.max_body_bytes)


@dataclass(frozen=True)
class Slimmed:
    """The bytes for the parser, and the parts streamed out of them."""

    raw: bytes
    parts: Mapping[str, Written] = field(default_factory=dict)
    root: Written | None = None   # the whole mail was one attachment, streamed out

    def streamed(self, part: Message, root: Message) -> Written | None:
        """What was streamed out in place of ``part`` (None: it is in the tree)."""
        if part is root:
            return self.root
        token = part.get(SPILL_HEADER)
        return self.parts.get(str(token)) if token is not None else None


def slim(raw: bytes, reading: Reading, defects: list[str]) -> Slimmed:
    """``raw`` with its large parts streamed to ``reading.sink`` and its structure capped
    (``raw`` itself when nothing is over a cap); each cut is appended to ``defects``."""
    scan = _Scan(raw, reading, defects)
    scan.top()
    if scan.skipped:
        defects.append(f"MIME: more than {MAX_PARTS:,} parts; read the first {MAX_PARTS:,}, "
                       f"{scan.skipped:,} more not read")
    return Slimmed(scan.result(), scan.spilled, scan.root)


def _header_message(block: bytes, parent: str | None) -> Message:
    message = BytesHeaderParser(policy=compat32).parsebytes(block)
    if parent == "multipart/digest":
        message.set_default_type("message/rfc822")
    return message


def _transfer_encoding(headers: Message) -> str:
    # As Message.get_payload(decode=True) reads it (compat32).
    return str(headers.get("content-transfer-encoding", "")).lower()


class _Scan:
    """One pass over the raw bytes, in document order, writing the slimmer copy."""

    def __init__(self, raw: bytes, reading: Reading, defects: list[str]) -> None:
        self.raw = raw
        self.view = memoryview(raw)
        self.reading = reading
        self.defects = defects
        self.token = secrets.token_hex(12)
        self.out: list[bytes | memoryview] = []
        self.done = 0                 # raw[:done] is already in out
        self.changed = False
        self.parts = 0
        self.skipped = 0
        self.body_left = reading.max_body_bytes
        self.in_tree = 0
        self.spilled: dict[str, Written] = {}
        self.root: Written | None = None

    # -- output

    def replace(self, start: int, end: int, data: bytes) -> None:
        """raw[start:end] becomes ``data`` in the copy (calls come in document order)."""
        self.out.append(self.view[self.done:start])
        self.out.append(data)
        self.done = end
        self.changed = True

    def result(self) -> bytes:
        if not self.changed:
            return self.raw
        self.out.append(self.view[self.done:])
        return b"".join(self.out)

    # -- structure

    def header_end(self, start: int, end: int) -> tuple[int, int]:
        """(end of the header block, start of the body) of the part at ``start``."""
        raw = self.raw
        pos = start
        while pos < end:
            newline = raw.find(b"\n", pos, end)
            line_end = end if newline < 0 else newline + 1
            if raw.startswith((b"\r\n", b"\n"), pos, end):
                return pos, line_end
            if not _HEADER_LINE.match(raw, pos, line_end):
                return pos, pos  # a line that is no header: the body starts here
            pos = line_end
        return end, end

    def top(self) -> None:
        raw = self.raw
        head_end = block_end(raw)
        body = head_end
        if raw.startswith(b"\r\n", head_end):
            body += 2
        elif raw.startswith(b"\n", head_end):
            body += 1
        # Read the type as the parser will: after the header caps and repairs.
        view, _ = repair_header_block(bounded_headers(raw[:head_end], []))
        headers = _header_message(view, None)
        self.content(headers, 0, head_end, b"", False, body, len(raw), None, 0, root=True)

    def content(self, headers: Message, start: int, head_end: int, head: bytes, cut: bool,
                body: int, end: int, parent: str | None, depth: int, *, root: bool = False,
                inner: bool = False) -> None:
        """One part: its header block ``head`` as read (``cut``: shorter than raw[start:
        head_end]), its body raw[body:end]. ``inner``: inside an attached message, caps
        only (the message is kept whole)."""
        ctype = headers.get_content_type()
        encoding = _transfer_encoding(headers)
        spill = not (root or inner) and self.spills(headers, ctype, encoding, end - body,
                                                     parent)
        if cut and not spill:
            self.replace(start, head_end, head)
        if spill:
            self.spill(start, end, head, body, encoding, inner_head=ctype in _MESSAGES)
        elif headers.get_content_maintype() == "multipart":
            boundary = headers.get_boundary()
            if boundary:
                self.multipart(body, end, boundary, ctype, depth, inner)
            elif not inner:
                self.body_text(body, end, encoding, ctype)  # the parser reads it as text
        elif ctype in _MESSAGES and encoding in _IDENTITY:
            self.message(body, end, depth + 1, inner=inner or not root)
        elif inner:
            return
        elif is_body_leaf(headers, parent):
            self.body_text(body, end, encoding, ctype)
        elif root and self.spills(headers, ctype, encoding, end - body, parent):
            self.root = self.stream(body, end, encoding)
            self.replace(body, end, b"")
        else:
            self.in_tree += end - body

    def spills(self, headers: Message, ctype: str, encoding: str, size: int,
               parent: str | None) -> bool:
        """Whether a part is streamed out: an attachment over SPILL_BYTES, or any once the
        attachments left to the parser reach IN_TREE_BYTES (a small winmail.dat stays)."""
        if headers.get_content_maintype() == "multipart" or encoding not in _DECODABLE:
            return False
        if ctype in _MESSAGES and encoding in _IDENTITY:
            return size > SPILL_BYTES  # an attached message: kept whole unless large
        if is_body_leaf(headers, parent) or (ctype in TNEF_TYPES and size <= TNEF_IN_TREE):
            return False
        return size > SPILL_BYTES or self.in_tree + size > IN_TREE_BYTES

    def message(self, start: int, end: int, depth: int, *, inner: bool) -> None:
        """An attached message read in place: its header block, then its content."""
        head_end, body = self.header_end(start, end)
        head, cut = self.part_head(start, head_end, "attached message")
        self.content(_header_message(head, None), start, head_end, head, cut, body, end, None,
                     depth, inner=inner)

    def part_head(self, start: int, head_end: int, where: str) -> tuple[bytes, bool]:
        """A part's header block as read (cut to the cap), and whether it was cut."""
        block = self.raw[start:head_end]
        bounded = bounded_part_headers(block, where, self.defects)
        return bounded, bounded is not block

    def multipart(self, start: int, end: int, boundary: str, ctype: str, depth: int,
                  inner: bool) -> None:
        delimiter = b"--" + boundary.encode("ascii", "surrogateescape")
        if depth >= MAX_DEPTH:
            # What attachments.walk_leaves reports; the parser sees one empty part instead.
            self.defects.append(f"MIME nesting deeper than {MAX_DEPTH} levels cut off")
            self.replace(start, end, delimiter + b"\r\n\r\n" + delimiter + b"--\r\n")
            return
        child: int | None = None
        delimiters = self.delimiters(start, end, delimiter)
        for line, before, after, closing in delimiters:
            if child is None:
                self.around(start, line - before, "preamble")
            else:
                self.part(child, line - before, ctype, depth + 1, inner)
            if closing:
                self.around(after, end, "epilogue")
                return
            if self.parts >= MAX_PARTS:
                self.skipped += 1 + sum(1 for _ in takewhile(lambda d: not d[3], delimiters))
                self.replace(line, end, delimiter + b"--\r\n")
                return
            child = after
        if child is not None:
            self.part(child, end, ctype, depth + 1, inner)  # no closing delimiter
        elif not inner:
            self.body_text(start, end, "", ctype)  # no delimiter at all: read as text

    def delimiters(self, start: int, end: int,
                   delimiter: bytes) -> Iterator[tuple[int, int, int, bool]]:
        """(line start, length of the line break before it, start of the next line, closing)
        of each delimiter line in raw[start:end]."""
        raw = self.raw
        pos = start
        while True:
            found = raw.find(delimiter, pos, end)
            if found < 0:
                return
            pos = found + 1
            if found != start and raw[found - 1] not in (0x0A, 0x0D):
                continue
            rest = found + len(delimiter)
            closing = raw.startswith(b"--", rest, end)
            rest += 2 if closing else 0
            while rest < end and raw[rest] in (0x20, 0x09):
                rest += 1
            if rest < end and raw[rest] not in (0x0A, 0x0D):
                continue  # more text on the line: not a delimiter
            after = rest + 2 if raw.startswith(b"\r\n", rest, end) else min(rest + 1, end)
            before = 0
            if found > start:
                before = 2 if raw.startswith(b"\r\n", found - 2, found) and found - 2 >= start \
                    else 1
            yield found, before, after, closing
            pos = after

    def part(self, start: int, end: int, parent: str, depth: int, inner: bool) -> None:
        self.parts += 1
        head_end, body = self.header_end(start, end)
        head, cut = self.part_head(start, head_end, f"part {self.parts}")
        self.content(_header_message(head, parent), start, head_end, head, cut, body, end,
                     parent, depth, inner=inner)

    def around(self, start: int, end: int, what: str) -> None:
        if end - start > MAX_TEXT_AROUND:
            self.defects.append(f"MIME: a {what} of {end - start:,} bytes not read")
            self.replace(start, end, b"")

    # -- payloads

    def body_text(self, start: int, end: int, encoding: str, ctype: str) -> None:
        """Body text within what is left of ``max_body_bytes`` (decoded never exceeds
        encoded), else cut at a line end."""
        size = end - start
        if size <= self.body_left:
            self.body_left -= size
            return
        if encoding == "base64":
            kept = self.first_decoded(start, end, encoding, self.body_left)
            data = base64.encodebytes(kept)
        else:
            cut = self.raw.rfind(b"\n", start, start + self.body_left)
            cut = cut + 1 if cut >= start else start + self.body_left
            data = kept = self.raw[start:cut]
        self.defects.append(f"body: a {ctype} part of {size:,} bytes, read the first "
                            f"{len(kept):,} ([mail] max_body_bytes = "
                            f"{self.reading.max_body_bytes:,})")
        self.body_left = 0
        self.replace(start, end, data)

    def first_decoded(self, start: int, end: int, encoding: str, limit: int) -> bytes:
        pieces: list[bytes] = []
        total = 0
        for chunk in self.decoded(start, end, encoding):
            pieces.append(chunk)
            total += len(chunk)
            if total >= limit:
                break
        data = b"".join(pieces)[:limit]
        line_end = data.rfind(b"\n")
        return data[:line_end + 1] if line_end >= len(data) * 3 // 4 else data

    def decoded(self, start: int, end: int, encoding: str) -> Iterator[bytes]:
        """raw[start:end] decoded in chunks, as ``get_payload(decode=True)`` decodes it."""
        raw = self.raw
        if encoding == "base64":
            carry = b""
            for at in range(start, end, CHUNK):
                piece = carry + raw[at:min(at + CHUNK, end)].translate(None, _NOT_BASE64)
                usable = len(piece) - len(piece) % 4
                carry = piece[usable:]
                if usable:
                    yield binascii.a2b_base64(piece[:usable])
            if len(carry) > 1:
                yield binascii.a2b_base64(carry + b"=" * (-len(carry) % 4))
        elif encoding == "quoted-printable":
            at = start
            while at < end:
                cut = raw.find(b"\n", min(at + CHUNK, end), end)
                cut = end if cut < 0 else cut + 1
                yield binascii.a2b_qp(raw[at:cut])
                at = cut
        else:
            for at in range(start, end, CHUNK):
                yield raw[at:min(at + CHUNK, end)]

    def stream(self, start: int, end: int, encoding: str) -> Written:
        writer = self.reading.sink.open()
        try:
            for chunk in self.decoded(start, end, encoding):
                writer.write(chunk)
        except BaseException:
            writer.abort()
            raise
        return writer.close()

    def spill(self, start: int, end: int, head: bytes, body: int, encoding: str, *,
              inner_head: bool) -> None:
        """Stream the part's payload out; the copy keeps its header block behind our token
        (and, for an attached message, that message's own header block)."""
        written = self.stream(body, end, encoding)
        token = f"{self.token}-{len(self.spilled)}"
        self.spilled[token] = written
        inside = b""
        if inner_head:
            inner_end, _ = self.header_end(body, end)
            inside = bounded_part_headers(self.raw[body:inner_end], "attached message",
                                          self.defects) + b"\r\n"
        if head and not head.endswith(b"\n"):
            head += b"\r\n"
        self.replace(start, end, f"{SPILL_HEADER}: {token}\r\n".encode() + head + b"\r\n"
                     + inside)
