"""Turn a rendered mail into a standards-correct MIME message, ready for SMTP.

The rest of ticketd hands over plain values (a :class:`RenderedMail`, addresses, ids) and gets
an :class:`email.message.EmailMessage` back; every header rule lives here:

* Bodies are UTF-8: ``text/plain``, or ``multipart/alternative`` (text, then HTML) when there
  is HTML; ``multipart/mixed`` around that when there are attachments. Mostly-Chinese text is
  base64, mostly-ASCII text quoted-printable, so no line is 8-bit.
* Subject and display names are RFC 2047 encoded, attachment file names RFC 2231.
* ``Message-ID`` is ``<ticketd.<token>@<domain>>``; the token is unguessable, so a reply that
  carries it in ``References`` proves it answers a mail we sent (see ``replies.trust``).
* ``References`` follows RFC 5322 §3.6.4 (the parent's References plus its Message-ID),
  de-duplicated and capped at :data:`MAX_REFERENCES`, keeping the first id and the latest.
* Automatic mail says so (RFC 3834): ``Auto-Submitted: auto-replied`` when it answers a message
  (it has ``In-Reply-To``), ``auto-generated`` otherwise, plus
  ``X-Auto-Response-Suppress: OOF, AutoReply`` for Exchange. Not ``All``: that would also
  suppress the non-delivery reports ``intake.bounces`` relies on. No ``Precedence``: RFC 3834
  advises against it and it hurts delivery of one-to-one mail.
* The loop header is set on every message, so our own mail coming back is recognised.
"""

from __future__ import annotations

import base64
import functools
import re
import secrets
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from email import contentmanager
from email.generator import BytesGenerator
from email.headerregistry import Address as HeaderAddress
from email.headerregistry import HeaderRegistry
from email.message import EmailMessage
from email.policy import EmailPolicy, Policy
from email.utils import format_datetime
from io import BytesIO
from types import MappingProxyType
from typing import Any

from daemon.addresses import Address
from daemon.replies.templates import RenderedMail

MAX_REFERENCES = 20
MAX_SUBJECT_CHARS = 400  # templates add the number and words to a clipped (200) subject
TOKEN_BYTES = 20  # 160 bits; the token is the secret a handler's reply proves it knows

_TOKEN = r"[A-Za-z0-9_-]{22,128}"
_OUR_ID = re.compile(rf"<?\s*ticketd\.({_TOKEN})@[^\s<>@]+\s*>?")
_DOMAIN = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?")
_MIME_TOKEN = re.compile(r"[a-z0-9][a-z0-9!#$&^_.+-]*")
_HEADER_NAME = re.compile(r"[!-9;-~]+")  # printable ASCII except ':' (RFC 5322 ftext)
_CONTAINERS = frozenset({"multipart", "message"})
_NO_HEADERS: Mapping[str, str] = MappingProxyType({})
_MANAGED = frozenset({
    "from", "to", "cc", "bcc", "subject", "date", "message-id", "in-reply-to", "references",
    "mime-version", "content-type", "content-transfer-encoding", "content-disposition",
    "auto-submitted", "x-auto-response-suppress",
})


@dataclass(frozen=True)
class OutgoingAttachment:
    """A file to attach to an outgoing mail."""

    filename: str  # shown to the recipient; any Unicode (sent RFC 2231 encoded)
    content_type: str  # "type/subtype"; anything unparsable is sent as application/octet-stream
    payload: bytes

    def __repr__(self) -> str:
        return (
            f"OutgoingAttachment(filename={self.filename!r}, "
            f"content_type={self.content_type!r}, size={len(self.payload)})"
        )


def make_message_id(domain: str, token: str | None = None) -> tuple[str, str]:
    """A Message-ID (without angle brackets) carrying ``token``, and the token.

    A new token has 160 random bits. Pass an existing token to rebuild the same id, e.g.
    when the outbox retries a delivery.
    """
    domain = domain.strip().lower()
    if not _DOMAIN.fullmatch(domain):
        raise ValueError(f"not a domain for a Message-ID: {domain!r}")
    if token is None:
        token = secrets.token_hex(TOKEN_BYTES)
    elif not re.fullmatch(_TOKEN, token):
        raise ValueError("a Message-ID token is 22-128 characters of [A-Za-z0-9_-]")
    return f"ticketd.{token}@{domain}", token


def token_of(message_id: str) -> str | None:
    """The token of one of our Message-IDs (with or without brackets), else None."""
    match = _OUR_ID.fullmatch(message_id.strip())
    return match.group(1) if match else None


def compose(
    rendered: RenderedMail,
    *,
    sender: Address,
    to: Sequence[Address],
    cc: Sequence[Address] = (),
    message_id: str,
    in_reply_to: str | None,
    references: Sequence[str],
    date: datetime,
    auto_submitted: bool,
    loop_header: tuple[str, str],
    attachments: Sequence[OutgoingAttachment] = (),
    extra_headers: Mapping[str, str] = _NO_HEADERS,
    max_bytes: int | None = None,
) -> EmailMessage:
    """Build the MIME message. Ids may be given with or without angle brackets.

    ``in_reply_to`` is appended to ``references`` when missing, as RFC 5322 prescribes.
    Raises ValueError for a naive date, no recipient, a malformed id or header, and for a
    mail larger than ``max_bytes`` on the wire (the last guard against amplification).
    """
    if date.tzinfo is None or date.utcoffset() is None:
        raise ValueError("the Date of a mail must be an aware datetime")
    if not to and not cc:
        raise ValueError("a mail needs at least one recipient")
    own_id = _bare(message_id)
    if own_id is None:
        raise ValueError(f"not a Message-ID: {message_id!r}")
    parent = _bare(in_reply_to) if in_reply_to else None
    loop_name, loop_value = loop_header
    _check_header(loop_name, loop_value)
    extras = dict(extra_headers)
    for name, value in extras.items():
        _check_header(name, value)
        if name.lower() in _MANAGED or name.lower() == loop_name.lower():
            raise ValueError(f"header {name!r} is set by compose itself")

    # An address with a non-ASCII local part (RFC 6532) can only be written as UTF-8; such a
    # mail needs an SMTPUTF8 server, which the SMTP transport asks for by its envelope.
    international = not all(a.email.isascii() for a in (sender, *to, *cc))
    msg = EmailMessage(policy=_OUTGOING_UTF8 if international else _OUTGOING)
    msg["Subject"] = subject_line(rendered)
    msg["From"] = _mailbox(sender)
    msg["To"] = [_mailbox(a) for a in to] if to else "undisclosed-recipients:;"
    if cc:
        msg["Cc"] = [_mailbox(a) for a in cc]
    msg["Date"] = _Formatted(format_datetime(date))
    msg["Message-ID"] = _Formatted(f"<{own_id}>")
    if parent is not None:
        msg["In-Reply-To"] = _Formatted(f"<{parent}>")
    chain = thread_references(references, parent)
    if chain:
        msg["References"] = _Formatted(_folded(f"<{ref}>" for ref in chain))
    if auto_submitted:
        msg["Auto-Submitted"] = _Formatted(
            "auto-replied" if parent is not None else "auto-generated")
        msg["X-Auto-Response-Suppress"] = _Formatted("OOF, AutoReply")
    msg[loop_name] = _formatted_if_plain(loop_value)
    for name, value in extras.items():
        msg[name] = value
    msg["MIME-Version"] = _Formatted("1.0")

    if rendered.html is None:
        _set_text(msg, rendered.text, "plain")
    else:
        # The parts as set_content and make_alternative build them, with the headers
        # stored as written (each of those steps parses Content-Type again: most of the
        # cost of composing a mail)
        plain = EmailMessage(policy=msg.policy)
        _set_text(plain, rendered.text, "plain")
        html = EmailMessage(policy=_OUTGOING)
        _set_text(html, rendered.html, "html")
        msg["Content-Type"] = _Formatted(f'multipart/alternative;\n boundary="{_boundary()}"')
        msg.attach(plain)
        msg.attach(html)
    for attachment in attachments:
        maintype, subtype = _split_type(attachment.content_type)
        # The headers from the library (RFC 2231 file name), the base64 from one C call: the
        # library (and base64.encodebytes) encode 57 bytes per Python call.
        msg.add_attachment(b"", maintype=maintype, subtype=subtype,
                           filename=attachment.filename)
        *_, file_part = msg.iter_parts()
        file_part.set_payload(_base64_lines(attachment.payload))
        msg.set_boundary(_boundary())
    for part in msg.walk():
        if part is not msg:
            del part["MIME-Version"]  # only the top level carries it
    if max_bytes is not None and _size_bound(rendered, attachments) > max_bytes:
        size = len(to_bytes(msg))  # the cheap bound says it may be too big: measure it
        if size > max_bytes:
            raise ValueError(f"the mail would be {size} bytes, over the cap of {max_bytes}")
    return msg


class _Formatted(str):
    """A header value compose formats itself: printable ASCII, each line within 78
    characters (ids, a date, fixed tokens). Stored as it is, where the default policy would
    parse it into a header object only to fold it back into the same text."""


class _OutgoingPolicy(EmailPolicy):
    """``policy.default``, except that a :class:`_Formatted` value is stored unparsed."""

    def header_store_parse(self, name: str, value: Any) -> tuple[str, Any]:
        if isinstance(value, _Formatted):
            return name, value
        return super().header_store_parse(name, value)

    def header_fetch_parse(self, name: str, value: Any) -> Any:
        # Read back (the generator asks for Content-Type's type and boundary several times
        # a part): parsed once, as the library would parse it each time.
        if isinstance(value, _Formatted):
            return _fetched(name, str(value))
        return super().header_fetch_parse(name, value)


class _HeaderClasses(HeaderRegistry):
    """The library's header registry with each header class made once: ``HeaderRegistry``
    makes a new class on every lookup (~20 µs, and a mail looks up some forty headers while
    it is composed and written). The classes hold no state, so one per name is the same."""

    def __init__(self) -> None:
        super().__init__()
        self._made: dict[str, type[Any]] = {}

    def __getitem__(self, name: str) -> type[Any]:
        key = name.lower()
        made = self._made.get(key)
        if made is None:
            made = self._made[key] = super().__getitem__(name)
        return made


_HEADER_CLASSES = _HeaderClasses()


@functools.lru_cache(maxsize=256)
def _fetched(name: str, value: str) -> Any:
    """A header compose stored as written, parsed as ``policy.default`` reads it back (header
    objects are immutable; most of these repeat from mail to mail)."""
    return _HEADER_CLASSES(name, "".join(value.splitlines()))


# set_content's own choice and encoding of a text body. Private to the library: the property
# test in tests/property/test_to_bytes_hypothesis.py checks the bytes against set_content's,
# and a Python without it composes through set_content itself (slower, the same bytes).
_ENCODE_TEXT: Callable[[str, str, str | None, Policy], tuple[str, str]] | None = \
    getattr(contentmanager, "_encode_text", None)
_OUTGOING = _OutgoingPolicy(header_factory=_HEADER_CLASSES)
_OUTGOING_UTF8 = _OutgoingPolicy(utf8=True, header_factory=_HEADER_CLASSES)
# policy.SMTP and SMTPUTF8 (the generator reads the headers back through its own policy)
_SMTP = _OUTGOING.clone(linesep="\r\n")
_SMTPUTF8 = _OUTGOING_UTF8.clone(linesep="\r\n")


class _Writer(BytesGenerator):
    """``BytesGenerator`` writing each body in one piece, with the same bytes. The library
    splits a body into lines and writes each line and its line break apart: two calls per
    76 characters of an attachment, most of the cost of writing a mail with files."""

    def _write_lines(self, lines: str) -> None:
        # the library's: every line break (CRLF, CR or LF, email.generator.NLCRE) as the
        # policy's linesep, a last partial line as is (to_bytes always gives the policy,
        # which is what flatten takes the linesep from)
        if lines:
            assert self.policy is not None
            if "\r" in lines:
                lines = lines.replace("\r\n", "\n").replace("\r", "\n")
            self.write(lines.replace("\n", self.policy.linesep))


def _formatted_if_plain(value: str) -> str:
    """``value`` as a :class:`_Formatted` when it needs no encoding or folding, else as is."""
    if value.isascii() and value.isprintable() and len(value) < 60 and value == value.strip():
        return _Formatted(value)
    return value


def _folded(ids: Iterable[str]) -> str:
    """Ids joined by spaces, a line break before one that would pass 78 characters."""
    lines = [len("References: ")]
    text = ""
    for item in ids:
        if text and lines[-1] + 1 + len(item) > 78:
            text += "\n " + item
            lines.append(1 + len(item))
        else:
            text += (" " if text else "") + item
            lines[-1] += (1 if len(text) > len(item) else 0) + len(item)
    return text


def _base64_lines(payload: bytes) -> str:
    """``payload`` in base64, 76 characters a line (RFC 2045), as the library writes it."""
    text = base64.b64encode(payload).decode("ascii")
    if not text:
        return ""
    return "\n".join([text[i:i + 76] for i in range(0, len(text), 76)]) + "\n"


def _boundary() -> str:
    """A MIME boundary that no body part can contain: ``=_`` never occurs in base64 or
    quoted-printable output, and 7bit text would have to hold 128 random bits. Given up
    front, the generator need not scan the whole text for a collision."""
    return f"=_ticketd_{secrets.token_hex(16)}"


def subject_line(rendered: RenderedMail) -> str:
    """The Subject as sent: one line, at most :data:`MAX_SUBJECT_CHARS` characters."""
    return " ".join(rendered.subject.split())[:MAX_SUBJECT_CHARS]


def _size_bound(rendered: RenderedMail, attachments: Sequence[OutgoingAttachment]) -> int:
    """An upper bound of the wire size: quoted-printable at most triples a byte, base64 adds
    a third plus line breaks; headers are short (ids and References are capped)."""
    text = sum(len(t.encode("utf-8", "replace")) for t in (rendered.text, rendered.html or ""))
    files = sum(len(a.payload) * 140 // 100 + 4 * len(a.filename) + 512 for a in attachments)
    return 16 * 1024 + 4 * len(rendered.subject) + 3 * text + 3 * text // 70 + files


def to_bytes(msg: EmailMessage) -> bytes:
    """The message as SMTP wants it: CRLF line endings, 7-bit headers (UTF-8 headers for a
    mail to or from an internationalised address, which only SMTPUTF8 can carry). The same
    bytes as ``msg.as_bytes(policy=policy.SMTP)`` (or ``SMTPUTF8``), written faster."""
    out = BytesIO()
    _Writer(out, mangle_from_=False,
            policy=_SMTPUTF8 if getattr(msg.policy, "utf8", False) else _SMTP).flatten(msg)
    return out.getvalue()


def thread_references(references: Sequence[str], in_reply_to: str | None = None) -> list[str]:
    """Bare ids for ``References``: de-duplicated, parent last, at most MAX_REFERENCES.

    When there are too many, the first (the thread's root) and the latest ones are kept.
    Malformed ids (spaces, brackets inside, non-ASCII) are dropped.
    """
    seen: dict[str, None] = {}
    for ref in references:
        bare = _bare(ref)
        if bare is not None:
            seen.setdefault(bare, None)
    parent = _bare(in_reply_to) if in_reply_to else None
    if parent is not None:
        seen.setdefault(parent, None)
    chain = list(seen)
    if len(chain) > MAX_REFERENCES:
        chain = [chain[0], *chain[-(MAX_REFERENCES - 1) :]]
    return chain


def _bare(message_id: str) -> str | None:
    text = message_id.strip()
    if text.startswith("<") and text.endswith(">"):
        text = text[1:-1].strip()
    if not text or not text.isascii() or not text.isprintable():
        return None
    if any(c in text for c in " <>\t"):
        return None
    return text


def _mailbox(address: Address) -> HeaderAddress:
    name = " ".join(address.name.split())  # no line breaks in a header
    spec = address.email.strip()
    if spec.isascii():
        return HeaderAddress(display_name=name, addr_spec=spec)
    # RFC 6532: the parser refuses a non-ASCII local part in an addr-spec; given as parts,
    # it is written as UTF-8 (the mail is composed with a utf8 policy, see compose()).
    local, _, domain = spec.rpartition("@")
    if not local or not domain or any(c.isspace() or c in '<>()[]\\,;:"' for c in spec):
        raise ValueError(f"not an address: {spec!r}")
    return HeaderAddress(display_name=name, username=local, domain=domain)


def _check_header(name: str, value: str) -> None:
    if not _HEADER_NAME.fullmatch(name):
        raise ValueError(f"not a header name: {name!r}")
    if "\r" in value or "\n" in value:
        raise ValueError(f"header {name!r} may not contain line breaks")


def _split_type(content_type: str) -> tuple[str, str]:
    maintype, _, subtype = content_type.partition(";")[0].strip().lower().partition("/")
    valid = _MIME_TOKEN.fullmatch(maintype) and _MIME_TOKEN.fullmatch(subtype)
    # multipart/* and message/* cannot carry opaque bytes: send those as octet-stream
    if valid and maintype not in _CONTAINERS:
        return maintype, subtype
    return "application", "octet-stream"


def _set_text(part: EmailMessage, text: str, subtype: str) -> None:
    """UTF-8 text: base64 when mostly non-ASCII (Chinese), else quoted-printable or 7bit.

    Base64 carries the canonical CRLF line breaks (RFC 2046 §4.1.1); for the other encodings
    the generator writes them. The headers and payload ``part.set_content(text,
    subtype=subtype, charset="utf-8", cte=cte)`` makes (the library's own encoder chooses
    and encodes), stored as written rather than parsed twice.
    """
    text = text.replace("\r\n", "\n")
    cte: str | None = None  # ASCII: 7bit, or quoted-printable for long lines
    if not text.isascii():
        wide = sum(1 for c in text if ord(c) > 127)
        cte = "base64" if wide * 8 > len(text) else "quoted-printable"
    if cte == "base64":
        text = text.replace("\n", "\r\n")
    if _ENCODE_TEXT is None:
        part.set_content(text, subtype=subtype, charset="utf-8", cte=cte)
        return
    cte, payload = _ENCODE_TEXT(text, "utf-8", cte, part.policy)
    part["Content-Type"] = _Formatted(f'text/{subtype}; charset="utf-8"')
    part.set_payload(payload)
    part["Content-Transfer-Encoding"] = _Formatted(cte)


__all__ = [
    "MAX_REFERENCES",
    "OutgoingAttachment",
    "compose",
    "make_message_id",
    "subject_line",
    "thread_references",
    "to_bytes",
    "token_of",
]
