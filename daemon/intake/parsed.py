"""The value objects intake produces from one raw message.

`parse.parse(raw)` turns bytes into a :class:`ParsedMail`; everything downstream (rules,
threader, pipeline, inspect) reads only these frozen objects, never the raw MIME tree.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from daemon.addresses import Address
from daemon.blobs import Written
from daemon.signatures import SIGNATURE_TYPES, is_signature

__all__ = ["SIGNATURE_TYPES", "Address", "Attachment", "CharsetNote", "ParsedMail", "Report",
           "is_signature"]


@dataclass(frozen=True)
class CharsetNote:
    """How one header or body part was decoded.

    ``declared`` is the charset the mail claimed (None when unlabelled), ``used`` the codec that
    produced the text, ``repair`` a human sentence when the two differ
    (e.g. "gb2312 declared, decoded as gb18030").
    """

    where: str
    declared: str | None
    used: str
    repair: str | None = None




@dataclass(frozen=True)
class Attachment:
    """One attachment as found in the mail (before any size limit is applied).

    A large one was streamed to the attachment store while the mail was read
    (:mod:`daemon.intake.spill`): its ``payload`` is then empty and ``streamed`` says its
    size and whether the store kept it."""

    filename: str          # decoded original name, or a generated one ("attachment-1.pdf")
    safe_filename: str     # no separators, no "..", no control chars, <= 150 chars
    content_type: str      # lower-case "type/subtype"
    payload: bytes
    sha256: str
    inline: bool = False   # Content-Disposition inline / referenced by Content-ID
    content_id: str | None = None
    origin: str = "mime"   # "mime" | "tnef" | "rfc822" (a forwarded message kept whole)
    streamed: Written | None = None

    @property
    def size(self) -> int:
        return self.streamed.size if self.streamed is not None else len(self.payload)

    @property
    def signature(self) -> bool:
        """A signature part (``smime.p7s``, ``signature.asc``): kept, never relayed."""
        return is_signature(self.content_type)


@dataclass(frozen=True)
class Report:
    """What a multipart/report (DSN, MDN, feedback report) says, when the mail is one."""

    report_type: str                       # "delivery-status" | "disposition-notification" | ...
    original_message_id: str | None        # Message-ID of the mail the report concerns
    recipients: tuple[str, ...] = ()       # Final-Recipient addresses (else read from the text)
    # The recipients the machine-readable fields name (RFC 3464 Final-/Original-Recipient),
    # not guessed from the text: only these may put an address on hold.
    named: tuple[str, ...] = ()
    action: str | None = None              # "failed" | "delayed" | "delivered" | ...
    status: str | None = None              # "5.1.1"
    diagnostic: str | None = None          # Diagnostic-Code text

    @property
    def permanent(self) -> bool:
        return self.action == "failed" or (self.status or "").startswith("5")


@dataclass(frozen=True)
class ParsedMail:
    """One message, decoded. Message-IDs are kept without angle brackets."""

    message_id: str | None
    in_reply_to: tuple[str, ...]
    references: tuple[str, ...]
    from_: Address | None
    to: tuple[Address, ...]
    cc: tuple[Address, ...]
    reply_to: tuple[Address, ...]
    subject: str
    date: datetime | None                      # aware; None when missing or unparsable
    headers: dict[str, tuple[str, ...]]        # lower-case name -> decoded values, in order
    content_type: str                          # top-level, lower-case
    body_text: str                             # the full readable text (HTML converted if needed)
    body_html: str | None                      # the HTML part as sent, when there is one
    new_text: str                              # body_text minus the quoted history
    quoted_text: str                           # the quoted history folded away ("" if none)
    attachments: tuple[Attachment, ...]
    charsets: tuple[CharsetNote, ...]
    language: str                              # "zh" | "en": what the requester wrote in
    raw_sha256: str
    raw_size: int
    report: Report | None = None
    defects: tuple[str, ...] = field(default=())

    def header(self, name: str) -> str | None:
        """The first value of a header, or None."""
        values = self.headers.get(name.lower())
        return values[0] if values else None
