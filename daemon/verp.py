"""VERP tags: an envelope sender per outgoing mail and recipient that only we can make.

Why: a bounce is sent to the envelope sender (``MAIL FROM``) of the mail that failed. When
that address is ``support+<tag>@corp.example`` and the tag names one outbox mail and one of
its recipients, a bounce that comes back to it says, by where it arrived, which recipient
failed; what its body claims (``Final-Recipient``) no longer matters. A forged report that
merely names one of our Message-IDs cannot hold anybody, because its author cannot make a tag.

The tag is ``<outbox id>-<recipient index>-<mac>`` (lower case, base 36 and base 32, so an
MTA that folds the local part's case changes nothing):

* ``mac`` is 100 bits of HMAC-SHA256 over the outbox id, the index and the recipient's
  address, keyed with a random 128-bit key stored on the outbox row (``OutboxMail.verp_key``)
  and never sent anywhere. A per-row key rather than one site secret: nothing to configure or
  rotate, every instance of a cluster already shares it (the database), and re-sending a row
  (a crashed claim, ``outbox resend ID``) makes the same tag again. Not derived from the
  Message-ID token alone: every recipient of a mail sees that token, so a copied colleague
  could make the requester's tag.
* one tag per recipient, so each recipient's copy goes in its own SMTP transaction: a copied
  colleague sees only their own envelope sender (``Return-Path``), which can hold only them.
* RFC 5321 §4.5.3.1.1 caps a local part at 64 octets; the longest tag is :data:`MAX_TAG`
  characters, so ``[mail] verp`` needs the support address's local part to leave room for it
  (checked with the config, :func:`room_for_tag`).

This module is pure (no database, no config): the outbox makes addresses with :func:`address`,
intake reads them back with :func:`tag_in`, :func:`parse` and :func:`verify`.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass

from daemon.addresses import normalize

KEY_BYTES = 16           # the per-row key: 128 random bits, hex in the database
MAC_CHARS = 20           # 20 base32 characters = 100 bits
MAX_LOCAL_PART = 64      # RFC 5321 §4.5.3.1.1
_ID_CHARS = 13           # base 36 of the largest 64-bit row id
_INDEX_CHARS = 2         # base 36 of a recipient index (at most 1295 recipients)
MAX_TAG = _ID_CHARS + 1 + _INDEX_CHARS + 1 + MAC_CHARS
DELIMITER = "+"

_TAG = re.compile(rf"([0-9a-z]{{1,{_ID_CHARS}}})-([0-9a-z]{{1,{_INDEX_CHARS}}})"
                  rf"-([a-z2-7]{{{MAC_CHARS}}})")
_BASE36 = "0123456789abcdefghijklmnopqrstuvwxyz"


@dataclass(frozen=True)
class Tag:
    """A tag as read from an address; it proves something only once :func:`verify` says so."""

    outbox_id: int
    index: int
    mac: str


def new_key() -> str:
    """A fresh per-row key (the outbox row's default)."""
    return secrets.token_hex(KEY_BYTES)


def _base36(value: int) -> str:
    if value < 0:
        raise ValueError("a VERP number is never negative")
    digits = ""
    while True:
        value, digit = divmod(value, 36)
        digits = _BASE36[digit] + digits
        if not value:
            return digits


def _mac(key: str, outbox_id: int, index: int, recipient: str) -> str:
    message = f"ticketd-verp:{outbox_id}:{index}:{recipient.strip().lower()}".encode()
    digest = hmac.new(bytes.fromhex(key), message, hashlib.sha256).digest()
    return base64.b32encode(digest).decode("ascii")[:MAC_CHARS].lower()


def make_tag(outbox_id: int, index: int, recipient: str, key: str) -> str:
    """The tag of ``recipient`` (the ``index``-th of outbox row ``outbox_id``)."""
    if len(_base36(index)) > _INDEX_CHARS:
        raise ValueError(f"a VERP tag names at most {36 ** _INDEX_CHARS} recipients")
    return f"{_base36(outbox_id)}-{_base36(index)}-{_mac(key, outbox_id, index, recipient)}"


def address(base: str, tag: str) -> str:
    """``support@corp.example`` + tag -> ``support+<tag>@corp.example``."""
    local, at, domain = base.strip().rpartition("@")
    if not at or not local:
        raise ValueError(f"not an address to tag: {base!r}")
    tagged = f"{local}{DELIMITER}{tag}"
    if len(tagged) > MAX_LOCAL_PART:
        raise ValueError(f"the VERP local part {tagged!r} is longer than {MAX_LOCAL_PART}")
    return f"{tagged}@{domain}"


def room_for_tag(base: str) -> bool:
    """Whether every tag fits after ``base``'s local part (RFC 5321: 64 octets)."""
    local = base.strip().rpartition("@")[0]
    return len(local.encode("utf-8")) + len(DELIMITER) + MAX_TAG <= MAX_LOCAL_PART


def tag_in(candidate: str, own_mailboxes: frozenset[str]) -> str | None:
    """The tag text of ``candidate`` when it is one of our mailboxes with a ``+tag``, else None.

    ``own_mailboxes`` are our addresses normalised (:func:`daemon.addresses.normalize`). The
    tag is what follows the last delimiter, so a support address with a ``+`` of its own keeps
    working. Nothing is proven yet: see :func:`parse` and :func:`verify`.
    """
    text = candidate.strip().strip("<>").strip()
    local, at, _ = text.rpartition("@")
    if not at or DELIMITER not in local or normalize(text) not in own_mailboxes:
        return None
    return local.rpartition(DELIMITER)[2].lower() or None


def parse(tag: str) -> Tag | None:
    """The parts of a well-formed tag, else None (any other ``+detail`` someone wrote)."""
    match = _TAG.fullmatch(tag.strip().lower())
    if match is None:
        return None
    return Tag(int(match.group(1), 36), int(match.group(2), 36), match.group(3))


def verify(tag: Tag, key: str | None, recipients: list[str]) -> str | None:
    """The recipient ``tag`` was made for, when it was made with ``key`` for this row's
    ``recipients``; None for a guessed, tampered or foreign tag (constant-time compare)."""
    if not key or not 0 <= tag.index < len(recipients):
        return None
    recipient = recipients[tag.index]
    expected = _mac(key, tag.outbox_id, tag.index, recipient)
    return recipient.strip().lower() if hmac.compare_digest(expected, tag.mac) else None


__all__ = ["MAX_TAG", "Tag", "address", "make_tag", "new_key", "parse", "room_for_tag",
           "tag_in", "verify"]
