"""Which attachments are signatures (S/MIME, PGP): kept, but never shown or forwarded as
files. Read by the parser (a pure worker: no database imports here) and by stored rows."""

from __future__ import annotations

SIGNATURE_TYPES = frozenset(
    {"application/pkcs7-signature", "application/x-pkcs7-signature", "application/pgp-signature"}
)


def is_signature(content_type: str) -> bool:
    """Whether an attachment of this content type is a signature (also for stored rows)."""
    return content_type.strip().lower() in SIGNATURE_TYPES
