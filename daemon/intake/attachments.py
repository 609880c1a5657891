"""Walk the MIME tree once and turn every non-body part into an :class:`Attachment`.

Why this module exists: which parts of a message are "the body" and which are "files" is the
one MIME decision every later step depends on, and real mail makes it hard:

* inline images referenced by ``cid:`` are attachments with a ``content_id``;
* file names arrive as RFC 2231 parameters (``filename*=gbk''%D6%D0``), as RFC 2047 words
  inside quotes (not allowed, sent anyway) or as raw 8-bit GBK bytes; all go through
  :mod:`daemon.intake.charsets`;
* a forwarded mail (``message/rfc822``) is kept whole as one ``.eml`` attachment, never
  flattened into the body;
* Outlook's ``winmail.dat`` (``application/ms-tnef``) is unpacked with tnefparse; when that
  fails the ``winmail.dat`` itself is kept;
* the signature part of ``multipart/signed`` (S/MIME or PGP) is kept as an attachment
  marked as a signature (:attr:`Attachment.signature`): nothing received is dropped, and
  nothing relays it to others;
* a text part with a file name (``Content-Disposition: inline; filename=notes.txt``, or
  ``name=`` on the Content-Type) is a file, not more body text, unless it is the whole
  message or one alternative of ``multipart/alternative`` / the root of ``multipart/related``
  (:func:`leaves`);
* parts without a name get one from their type (``attachment-1.pdf``, ``image-2.png``).

mail-parser's attachment list is not used: it names unnamed parts with random strings,
returns payloads as base64 text, lists ``smime.p7s`` as an attachment and does not unpack
TNEF. The walk here uses the standard library tree mail-parser already built.
"""

from __future__ import annotations

import hashlib
import mimetypes
import re
import unicodedata
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from email.message import Message

from tnefparse import TNEF

from daemon.blobs import Written
from daemon.intake.charsets import decode_bytes, decode_header_value, raw_bytes
from daemon.intake.parsed import SIGNATURE_TYPES, Attachment, CharsetNote

__all__ = [
    "SIGNATURE_TYPES",
    "AttachmentScan",
    "extract_attachments",
    "is_body_leaf",
    "is_body_part",
    "leaves",
    "safe_filename",
    "walk_leaves",
]

MAX_DEPTH = 40
MAX_FILENAME = 150

TNEF_TYPES = frozenset({"application/ms-tnef", "application/vnd.ms-tnef"})
BODY_TYPES = frozenset({"text/plain", "text/html"})

_EXTENSIONS = {
    "application/octet-stream": ".bin",
    "image/jpeg": ".jpg",
    "text/plain": ".txt",
    "text/html": ".html",
    "message/rfc822": ".eml",
    "message/global": ".eml",
    "message/delivery-status": ".txt",
    "message/disposition-notification": ".txt",
    "text/rfc822-headers": ".txt",
    "application/ms-tnef": ".dat",
}
_UNSAFE = re.compile(r'[<>:"|?*\x00-\x1f\x7f]')
_WINDOWS_RESERVED = re.compile(r"^(con|prn|aux|nul|com\d|lpt\d)(\..*)?$", re.IGNORECASE)


@dataclass(frozen=True)
class AttachmentScan:
    """The attachments of one message and what decoding their names needed."""

    attachments: tuple[Attachment, ...] = ()
    notes: tuple[CharsetNote, ...] = ()
    defects: tuple[str, ...] = ()


Streamed = Callable[[Message], Written | None]


def _in_tree(_part: Message) -> Written | None:
    return None


@dataclass
class _Collector:
    hints: tuple[str, ...]
    streamed: Streamed = _in_tree
    attachments: list[Attachment] = field(default_factory=list)
    notes: list[CharsetNote] = field(default_factory=list)
    defects: list[str] = field(default_factory=list)


def _walk(message: Message, defects: list[str] | None) -> Iterator[tuple[Message, str | None]]:
    """Leaf parts in document order, each with its parent's content type (None: the root)."""
    stack: list[tuple[Message, int, str | None]] = [(message, 0, None)]
    while stack:
        part, depth, parent = stack.pop()
        ctype = part.get_content_type()
        if ctype.startswith("message/") and part is not message:
            yield part, parent
            continue
        if not part.is_multipart():
            yield part, parent
            continue
        if depth >= MAX_DEPTH:
            if defects is not None:
                defects.append(f"MIME nesting deeper than {MAX_DEPTH} levels cut off")
            continue
        children = [child for child in part.get_payload() if isinstance(child, Message)]
        stack.extend((child, depth + 1, ctype) for child in reversed(children))


def walk_leaves(message: Message, defects: list[str] | None = None) -> Iterator[Message]:
    """Leaf parts in document order.

    Attached messages (``message/*`` with a parsed payload) are leaves: they are kept whole.
    Signature parts are leaves like any other. Nesting deeper than ``MAX_DEPTH`` is cut off
    and reported.
    """
    for part, _parent in _walk(message, defects):
        yield part


def _disposition(part: Message) -> str:
    value = part.get("content-disposition")
    if value is None:
        return ""
    return str(value).split(";", 1)[0].strip().lower()


def is_body_part(part: Message) -> bool:
    """A text/plain or text/html leaf that is not explicitly an attachment.

    A ``multipart/*`` leaf (its boundary never appears) is read as text too: its payload is
    whatever the sender wrote.
    """
    if part.get_content_maintype() == "multipart" and not part.is_multipart():
        return True
    return part.get_content_type() in BODY_TYPES and _disposition(part) != "attachment"


# Parents under which a named text part is still the body (one rendering of it).
_BODY_PARENTS = frozenset({"multipart/alternative", "multipart/related"})


def _named(part: Message) -> bool:
    for name, header in (("filename", "content-disposition"), ("name", "content-type")):
        value = part.get_param(name, header=header)
        if isinstance(value, tuple) or (isinstance(value, str) and value.strip()):
            return True
    return False


def leaves(message: Message, defects: list[str] | None = None) -> Iterator[tuple[Message, bool]]:
    """Every leaf in document order, and whether it is body text (else an attachment).

    A text part is body text unless its disposition is ``attachment``, or it has a file name
    and is neither the whole message nor an alternative rendering of the body: a mail client
    shows ``notes.txt`` sent inline as a file, and so do we.
    """
    for part, parent in _walk(message, defects):
        yield part, is_body_leaf(part, parent)


def is_body_leaf(part: Message, parent: str | None) -> bool:
    """Whether a leaf under a ``parent`` of this content type (None: the root) is body text;
    the rule of :func:`leaves`, also asked of a part's headers alone before parsing
    (:mod:`daemon.intake.spill`)."""
    body = is_body_part(part)
    if body and parent is not None and parent not in _BODY_PARENTS and _named(part):
        body = False
    return body


def _raw_header(part: Message, name: str) -> str | None:
    for key, value in part.raw_items():
        if key.lower() == name:
            return str(value)
    return None


def _param(part: Message, name: str, header: str, where: str, collector: _Collector) -> str | None:
    """A Content-Type / Content-Disposition parameter, decoded whatever way it was sent."""
    raw = _raw_header(part, header)
    if raw is None:
        return None
    view = part
    data = raw_bytes(raw)
    if not data.isascii():
        # Raw 8-bit parameter: decode the whole header first, then parse the parameters.
        text, note = decode_bytes(data, None, where, collector.hints)
        collector.notes.append(note)
        view = Message()
        view[header] = " ".join(text.split())
    value = view.get_param(name, header=header)
    if value is None:
        return None
    if isinstance(value, tuple):  # RFC 2231: (charset, language, latin-1 text)
        charset, _language, text = value
        encoded = str(text).encode("latin-1", "replace")
        decoded, note = decode_bytes(encoded, charset or None, where, collector.hints)
        if note.declared or note.repair:
            collector.notes.append(note)
        return decoded
    if "=?" in value or "\x1b" in value:  # RFC 2047 words, or raw ISO-2022-JP escapes
        result = decode_header_value(value, where, collector.hints)
        collector.notes.extend(result.notes)
        return result.text
    return value


def _filename(part: Message, where: str, collector: _Collector) -> str | None:
    for name, header in (("filename", "content-disposition"), ("name", "content-type")):
        value = _param(part, name, header, where, collector)
        if value and value.strip():
            return value.strip()
    return None


def extension_for(content_type: str) -> str:
    """A file extension for a content type (".bin" when nothing better is known)."""
    if content_type in _EXTENSIONS:
        return _EXTENSIONS[content_type]
    return mimetypes.guess_extension(content_type, strict=False) or ".bin"


def generated_name(content_type: str, index: int) -> str:
    """``attachment-1.pdf``, ``image-2.png``, ``message-3.eml``: a name for an unnamed part."""
    major = content_type.split("/", 1)[0]
    stem = {"image": "image", "message": "message"}.get(major, "attachment")
    return f"{stem}-{index}{extension_for(content_type)}"


def safe_filename(name: str, fallback: str = "attachment") -> str:
    """A file name safe on any file system: no separators, "..", control chars, leading dots.

    The last path component is kept (clients send ``C:\\Users\\me\\report.pdf``), length is
    capped at 150 characters keeping the extension, and the result is never empty.
    """
    text = unicodedata.normalize("NFC", name)
    text = "".join(ch for ch in text if unicodedata.category(ch) not in {"Cc", "Cf", "Cs"})
    components = [c for c in re.split(r"[/\\]+", text) if c.strip(" .")]
    text = components[-1] if components else ""
    text = _UNSAFE.sub("_", text)
    text = re.sub(r"\.{2,}", ".", text)
    text = " ".join(text.split())
    text = text.lstrip(". ").rstrip(". ")
    if not text:
        text = fallback
    if _WINDOWS_RESERVED.match(text):
        text = "_" + text
    return _truncate(text)


def _truncate(text: str) -> str:
    if len(text) <= MAX_FILENAME:
        return text
    stem, dot, ext = text.rpartition(".")
    if dot and stem and 0 < len(ext) <= 16 and ext.isalnum():
        return stem[: MAX_FILENAME - len(ext) - 1].rstrip(". ") + "." + ext
    return text[:MAX_FILENAME].rstrip(". ")


def _content_id(part: Message) -> str | None:
    value = part.get("content-id")
    if value is None:
        return None
    cleaned = str(value).strip().strip("<>").strip()
    return cleaned or None


def _as_bytes(message: Message) -> bytes:
    try:
        return message.as_bytes()
    except (ValueError, LookupError, UnicodeError, TypeError):
        return message.as_string().encode("utf-8", "surrogateescape")


def _payload(part: Message) -> bytes:
    if part.is_multipart():
        inner = part.get_payload()
        if not (isinstance(inner, list) and inner and isinstance(inner[0], Message)):
            return b""
        if part.get_content_type() == "message/rfc822":
            return _as_bytes(inner[0])
        # message/delivery-status and the like: the parser splits the fields into one
        # "message" per block (per-message, then one per recipient); keep every block.
        return b"\n".join(_as_bytes(block) for block in inner if isinstance(block, Message))
    data = part.get_payload(decode=True)
    return data if isinstance(data, bytes) else b""


def _add(
    collector: _Collector,
    filename: str | None,
    content_type: str,
    payload: bytes,
    *,
    inline: bool = False,
    content_id: str | None = None,
    origin: str = "mime",
    streamed: Written | None = None,
) -> None:
    index = len(collector.attachments) + 1
    name = filename or generated_name(content_type, index)
    collector.attachments.append(
        Attachment(
            filename=name,
            safe_filename=safe_filename(name, fallback=generated_name(content_type, index)),
            content_type=content_type,
            payload=payload,
            sha256=streamed.sha256 if streamed else hashlib.sha256(payload).hexdigest(),
            inline=inline,
            content_id=content_id,
            origin=origin,
            streamed=streamed,
        )
    )


def _attached_message_name(part: Message, collector: _Collector) -> str | None:
    inner = part.get_payload()
    if not (isinstance(inner, list) and inner and isinstance(inner[0], Message)):
        return None
    subject = _raw_header(inner[0], "subject")
    if not subject:
        return None
    text = decode_header_value(subject, "attached message subject", collector.hints).text
    return f"{text}.eml" if text else None


def _tnef_files(payload: bytes) -> list[tuple[str | None, bytes]] | None:
    """The files inside a winmail.dat, or None when it cannot be unpacked."""
    try:
        tnef = TNEF(payload, do_checksum=False)
    except Exception:  # tnefparse raises ValueError, IndexError, struct.error... on bad data
        return None
    files: list[tuple[str | None, bytes]] = []
    for item in tnef.attachments:
        data = item.data if isinstance(item.data, bytes) else b""
        try:
            name = item.long_filename()
        except (UnicodeDecodeError, AttributeError, TypeError):
            name = None
        if isinstance(name, bytes):
            name = name.decode("latin-1")
        name = name.strip("\x00").strip() if isinstance(name, str) else None
        files.append((name or None, data))
    return files or None


def _add_tnef(collector: _Collector, filename: str | None, payload: bytes) -> None:
    files = _tnef_files(payload)
    if files is None:
        collector.defects.append("winmail.dat could not be unpacked; kept as it is")
        _add(collector, filename or "winmail.dat", "application/ms-tnef", payload)
        return
    for name, data in files:
        guessed = mimetypes.guess_type(name or "", strict=False)[0] if name else None
        _add(collector, name, (guessed or "application/octet-stream").lower(), data,
             origin="tnef")


def _collect_part(part: Message, position: int, collector: _Collector) -> None:
    content_type = part.get_content_type()
    where = f"attachment name, part {position}"
    filename = _filename(part, where, collector)
    disposition = _disposition(part)
    content_id = _content_id(part)
    streamed = collector.streamed(part)
    payload = _payload(part) if streamed is None else b""
    if content_type.startswith("message/") and part.is_multipart():
        forwarded = content_type == "message/rfc822"
        name = filename or (_attached_message_name(part, collector) if forwarded else None)
        _add(collector, name, content_type, payload, origin="rfc822" if forwarded else "mime",
             streamed=streamed)
        return
    is_tnef = content_type in TNEF_TYPES or (filename or "").lower() == "winmail.dat"
    if is_tnef and streamed is not None:
        collector.defects.append(f"winmail.dat of {streamed.size:,} bytes not unpacked (too "
                                 "large to read whole); kept as it is")
        _add(collector, filename or "winmail.dat", "application/ms-tnef", b"",
             streamed=streamed)
        return
    if is_tnef:
        _add_tnef(collector, filename, payload)
        return
    inline = disposition == "inline" or (content_id is not None and disposition != "attachment")
    _add(collector, filename, content_type, payload, inline=inline, content_id=content_id,
         streamed=streamed)


def extract_attachments(message: Message, hints: Iterable[str] = (),
                        streamed: Streamed = _in_tree) -> AttachmentScan:
    """Every attachment of ``message`` (inline images, files, attached mail, TNEF contents).

    ``streamed(part)``: what was streamed to the store in place of a part's payload before
    parsing (:mod:`daemon.intake.spill`); None for a part whose payload is in the tree."""
    collector = _Collector(hints=tuple(hints), streamed=streamed)
    for position, (part, body) in enumerate(leaves(message, collector.defects), start=1):
        if body:
            continue
        _collect_part(part, position, collector)
    notes = tuple(dict.fromkeys(collector.notes))
    return AttachmentScan(tuple(collector.attachments), notes, tuple(collector.defects))
