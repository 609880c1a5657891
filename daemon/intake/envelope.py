"""Where a mail was delivered to (its envelope recipient), and what a VERP tag there proves.

A bounce goes to the envelope sender of the mail that failed; with ``[mail] verp`` that is
``support+<tag>@domain`` (:mod:`daemon.verp`). The address a mail was delivered to is not in
its To (a DSN's To is whatever the reporting MTA wrote) but in the envelope:

* the ``RCPT TO`` an LMTP delivery names (``ticketd lmtp``; :class:`~daemon.intake.sources.RawMail`
  ``envelope_to``);
* the headers the delivering MTA adds on top: ``Delivered-To`` (Postfix ``local`` and the
  pipe flag ``D``, Dovecot LMTP, qmail), ``X-Original-To`` (Postfix), ``Envelope-To`` (Exim).
  Dovecot's LDA, as our test server runs it, adds none of them itself: the MTA does.

Anyone can write such a header into a mail, and that is fine: the tag is the proof, not the
header. A tag verifies only under the random key of the outbox row it names, so a header with
a guessed, altered or foreign tag proves nothing (:class:`VerpVerdict` says why), and a
recipient who copies the tag of their own copy can only hold themselves.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from email.utils import getaddresses

from sqlalchemy import select
from sqlalchemy.orm import Session

from daemon import verp
from daemon.intake.parsed import ParsedMail
from daemon.models import OutboxMail

ENVELOPE_HEADERS = ("delivered-to", "x-original-to", "envelope-to")


@dataclass(frozen=True)
class VerpVerdict:
    """What the VERP tag a mail was delivered to proves (``proven``) and why."""

    address: str                    # the envelope address the tag was read from
    proven: bool
    reason: str
    outbox_id: int | None = None    # set when proven: the mail the tag was made for ...
    message_id: str | None = None
    ticket_id: int | None = None
    recipient: str | None = None    # ... and the recipient of that copy


def envelope_recipients(mail: ParsedMail, rcpts: Sequence[str] = ()) -> tuple[str, ...]:
    """The addresses ``mail`` was delivered to: the LMTP ``RCPT TO`` first, then the
    delivering MTA's headers, each once, lower case."""
    values = [v for name in ENVELOPE_HEADERS for v in mail.headers.get(name, ())]
    found = [*rcpts, *(address for _, address in getaddresses(values))]
    return tuple(dict.fromkeys(a.strip().strip("<>").strip().lower() for a in found if a))


def judge(session: Session, mail: ParsedMail, rcpts: Sequence[str],
          own_mailboxes: frozenset[str]) -> VerpVerdict | None:
    """The verdict on the first VERP tag among ``mail``'s envelope recipients that verifies,
    else on the first one that does not; None when it came to no tagged address of ours."""
    failed: VerpVerdict | None = None
    for address in envelope_recipients(mail, rcpts):
        text = verp.tag_in(address, own_mailboxes)
        if text is None:
            continue
        verdict = _verify(session, address, text)
        if verdict.proven:
            return verdict
        failed = failed or verdict
    return failed


def _verify(session: Session, address: str, text: str) -> VerpVerdict:
    tag = verp.parse(text)
    if tag is None:
        return VerpVerdict(address, False, f"{address}: +{text} is not a VERP tag of ours")
    row = session.execute(select(
        OutboxMail.id, OutboxMail.message_id, OutboxMail.ticket_id, OutboxMail.recipients,
        OutboxMail.verp_key).where(OutboxMail.id == tag.outbox_id)).first()
    if row is None:
        return VerpVerdict(address, False, f"{address}: the VERP tag names no mail we sent")
    recipient = verp.verify(tag, row.verp_key, list(row.recipients))
    if recipient is None:
        return VerpVerdict(address, False, f"{address}: the VERP tag does not verify "
                                           "(guessed or altered): it proves nothing")
    return VerpVerdict(address, True, f"came back to {address}, the VERP address of our "
                                      f"message {row.message_id} to {recipient}",
                       outbox_id=row.id, message_id=row.message_id, ticket_id=row.ticket_id,
                       recipient=recipient)
