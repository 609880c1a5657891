"""Read machine reports about mail we sent: bounces, read receipts and abuse complaints.

ticketd sends acknowledgements and replies; when one of them bounces, is read, or is reported
as spam, the answer comes back to the support mailbox. Such a message must never open a ticket,
and the bounce handling wants to know which of *our* messages it concerns. This module turns the
stdlib-parsed message into the frozen :class:`~daemon.intake.parsed.Report` carried on
``ParsedMail.report``:

* ``multipart/report; report-type=delivery-status`` (RFC 3464 DSN), also when the
  ``message/delivery-status`` part arrives alone, wrapped in another multipart, or as plain text;
* the non-standard bounces many MTAs still send (qmail "failure notice", Gmail, Exchange,
  Chinese providers' 退信), recognised by their sender and subject and read from their text;
* ``report-type=disposition-notification`` (RFC 8098 MDN, read receipts);
* ``report-type=feedback-report`` (RFC 5965 ARF, AOL/Yahoo feedback loops).

The message may have been parsed with ``policy.compat32`` or ``policy.default``; both are read
the same way. :func:`parse_report` never raises: a malformed report yields the fields that
could be read, and ordinary mail yields None. The rules (``intake.rules``) reuse
:func:`bounce_evidence` so that the text heuristics live in one place.
"""

from __future__ import annotations

import base64
import quopri
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from email.message import Message
from email.parser import HeaderParser
from email.utils import collapse_rfc2231_value, getaddresses, parseaddr
from typing import TypeVar

from daemon.intake.charsets import decode_bytes, decode_header_value
from daemon.intake.parsed import Report

__all__ = ["BounceEvidence", "bounce_evidence", "parse_report"]

_T = TypeVar("_T")

DELIVERY_STATUS = "delivery-status"
DISPOSITION = "disposition-notification"
FEEDBACK = "feedback-report"

# Content types of the machine-readable part of each report type (RFC 3464, 6533, 8098, 5965).
_STATUS_TYPES = frozenset({"message/delivery-status", "message/global-delivery-status"})
_MDN_TYPES = frozenset({"message/disposition-notification",
                        "message/global-disposition-notification"})
_ARF_TYPES = frozenset({"message/feedback-report"})
_ORIGINAL_MESSAGE_TYPES = frozenset({"message/rfc822", "message/global"})
_ORIGINAL_HEADER_TYPES = frozenset({"text/rfc822-headers", "message/global-headers"})

# Local parts / display names that only MTAs use as a sender.
_DAEMON_LOCAL_PARTS = frozenset({"mailer-daemon", "mailer_daemon", "mailerdaemon"})
_DAEMON_NAMES = ("mail delivery subsystem", "mail delivery system")

# Subjects of non-standard bounces, matched at the start of the subject (case-insensitive).
_BOUNCE_SUBJECT = re.compile(
    r"^\s*(?:"
    r"undelivered mail returned to sender|delivery status notification|undeliverable\b"
    r"|undelivered mail|failure notice|returned mail|mail delivery failed"
    r"|delivery failure|non[- ]?delivery report"
    r"|系统退信|退信|投递失败|邮件投递失败|无法投递"
    r")",
    re.IGNORECASE,
)

_MESSAGE_ID_LINE = re.compile(r"^[>\s]*message-id:[ \t]*(\S[^\r\n]*)", re.IGNORECASE | re.MULTILINE)
_ANGLE_ID = re.compile(r"<([^<>\s]+)>")
_ADDRESS = r"[A-Za-z0-9._%+=/'!#$&*?^`{|}~-]+@[A-Za-z0-9.-]+\.[A-Za-z0-9-]+"
# "<user@example.com>: host ... said" (Postfix, qmail) or an address alone on its line (Gmail).
_RECIPIENT_LINE = re.compile(rf"^[ \t]*<?({_ADDRESS})>?[ \t]*(?::|\.{{3}}|$)", re.MULTILINE)
_ANY_ADDRESS = re.compile(_ADDRESS)
_RECIPIENT_HINT = re.compile(r"recipient|deliver|收件人|发送到|投递到|送达|发往", re.IGNORECASE)
_STATUS_CODE = re.compile(r"(?<![\w.])([45]\.\d{1,3}\.\d{1,3})(?!\.?\d)")
_DELAY = re.compile(r"\bdelay(?:ed)?\b|still being retried|will be retried|延迟|延时", re.I)
# Where the notification text ends and the quoted original message begins.
_ORIGINAL_MARKER = re.compile(
    r"^[\W_]*(?:original message|below this line is a copy|this is a copy of the message"
    r"|unsent message|undelivered message|returned message|message headers follow"
    r"|原始邮件|原邮件)",
    re.IGNORECASE | re.MULTILINE,
)
_DIAGNOSTIC_TYPE = re.compile(r"^[A-Za-z][A-Za-z0-9-]*[ \t]*;[ \t]*")
_MAX_DIAGNOSTIC = 500
_ACTION_RANK = {"failed": 0, "delayed": 1}


@dataclass(frozen=True)
class BounceEvidence:
    """Why a message without a DSN part looks like a bounce, and which header said so."""

    header: str
    reason: str


def parse_report(message: Message) -> Report | None:
    """Return what ``message`` reports about another mail, or None for ordinary mail.

    ``message`` is the top-level message as parsed by the stdlib (any policy). Never raises.
    """
    try:
        return _parse_report(message)
    except Exception:  # the contract is "never raise": a broken report is not a broken mail
        return None


def bounce_evidence(
    *,
    sender: str,
    sender_name: str,
    subject: str,
    return_path: str | None = None,
    failed_recipients: str | None = None,
    auto_submitted: str | None = None,
) -> BounceEvidence | None:
    """Decide whether a mail without a ``multipart/report`` is a bounce, from its headers.

    A MAILER-DAEMON sender, a "Mail Delivery Subsystem/System" display name or an
    ``X-Failed-Recipients`` header is enough on its own. ``postmaster@``, a bounce subject
    ("Undeliverable:", "failure notice", "退信", ...), a null ``Return-Path`` and a non-"no"
    ``Auto-Submitted`` are weaker: two of them are needed, so that a person who writes to us
    about "退信问题" or from postmaster@ still opens a ticket.
    """
    local = sender.lower().rpartition("@")[0] if "@" in sender else sender.lower()
    name = sender_name.strip().strip('"').lower()
    if local in _DAEMON_LOCAL_PARTS:
        return BounceEvidence("From", f"sent by {sender} (a mailer daemon)")
    if any(name.startswith(daemon) for daemon in _DAEMON_NAMES):
        return BounceEvidence("From", f'sent by "{sender_name.strip()}" (a mail delivery system)')
    if failed_recipients and failed_recipients.strip():
        return BounceEvidence("X-Failed-Recipients",
                              f"X-Failed-Recipients: {failed_recipients.strip()}")
    weak: list[tuple[str, str]] = []
    if _BOUNCE_SUBJECT.match(subject):
        weak.append(("Subject", f"bounce subject {subject.strip()[:80]!r}"))
    if local == "postmaster":
        weak.append(("From", f"sent by {sender}"))
    if return_path is not None and _is_null_path(return_path):
        weak.append(("Return-Path", "null sender (Return-Path: <>)"))
    if auto_submitted and auto_submitted.partition(";")[0].strip().lower() not in ("", "no"):
        weak.append(("Auto-Submitted", f"Auto-Submitted: {auto_submitted.strip()}"))
    if len(weak) >= 2:
        return BounceEvidence(weak[0][0], "; ".join(reason for _, reason in weak))
    return None


# --- recognition -------------------------------------------------------------------------


def _parse_report(message: Message) -> Report | None:
    content_type = message.get_content_type()
    if content_type in _STATUS_TYPES:  # a bare DSN part with no multipart/report around it
        return _delivery_status(message, message, [message])
    parts = list(_own_parts(message))
    by_type = {part.get_content_type(): part for part in reversed(parts)}
    report_type = ""
    if content_type == "multipart/report":
        report_type = _param(message, "report-type").lower()
    # Outside multipart/report a delivery-status part counts only beside other bounce signs:
    # a person may well attach one to a mail of their own.
    if report_type == DELIVERY_STATUS or (not report_type and _find(by_type, _STATUS_TYPES)
                                          and _message_bounce_evidence(message) is not None):
        return _delivery_status(message, _machine_part(message, by_type, _STATUS_TYPES), parts)
    if report_type == DISPOSITION or (not report_type and _find(by_type, _MDN_TYPES)):
        return _disposition(message, _machine_part(message, by_type, _MDN_TYPES), parts)
    if report_type == FEEDBACK or (not report_type and _find(by_type, _ARF_TYPES)):
        return _feedback(message, _machine_part(message, by_type, _ARF_TYPES), parts)
    if report_type:  # a multipart/report of a kind we do not read (RFC 6522 allows others)
        return Report(report_type=report_type,
                      original_message_id=_original_id(message, parts))
    if _message_bounce_evidence(message) is not None:
        return _text_bounce(message, parts)
    return None


def _delivery_status(message: Message, status_part: Message | None,
                     parts: list[Message]) -> Report:
    fields: list[dict[str, str]] = []
    if status_part is not None:
        fields = _attempt(lambda: _recipient_fields(status_part), fields)
    recipients = _unique(
        address
        for block in fields
        if (address := _address_field(block.get("final-recipient")
                                      or block.get("original-recipient")))
    )
    no_fields: dict[str, str] = {}
    chosen = min(fields, key=lambda block: _ACTION_RANK.get(_action(block) or "", 2),
                 default=no_fields)
    action = _action(chosen)
    status = _status(chosen.get("status"))
    diagnostic = _diagnostic(chosen.get("diagnostic-code"))
    original = _original_id(message, parts)
    named = recipients
    if not recipients or status is None:  # broken DSN: complete it from the human text
        fallback = _attempt(lambda: _text_bounce(message, parts), None)
        if fallback is not None:
            recipients = recipients or fallback.recipients
            status = status or fallback.status
            action = action or fallback.action
            diagnostic = diagnostic or fallback.diagnostic
    return Report(
        report_type=DELIVERY_STATUS,
        original_message_id=original,
        recipients=recipients,
        action=action,
        status=status,
        diagnostic=diagnostic,
        named=tuple(r.lower() for r in named),
    )


def _disposition(message: Message, mdn_part: Message | None, parts: list[Message]) -> Report:
    fields = _merged_fields(mdn_part)
    original = _first_id(fields.get("original-message-id")) or _original_id(message, parts)
    recipient = _address_field(fields.get("final-recipient") or fields.get("original-recipient"))
    disposition = fields.get("disposition")
    return Report(
        report_type=DISPOSITION,
        original_message_id=original,
        recipients=(recipient,) if recipient else (),
        diagnostic=_clean(disposition) if disposition else None,
    )


def _feedback(message: Message, arf_part: Message | None, parts: list[Message]) -> Report:
    fields = _merged_fields(arf_part)
    recipients = _unique(
        address.lower()
        for _, address in getaddresses([fields.get("original-rcpt-to", "")])
        if "@" in address
    )
    feedback_type = fields.get("feedback-type")
    return Report(
        report_type=FEEDBACK,
        original_message_id=_original_id(message, parts),
        recipients=recipients,
        diagnostic=_clean(feedback_type) if feedback_type else None,
    )


def _text_bounce(message: Message, parts: list[Message]) -> Report:
    """Read a bounce written for people: recipients, status and action from its text."""
    text = _attempt(lambda: _body_text(parts), "")
    marker = _ORIGINAL_MARKER.search(text)
    notice = text[: marker.start()] if marker else text
    subject = _header(message, "subject") or ""

    failed = _header(message, "x-failed-recipients") or ""
    recipients = _unique(address.lower() for address in _ANY_ADDRESS.findall(failed))
    if not recipients:
        recipients = _text_recipients(notice)

    status_match = _STATUS_CODE.search(notice) or _STATUS_CODE.search(text)
    status = status_match.group(1) if status_match else None
    diagnostic = None
    if status_match:
        source = notice if _STATUS_CODE.search(notice) else text
        start = source.rfind("\n", 0, status_match.start()) + 1
        end = source.find("\n", status_match.end())
        diagnostic = _clean(source[start : end if end != -1 else None]) or None
    delayed = _DELAY.search(subject) or _DELAY.search(notice)
    original = _original_id(message, parts, text[marker.start() :] if marker else text)
    return Report(
        report_type=DELIVERY_STATUS,
        original_message_id=original,
        recipients=recipients,
        action="delayed" if delayed else "failed",
        status=status,
        diagnostic=diagnostic,
    )


def _message_bounce_evidence(message: Message) -> BounceEvidence | None:
    name, address = parseaddr(_header(message, "from") or "")
    return bounce_evidence(
        sender=address,
        sender_name=name,
        subject=_header(message, "subject") or "",
        return_path=_header(message, "return-path"),
        failed_recipients=_header(message, "x-failed-recipients"),
        auto_submitted=_header(message, "auto-submitted"),
    )


# --- fields ------------------------------------------------------------------------------


def _recipient_fields(status_part: Message) -> list[dict[str, str]]:
    """The per-recipient field blocks of a delivery-status part (blocks naming a recipient)."""
    blocks = _field_blocks(status_part)
    with_recipient = [b for b in blocks if "final-recipient" in b or "original-recipient" in b]
    return with_recipient or [b for b in blocks if "action" in b or "status" in b]


def _merged_fields(part: Message | None) -> dict[str, str]:
    merged: dict[str, str] = {}
    if part is None:
        return merged
    no_blocks: list[dict[str, str]] = []
    for block in _attempt(lambda: _field_blocks(part), no_blocks):
        for name, value in block.items():
            merged.setdefault(name, value)
    return merged


def _field_blocks(part: Message) -> list[dict[str, str]]:
    """Header-like field blocks of a report part, however the stdlib happened to parse it.

    ``message/delivery-status`` is parsed into one Message per block; other ``message/*``
    report parts into a single sub-message (first block as headers, the rest as its body);
    a part the parser left as text, or mis-read because it was transfer-encoded, is split here.
    """
    encoded = _misread_encoded_text(part)
    if encoded is not None:
        return _split_blocks(encoded)
    payload = part.get_payload()
    if isinstance(payload, list):
        blocks: list[dict[str, str]] = []
        for sub in payload:
            if not isinstance(sub, Message):
                continue
            blocks.append(_fields_of(sub))
            rest = sub.get_payload()
            if isinstance(rest, str) and ":" in rest:
                blocks.extend(_split_blocks(rest))
        return blocks
    raw = part.get_payload(decode=True)
    text = _decode_bytes(raw, part.get_content_charset()) if isinstance(raw, bytes) else ""
    return _split_blocks(text or str(payload))


def _split_blocks(text: str) -> list[dict[str, str]]:
    text = text.replace("\r\n", "\n")
    parser = HeaderParser()
    return [
        fields
        for chunk in re.split(r"\n[ \t]*\n", text)
        if chunk.strip() and (fields := _fields_of(parser.parsestr(chunk.strip() + "\n")))
    ]


def _fields_of(block: Message) -> dict[str, str]:
    fields: dict[str, str] = {}
    for name in block:
        value = _header(block, name)
        if value is not None:
            fields.setdefault(name.lower(), value)
    return fields


def _original_id(message: Message, parts: list[Message], text: str = "") -> str | None:
    """Message-ID of the reported mail.

    In order: the returned message or its headers, a ``Message-ID:`` line quoted in ``text``,
    then the report's own In-Reply-To (Exchange sets it to the bounced mail).
    """
    return (
        _attempt(lambda: _attached_id(parts), None)
        or _text_message_id(text)
        or _attempt(lambda: _first_id(_header(message, "in-reply-to")), None)
    )


def _attached_id(parts: list[Message]) -> str | None:
    for part in parts:
        content_type = part.get_content_type()
        encoded = _misread_encoded_text(part) if content_type in _ORIGINAL_MESSAGE_TYPES else None
        if encoded is not None:
            found = _first_id(_header(HeaderParser().parsestr(encoded), "message-id"))
            if found:
                return found
        elif content_type in _ORIGINAL_MESSAGE_TYPES:
            payload = part.get_payload()
            inner = payload[0] if isinstance(payload, list) and payload else None
            if isinstance(inner, Message):
                found = _first_id(_header(inner, "message-id"))
                if found:
                    return found
            elif isinstance(payload, str):
                found = _headers_text_id(part)
                if found:
                    return found
        elif content_type in _ORIGINAL_HEADER_TYPES:
            found = _headers_text_id(part)
            if found:
                return found
    return None


def _misread_encoded_text(part: Message) -> str | None:
    """The text of a base64/quoted-printable ``message/*`` part the stdlib parsed as MIME.

    RFC 2046 forbids encoding ``message/*`` parts, but the stdlib's own ``add_attachment``
    and some MTAs do it; the parser then sees the encoded lines as a headerless message.
    """
    encoding = str(part.get("content-transfer-encoding", "")).strip().lower()
    payload = part.get_payload()
    if encoding not in ("base64", "quoted-printable") or not isinstance(payload, list):
        return None
    chunks = []
    for sub in payload:
        body = sub.get_payload() if isinstance(sub, Message) else None
        if not isinstance(sub, Message) or len(sub) or not isinstance(body, str):
            return None  # real headers were parsed: the part was not encoded after all
        chunks.append(body)
    encoded = "\n".join(chunks).encode("ascii", "surrogateescape")
    raw = (base64.b64decode(encoded) if encoding == "base64"
           else quopri.decodestring(encoded))
    return _decode_bytes(raw, None).replace("\r\n", "\n")


def _headers_text_id(part: Message) -> str | None:
    raw = part.get_payload(decode=True)
    text = _decode_bytes(raw, part.get_content_charset()) if isinstance(raw, bytes) else ""
    headers = HeaderParser().parsestr(text.replace("\r\n", "\n"))
    return _first_id(_header(headers, "message-id")) or _text_message_id(text)


def _text_message_id(text: str) -> str | None:
    match = _MESSAGE_ID_LINE.search(text)
    return _first_id(match.group(1)) if match else None


def _text_recipients(notice: str) -> tuple[str, ...]:
    found = _unique(address.lower() for address in _RECIPIENT_LINE.findall(notice))
    if not found:  # "Delivery failed 10 attempts: x@y", "收件人: x@y"
        found = _unique(
            address.lower()
            for line in notice.splitlines()
            if _RECIPIENT_HINT.search(line)
            for address in _ANY_ADDRESS.findall(line)
        )
    return tuple(a for a in found if a.partition("@")[0] not in _DAEMON_LOCAL_PARTS
                 and not a.startswith("postmaster@"))


def _address_field(value: str | None) -> str | None:
    """``rfc822; <user@example.com>`` -> ``user@example.com`` (lower-cased)."""
    if not value:
        return None
    _, _, address = value.rpartition(";")
    address = _clean(address).strip("<>").strip()
    return address.lower() or None


def _action(block: dict[str, str]) -> str | None:
    value = block.get("action", "").strip().lower()
    return value.split()[0] if value else None


def _status(value: str | None) -> str | None:
    if not value:
        return None
    match = re.search(r"\d\.\d{1,3}\.\d{1,3}", value)
    return match.group(0) if match else _clean(value) or None


def _diagnostic(value: str | None) -> str | None:
    if not value:
        return None
    return _clean(_DIAGNOSTIC_TYPE.sub("", _clean(value)))[:_MAX_DIAGNOSTIC] or None


def _first_id(value: str | None) -> str | None:
    if not value:
        return None
    match = _ANGLE_ID.search(value)
    if match:
        return match.group(1)
    tokens = value.split()
    return (tokens[0].strip("<>") or None) if tokens else None


# --- plumbing ----------------------------------------------------------------------------


def _own_parts(message: Message) -> Iterator[Message]:
    """Every part of ``message`` without descending into attached messages.

    A report forwarded by a person (as ``message/rfc822``) is that person's mail, not a report;
    only the attached message part itself is yielded, never its contents.
    """
    yield message
    if message.get_content_maintype() != "multipart":
        return
    payload = message.get_payload()
    if isinstance(payload, list):
        for part in payload:
            if isinstance(part, Message):
                yield from _own_parts(part)


def _body_text(parts: list[Message]) -> str:
    texts = []
    for part in parts:
        if part.get_content_type() != "text/plain":
            continue
        raw = part.get_payload(decode=True)
        if isinstance(raw, bytes):
            texts.append(_decode_bytes(raw, part.get_content_charset()))
    return "\n".join(texts)


def _find(by_type: dict[str, Message], types: frozenset[str]) -> Message | None:
    return next((by_type[t] for t in sorted(types) if t in by_type), None)


def _machine_part(message: Message, by_type: dict[str, Message],
                  types: frozenset[str]) -> Message | None:
    """The machine-readable part: by its content type, else the second part (RFC 6522 §3).

    Some MTAs label it ``text/plain`` or ``text/delivery-status``; it is then read as text.
    """
    found = _find(by_type, types)
    if found is not None or message.get_content_type() != "multipart/report":
        return found
    payload = message.get_payload()
    if isinstance(payload, list) and len(payload) >= 2 and isinstance(payload[1], Message):
        second: Message = payload[1]
        if second.get_content_maintype() != "multipart":
            return second
    return None


def _param(message: Message, name: str) -> str:
    value = message.get_param(name)
    if value is None or isinstance(value, str):
        return (value or "").strip()
    return collapse_rfc2231_value(value).strip()


def _header(message: Message, name: str) -> str | None:
    """The first value of a header, decoded, under either policy; None when absent/unreadable."""
    try:
        value = message.get(name)
    except Exception:  # policy.default can fail on a malformed structured header
        return None
    if value is None:
        return None
    return _decode_header_value(str(value))


def _decode_header_value(value: str) -> str:
    return decode_header_value(value, "report header").text


def _decode_bytes(raw: bytes, charset: str | None) -> str:
    """Bytes of a report part as text, by the rules every other part is read with."""
    return decode_bytes(raw, charset, "report part")[0]


def _is_null_path(value: str) -> bool:
    return re.sub(r"\s", "", value) == "<>"


def _clean(value: str) -> str:
    return " ".join(value.split())


def _unique(values: Iterable[str]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(v for v in values if v))


def _attempt(step: Callable[[], _T], default: _T) -> _T:
    """Run one extraction step; a malformed part costs that field, never the whole report."""
    try:
        return step()
    except Exception:  # parse_report promises never to raise
        return default
