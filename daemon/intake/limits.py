"""Bounded cost per message: what intake reads of one mail.

Why this module exists: one hostile mail must never stall intake. A Subject of 100,000
encoded-words, a 10 MB header or 10,000 Cc addresses cost the decoders (ours, mail-parser's and
the standard library's) tens of seconds, some of it quadratic. :func:`bounded_headers` caps the
top-level header block *on the raw bytes, before anything parses them*, so every later step
reads a bounded input; the raw bytes themselves are kept whole (stored, hashed, quarantined),
and each cut is reported in the mail's ``defects``. The scan is one linear pass.

The caps (generous for real mail, far below what hurts):

* :data:`MAX_FIELD_BYTES` per header field (folded, as on the wire);
* :data:`MAX_ENCODED_WORDS` RFC 2047 encoded-words per field;
* :data:`MAX_ADDRESSES` addresses per address field (From, To, Cc, Reply-To, Sender, ...);
* :data:`MAX_FIELDS` header fields; past it only the first field of each name in
  :data:`KEEP` is still read (a Subject hidden behind 100,000 junk fields is found).

Below the top level, the MIME structure is capped by :mod:`daemon.intake.spill` (parts,
nesting, one part's header block: :func:`bounded_part_headers`), which also streams large
attachments to the store and cuts over-long body text before the parser sees them.

Pure (bytes in, bytes out): the parse worker runs it. The per-sender budget of new tickets
(``[mail] max_new_tickets_per_hour``) is :mod:`daemon.intake.budget`.
"""

from __future__ import annotations

import re

__all__ = [
    "KEEP",
    "MAX_ADDRESSES",
    "MAX_ENCODED_WORDS",
    "MAX_FIELDS",
    "MAX_FIELD_BYTES",
    "MAX_PART_HEADER_BYTES",
    "bounded_headers",
    "bounded_part_headers",
]

MAX_FIELD_BYTES = 16 * 1024
MAX_ENCODED_WORDS = 200
MAX_ADDRESSES = 100
MAX_FIELDS = 500
MAX_PART_HEADER_BYTES = 64 * 1024   # one MIME part's header block (real ones: under 1 KiB)

ADDRESS_FIELDS = frozenset({
    b"from", b"to", b"cc", b"bcc", b"reply-to", b"sender", b"resent-from", b"resent-to",
    b"resent-cc", b"resent-sender", b"disposition-notification-to", b"return-receipt-to",
})
# Read even past MAX_FIELDS (their first occurrence): what parse, the rules and trust read.
KEEP = frozenset({
    b"from", b"to", b"cc", b"reply-to", b"sender", b"subject", b"date", b"message-id",
    b"in-reply-to", b"references", b"mime-version", b"content-type",
    b"content-transfer-encoding", b"content-disposition", b"return-path", b"delivered-to",
    b"x-original-to", b"auto-submitted", b"precedence", b"list-id", b"list-unsubscribe",
    b"x-auto-response-suppress", b"x-autoreply", b"x-autorespond", b"x-failed-recipients",
    b"x-loop", b"authentication-results",
})

_HEADER_END = re.compile(rb"\r?\n\r?\n")
_ENCODED_WORD = re.compile(rb"=\?[^?\s]{1,64}\?[bBqQ]\?[^?\s]*\?=")
_NAME = re.compile(rb"([^:\s]{1,200})[ \t]*:")


def bounded_headers(raw: bytes, defects: list[str]) -> bytes:
    """``raw`` with its top-level header block cut to the caps (``raw`` itself when nothing
    is over them); each cut is appended to ``defects``. Linear in ``len(raw)``."""
    match = _HEADER_END.search(raw)
    end = match.start() if match else len(raw)
    block = raw[:end]
    if len(block) <= MAX_FIELD_BYTES and block.count(b"\n") < MAX_FIELDS \
            and block.count(b"=?") <= MAX_ENCODED_WORDS and block.count(b",") < MAX_ADDRESSES:
        return raw  # the common case: nothing can be over a cap
    fields = _fields(block)
    kept: list[bytes] = []
    seen_late: set[bytes] = set()
    dropped = 0
    changed = False
    for index, field in enumerate(fields):
        name = _name(field)
        if index >= MAX_FIELDS:
            if name not in KEEP or name in seen_late:
                dropped += 1
                continue
            seen_late.add(name)
        bounded = _bounded_field(field, name, defects)
        changed |= bounded is not field
        kept.append(bounded)
    if dropped:
        defects.append(f"headers: {len(fields):,} fields, read the first {MAX_FIELDS} "
                       f"(and the first of each known name after them); {dropped:,} dropped")
    if not dropped and not changed:
        return raw
    return b"\r\n".join(kept) + raw[end:]


def bounded_part_headers(block: bytes, where: str, defects: list[str]) -> bytes:
    """A MIME part's header block (its fields with their line ends, no blank line) cut to
    MAX_PART_HEADER_BYTES: whole fields in order while they fit, then only the first field of
    each ``Content-*`` name (what the part's type, encoding and file name are read from),
    each field also within MAX_FIELD_BYTES. ``block`` itself when it is within the cap."""
    if len(block) <= MAX_PART_HEADER_BYTES:
        return block
    kept: list[bytes] = []
    seen: set[bytes] = set()
    total = dropped = 0
    full = False
    scratch: list[str] = []  # one line in defects for the block, not one per field
    for field in _fields(block.rstrip(b"\r\n")):
        name = _name(field)
        bounded = _bounded_field(field, name, scratch)
        full = full or total + len(bounded) + 2 > MAX_PART_HEADER_BYTES
        if not full or (name.startswith(b"content-") and name not in seen):
            kept.append(bounded)
            seen.add(name)
            total += len(bounded) + 2
        else:
            dropped += 1
    defects.append(f"{where}: header block of {len(block):,} bytes, read {total:,} "
                   f"({dropped:,} fields dropped)")
    return b"\r\n".join(kept) + b"\r\n"


def _fields(block: bytes) -> list[bytes]:
    """The header fields of a block, each with its folded continuation lines."""
    fields: list[bytes] = []
    current: list[bytes] = []
    for raw_line in block.split(b"\n"):
        line = raw_line[:-1] if raw_line.endswith(b"\r") else raw_line
        if current and line[:1] in (b" ", b"\t"):
            current.append(line)
            continue
        if current:
            fields.append(b"\r\n".join(current))
        current = [line]
    if current:
        fields.append(b"\r\n".join(current))
    return fields


def _name(field: bytes) -> bytes:
    match = _NAME.match(field)
    return match.group(1).lower() if match else b""


def _label(name: bytes) -> str:
    return name.decode("ascii", "replace").title() or "(unnamed)"


def _bounded_field(field: bytes, name: bytes, defects: list[str]) -> bytes:
    """One field cut to MAX_FIELD_BYTES, MAX_ENCODED_WORDS and (address fields)
    MAX_ADDRESSES; ``field`` itself when it is within all three."""
    result = field
    if len(result) > MAX_FIELD_BYTES:
        cut = result[:MAX_FIELD_BYTES]
        space = max(cut.rfind(b" "), cut.rfind(b"\t"), cut.rfind(b","))
        if space > MAX_FIELD_BYTES // 2:
            cut = cut[:space]
        result = cut.rstrip(b"\r\n")
        defects.append(f"header {_label(name)}: {len(field):,} bytes, read the first "
                       f"{len(result):,}")
    if result.count(b"=?") > MAX_ENCODED_WORDS:
        words = 0
        for words, match in enumerate(_ENCODED_WORD.finditer(result), 1):
            if words == MAX_ENCODED_WORDS:
                total = words + sum(1 for _ in _ENCODED_WORD.finditer(result, match.end()))
                result = result[:match.end()]
                defects.append(f"header {_label(name)}: {total:,} encoded-words (in what was "
                               f"read), read the first {MAX_ENCODED_WORDS}")
                break
    if name in ADDRESS_FIELDS and result.count(b",") >= MAX_ADDRESSES:
        result = _first_addresses(result, name, defects)
    return result


def _first_addresses(field: bytes, name: bytes, defects: list[str]) -> bytes:
    """The field cut after its MAX_ADDRESSES-th top-level comma (outside quotes, angle
    brackets and comments): one pass over the bytes."""
    depth = 0
    quoted = False
    angle = False
    escaped = False
    commas = 0
    cut = -1
    for i, byte in enumerate(field):
        if escaped:
            escaped = False
        elif byte == 0x5C:  # backslash
            escaped = quoted or depth > 0
        elif quoted:
            quoted = byte != 0x22
        elif byte == 0x22:
            quoted = True
        elif byte == 0x28:  # (
            depth += 1
        elif byte == 0x29 and depth:
            depth -= 1
        elif depth:
            continue
        elif byte == 0x3C:  # <
            angle = True
        elif byte == 0x3E:
            angle = False
        elif byte == 0x2C and not angle:
            commas += 1
            if commas == MAX_ADDRESSES and cut < 0:
                cut = i
    if cut < 0:
        return field
    defects.append(f"header {_label(name)}: {commas + 1:,} addresses, read the first "
                   f"{MAX_ADDRESSES}")
    return field[:cut]


# --- new tickets per sender per hour ---------------------------------------------------
