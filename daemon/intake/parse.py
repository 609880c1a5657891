"""Turn the raw bytes of one message into the frozen :class:`ParsedMail`; pure, no I/O.

Why this module exists: everything after intake (rules, threader, pipeline, inspect) reads
one decoded, frozen object instead of a MIME tree. :func:`parse` never raises on mail, however
broken: missing headers become None or empty, and what the parser had to repair is listed in
``defects``. Only input that is not a mail at all (empty, no header, binary garbage, an
Outlook ``.msg`` file, MIME nested past any sane depth) raises
:class:`~daemon.errors.Quarantine` with the reason.

Division of labour. The standard-library tree (compat32, so undecodable bytes survive as
surrogates) is built as mail-parser (the design card's choice) builds it, with
``email.message_from_bytes``; a nesting bomb is refused, as mail-parser refuses it. The rest
of ``mailparser.parse_from_bytes`` is not called: it decodes every header, body and attachment
of the tree, a third of the time to parse a mail, and each of those is done better here (see
below). mail-parser parses address headers, where it is good: groups,
``undisclosed-recipients:;``, comments and garbage are handled and reported, and dates the
stdlib rejects. Measured on real mail (the flanker, talon and mail-parser corpora and the
CPython email test data), it falls short in these places, done here with the stdlib:

* **Charsets.** It decodes headers and bodies with the declared label and drops what fails
  (``errors="ignore"``) or falls back to UTF-8 with replacement characters: GBK text labelled
  gb2312, HKSCS in big5, windows-1252 labelled iso-8859-1, UTF-8 labelled Latin-1 and raw
  8-bit headers all lose characters. :mod:`daemon.intake.charsets` decodes from the raw bytes.
* **Dates.** It converts every date to UTC (the sender's offset is lost) and rejects a date
  without a zone; :func:`email.utils.parsedate_to_datetime` keeps the offset, and a zoneless
  date is read as UTC. mail-parser's parser remains the fallback for forms the stdlib rejects.
* **Attachments and bodies.** See :mod:`daemon.intake.attachments` and
  :mod:`daemon.intake.bodies` (random names for unnamed parts, base64 strings, signatures as
  attachments, no TNEF, HTML left as HTML).
* **Message-IDs.** It returns header text; ids are extracted here without angle brackets.
* **Damaged mail that people still read.** A header block cut by a continuation line that
  lost its whitespace, or with junk before the first header, is repaired first
  (:mod:`daemon.intake.headerblock`); an address item mail-parser rejects but a mail client
  reads (``Claudia.Shu@yahoo.com.``, ``Test test@example.com``, a bare ``MAILER-DAEMON``) is
  salvaged (:mod:`daemon.intake.senders`). Every repair is a line in ``defects``.
* **Undeclared bytes** in headers and file names are read after the body, so the charset the
  body declared or was found in (its language) is the first candidate for them.

Memory. Before any of this, :func:`daemon.intake.spill.slim` streams large attachments to the
``Reading``'s sink (the attachment store in intake), cuts over-long body text and caps the
MIME structure on the raw bytes, so neither parser ever holds a big payload: the cost of a mail
is its raw bytes plus a bounded amount.
"""

from __future__ import annotations

import hashlib
import logging
import re
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime
from email import message_from_bytes
from email.message import Message
from email.policy import compat32
from email.utils import parsedate_to_datetime
from functools import partial
from itertools import pairwise
from typing import TypeVar

from mailparser.dates import parse_mail_date
from mailparser.exceptions import MailParserError, MailParserRecursionError
from mailparser.utils import get_addresses

from daemon.errors import Quarantine
from daemon.intake.attachments import AttachmentScan, extract_attachments, walk_leaves
from daemon.intake.bodies import Body, extract_body
from daemon.intake.charsets import ENCODED_WORD, decode_bytes, decode_header_value, raw_bytes
from daemon.intake.headerblock import repair_header_block
from daemon.intake.limits import bounded_headers
from daemon.intake.parsed import Address, CharsetNote, ParsedMail, Report
from daemon.intake.senders import (
    MAIL_SYSTEM_NAMES,
    Salvaged,
    salvage,
    salvage_system_sender,
)
from daemon.intake.spill import Reading, slim

__all__ = ["Reading", "detect_language", "message_ids", "parse"]

log = logging.getLogger(__name__)
# mail-parser warns "Email content ... not handled" for every non-text part it meets: noise
# for us, since attachments.py walks those parts itself.
logging.getLogger("mailparser").setLevel(logging.ERROR)

_T = TypeVar("_T")

ReportParser = Callable[[Message], Report | None]


def _load_report_parser() -> ReportParser | None:
    """``reports.parse_report`` (another engineer's module); parsing works without it."""
    try:
        from daemon.intake.reports import parse_report
    except ImportError:  # pragma: no cover - only while reports.py does not exist yet
        return None
    return parse_report


_PARSE_REPORT = _load_report_parser()

# At least one of these must be present for bytes to count as a mail.
_MAIL_HEADERS = frozenset({
    "from", "to", "cc", "bcc", "subject", "date", "message-id", "received", "return-path",
    "mime-version", "content-type", "sender", "reply-to", "in-reply-to", "references",
    "delivered-to", "x-mailer", "user-agent", "content-transfer-encoding",
})
_OLE_MAGIC = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"
_ANGLE_ID = re.compile(r"<([^<>\s]+)>")
_BARE_ID = re.compile(r"[^\s<>,;()\"]+@[^\s<>,;()\"]+")
_CJK = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\U00020000-\U0002ebef]")
_LETTER = re.compile(r"[A-Za-z\u00c0-\u024f\u0370-\u03ff\u0400-\u04ff]")
_DOMAIN = re.compile(r"[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)+")
_ADDRESS_HEADERS = ("from", "to", "cc", "reply-to")
_NO_ADDRESSES: tuple[Address, ...] = ()
_NO_HEADERS: tuple[dict[str, tuple[str, ...]], tuple[CharsetNote, ...]] = ({}, ())


def parse(raw: bytes, reading: Reading | None = None) -> ParsedMail:
    """Decode one message. Raises :class:`Quarantine` only when ``raw`` is not a mail.

    ``reading``: where large attachments are streamed and how much body text is read
    (default: streamed parts are hashed and counted, not kept)."""
    defects: list[str] = []
    slimmed = _guarded("MIME scan", lambda: slim(raw, reading or Reading(), defects), None,
                       defects)
    parsed = slimmed.raw if slimmed is not None else raw
    message = _build(bounded_headers(parsed, defects), defects)  # caps: intake/limits.py
    defects.extend(_parser_defects(message))
    declared = _charset_hints(message)
    body = _guarded("body", lambda: extract_body(message, declared), _EMPTY_BODY, defects)
    # Unlabelled bytes in headers and file names are read in the charset the message
    # declares elsewhere, then in the one its body turned out to be in (its language).
    hints = tuple(dict.fromkeys((*declared, *(n.used for n in body.notes
                                              if n.used != "us-ascii"))))
    headers, header_notes = _guarded("headers", lambda: _headers(message, hints),
                                     _NO_HEADERS, defects)
    streamed = partial(slimmed.streamed, root=message) if slimmed is not None else None
    scan = _guarded("attachments", lambda: extract_attachments(message, hints, streamed)
                    if streamed else extract_attachments(message, hints),
                    AttachmentScan(), defects)
    defects.extend(scan.defects)
    from_, to, cc, reply_to = (
        _guarded(name, partial(_addresses, message, name, hints, defects), _NO_ADDRESSES, defects)
        for name in _ADDRESS_HEADERS
    )
    if not from_:
        # A mail without a usable From still has an author: RFC 5322 Sender, then Reply-To.
        sender = _guarded("sender", partial(_addresses, message, "sender", hints, defects),
                          _NO_ADDRESSES, defects)
        from_ = sender or reply_to
        if from_:
            source = "Sender" if sender else "Reply-To"
            defects.append(f"no usable From: author taken from {source}")
    subject = headers.get("subject", ("",))[0]
    return _text_safe(ParsedMail(
        message_id=_first(message_ids(_joined(headers, "message-id"))),
        in_reply_to=message_ids(_joined(headers, "in-reply-to")),
        references=message_ids(_joined(headers, "references")),
        from_=from_[0] if from_ else None,
        to=to,
        cc=cc,
        reply_to=reply_to,
        subject=subject,
        date=_date(headers.get("date", ()), defects),
        headers=headers,
        content_type=message.get_content_type(),
        body_text=body.text,
        body_html=body.html,
        new_text=body.new_text,
        quoted_text=body.quoted_text,
        attachments=scan.attachments,
        charsets=tuple(dict.fromkeys((*header_notes, *body.notes, *scan.notes))),
        language=detect_language(f"{subject}\n{body.new_text}"),
        raw_sha256=hashlib.sha256(raw).hexdigest(),
        raw_size=len(raw),
        report=_guarded("report", lambda: _report(message), None, defects),
        defects=tuple(dict.fromkeys(defects)),
    ))


_EMPTY_BODY = Body(text="", html=None, new_text="", quoted_text="")
MAX_ID_LENGTH = 900


def _no_nul(text: str) -> str:
    """NUL has no place in text and PostgreSQL refuses it; U+FFFD keeps the evidence."""
    return text.replace("\x00", "\ufffd") if "\x00" in text else text


def _text_safe(mail: ParsedMail) -> ParsedMail:
    """The same mail with NUL removed from every decoded text (the raw bytes are kept as is)."""
    def addr(a: Address) -> Address:
        return Address(_no_nul(a.name), _no_nul(a.email))

    return replace(
        mail,
        from_=addr(mail.from_) if mail.from_ else None,
        to=tuple(addr(a) for a in mail.to), cc=tuple(addr(a) for a in mail.cc),
        reply_to=tuple(addr(a) for a in mail.reply_to),
        subject=_no_nul(mail.subject),
        headers={k: tuple(_no_nul(v) for v in vs) for k, vs in mail.headers.items()},
        body_text=_no_nul(mail.body_text),
        body_html=_no_nul(mail.body_html) if mail.body_html is not None else None,
        new_text=_no_nul(mail.new_text), quoted_text=_no_nul(mail.quoted_text),
        attachments=tuple(replace(a, filename=_no_nul(a.filename),
                                  safe_filename=_no_nul(a.safe_filename).replace("\ufffd", "_"))
                          for a in mail.attachments),
    )


# --- building the tree --------------------------------------------------------------------


def _tree(raw: bytes, defects: list[str]) -> Message:
    """The stdlib (compat32) tree: what ``mailparser.parse_from_bytes`` builds its result
    from (``email.message_from_bytes``), without the rest of that call, which decodes every
    header, body and attachment again only for this module to do it better (a third of the
    time to parse a mail, all of it thrown away). A nesting bomb (RecursionError) is fatal,
    as in mail-parser's own guard."""
    message = message_from_bytes(raw, policy=compat32)
    if not isinstance(message, Message):
        raise MailParserError("no message structure")
    return message


def _build(raw: bytes, defects: list[str]) -> Message:
    """The stdlib tree of ``raw`` via mail-parser, or Quarantine when it is not a mail."""
    if not raw.strip():
        raise Quarantine("empty message")
    if raw.startswith(_OLE_MAGIC):
        raise Quarantine("not RFC 5322 mail: an Outlook .msg (OLE) file")
    raw, repairs = repair_header_block(raw)
    defects.extend(repairs)
    try:
        message = _tree(raw, defects)
    except (MailParserRecursionError, RecursionError) as exc:
        raise Quarantine("cannot be parsed: MIME nesting too deep") from exc
    except MailParserError as exc:
        raise Quarantine(f"cannot be parsed: {exc}") from exc
    names = {str(name).lower() for name in message}
    if not names & _MAIL_HEADERS:
        reason = "no header" if not names else "no RFC 5322 header (" + ", ".join(
            sorted(names)[:3]) + ")"
        raise Quarantine(f"not a mail: {reason}")
    return message


def _parser_defects(message: Message) -> list[str]:
    defects: list[str] = []
    for part in walk_leaves(message, defects):
        for defect in getattr(part, "defects", ()):
            defects.append(f"{part.get_content_type()}: {type(defect).__name__}")
    for defect in getattr(message, "defects", ()):
        defects.append(f"{message.get_content_type()}: {type(defect).__name__}")
    return defects


def _guarded(step: str, action: Callable[[], _T], default: _T, defects: list[str]) -> _T:
    """Run one decoding step; a bug or a library failure degrades it, never the whole parse."""
    try:
        return action()
    except RecursionError:
        defects.append(f"{step}: nesting too deep, skipped")
    except Exception as exc:  # the contract: parse() raises only Quarantine
        log.warning("intake.parse step %s failed: %r", step, exc, exc_info=True)
        defects.append(f"{step}: {type(exc).__name__}: {exc}"[:300])
    return default


def _charset_hints(message: Message) -> tuple[str, ...]:
    """Charsets the message declares for its parts, to decode its unlabelled bytes."""
    found: dict[str, None] = {}
    for part in walk_leaves(message):
        charset = part.get_content_charset()
        if charset and charset not in {"us-ascii", "ascii"}:
            found.setdefault(charset, None)
    return tuple(found)


# --- headers ------------------------------------------------------------------------------


def _headers(
    message: Message, hints: tuple[str, ...]
) -> tuple[dict[str, tuple[str, ...]], tuple[CharsetNote, ...]]:
    values: dict[str, list[str]] = {}
    notes: list[CharsetNote] = []
    for name, value in message.raw_items():
        key = str(name).strip().lower()
        decoded = decode_header_value(str(value), key, hints)
        values.setdefault(key, []).append(decoded.text)
        notes.extend(decoded.notes)
    return {k: tuple(v) for k, v in values.items()}, tuple(notes)


def _joined(headers: dict[str, tuple[str, ...]], name: str) -> str:
    return " ".join(headers.get(name, ()))


def _first(values: tuple[str, ...]) -> str | None:
    return values[0] if values else None


def message_ids(value: str) -> tuple[str, ...]:
    """Message-IDs in a header value, without angle brackets, in order, without repeats.

    Bracketed ids win; bare ``local@domain`` tokens are read only when there is none.
    """
    found = _ANGLE_ID.findall(value) or _BARE_ID.findall(value)
    if not found and value.strip() and len(value.split()) == 1:
        found = [value.strip()]
    # An id longer than MAX_ID_LENGTH is junk (RFC 5322 lines stop at 998): ignored, so the
    # mail is keyed by its bytes instead and every database can index what is kept.
    return tuple(dict.fromkeys(i.strip() for i in found
                               if i.strip() and len(i.strip()) <= MAX_ID_LENGTH))


def _raw_values(message: Message, name: str) -> list[str]:
    return [str(v) for k, v in message.raw_items() if str(k).strip().lower() == name]


def _addresses(
    message: Message, name: str, hints: tuple[str, ...], defects: list[str]
) -> tuple[Address, ...]:
    result: list[Address] = []
    for value in _raw_values(message, name):
        data = raw_bytes(value)
        text = value
        if not data.isascii():
            text = decode_bytes(data, None, name, hints)[0]
        text = _quote_encoded_words(" ".join(text.split()))
        diagnostics: list[dict[str, object]] = []
        pairs = get_addresses(text, defects=diagnostics, decode_names=False)
        for display, email_address in pairs:
            address = _address(display, email_address, name, hints)
            if address is not None and address not in result:
                result.append(address)
        for entry in diagnostics:
            item = str(entry.get("raw", ""))
            salvaged = None if entry.get("recovered") else _salvage(message, name, item)
            if salvaged is None:
                defects.append(f"{name}: {entry.get('reason')}: {item[:80]}")
                continue
            address = _address(salvaged.name, salvaged.email, name, hints)
            if address is None:
                continue
            defects.append(f"{name}: salvaged {address.email} from {item.strip()[:80]!r} "
                           f"({salvaged.repair})")
            if address not in result:
                result.append(address)
    return tuple(result)


_ADDRESS_SPECIALS = frozenset(',;:<>@"()[]\\')


def _quote_encoded_words(text: str) -> str:
    """Encoded words holding address specials (``=?utf-8?Q?M=C3=BCller,_Hans?=``, as Outlook
    writes a "Last, First" name) put in quotes, so the comma does not split the list."""
    pieces: list[str] = []
    position = 0
    quotes = 0
    for match in ENCODED_WORD.finditer(text):
        between = text[position : match.start()]
        quotes += between.count('"')
        pieces.append(between)
        word = match.group()
        if quotes % 2 == 0 and not _ADDRESS_SPECIALS.isdisjoint(match["text"]):
            word = f'"{word}"'
        pieces.append(word)
        position = match.end()
    if not pieces:
        return text
    pieces.append(text[position:])
    return "".join(pieces)


def _salvage(message: Message, name: str, item: str) -> Salvaged | None:
    """A mailbox read from an item mail-parser rejected (see :mod:`daemon.intake.senders`)."""
    found = salvage(item)
    if found is None and name in ("from", "sender"):
        found = salvage_system_sender(item, _own_domain(message))
    return found


def _own_domain(message: Message) -> str | None:
    """The domain a message names for itself: its Message-ID's, else its first Received host."""
    for key, value in message.raw_items():
        if str(key).lower() == "message-id":
            domain = str(value).strip().strip("<>").rpartition("@")[2].strip(" >")
            if domain and _DOMAIN.fullmatch(domain):
                return domain.lower()
    for key, value in message.raw_items():
        if str(key).lower() == "received":
            words = str(value).split()
            for before, after in pairwise(words):
                if before.lower() == "by" and _DOMAIN.fullmatch(after.strip(";")):
                    return after.strip(";").lower()
            break
    return None


def _address(
    display: str, email_address: str, where: str, hints: tuple[str, ...]
) -> Address | None:
    email_address = email_address.strip().strip("<>").lower()
    if len(email_address) > 2 and email_address[0] == email_address[-1] == "'":
        email_address = email_address[1:-1]  # 'user@example.com': quotes, not the address
    if not _plausible_email(email_address):
        return None
    name = decode_header_value(display, where, hints).text if display else ""
    name = name.strip().strip("\"'").strip()
    if name.lower() == email_address:
        name = ""
    return Address(name=name, email=email_address)


def _plausible_email(email_address: str) -> bool:
    """``local@domain`` (a quoted local part may hold spaces), or a bare mail-system name."""
    if "\ufffd" in email_address:
        return False
    if "@" not in email_address:
        return email_address in MAIL_SYSTEM_NAMES
    local, _, domain = email_address.rpartition("@")
    if any(ch.isspace() for ch in domain) or not local or not domain:
        return False
    return not any(ch.isspace() for ch in local) or (
        local.startswith('"') and local.endswith('"') and len(local) > 2)


def _date(values: tuple[str, ...], defects: list[str]) -> datetime | None:
    if not values or not values[0].strip():
        return None
    value = values[0].strip()
    try:
        parsed = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError, OverflowError):
        parsed = None
    if parsed is None:
        parsed = parse_mail_date(value).value
    if parsed is None:
        defects.append(f"date: unparsable: {value[:80]}")
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed


def _report(message: Message) -> Report | None:
    if _PARSE_REPORT is None:  # pragma: no cover
        return None
    return _PARSE_REPORT(message)


def detect_language(text: str) -> str:
    """``"zh"`` when CJK ideographs make up a meaningful share of ``text``, else ``"en"``.

    One ideograph is a word, an English word is about five letters: the share compares
    ideographs with letters / 5, and ``zh`` needs at least two ideographs and 30 %.
    """
    ideographs = len(_CJK.findall(text))
    if ideographs < 2:
        return "en"
    words = len(_LETTER.findall(text)) / 5
    return "zh" if ideographs / (ideographs + words) >= 0.3 else "en"
