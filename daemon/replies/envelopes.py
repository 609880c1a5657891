"""The SMTP envelopes of one outgoing mail: who it is from (``MAIL FROM``) and to whom.

Without ``[mail] verp`` a mail is one envelope from the support address to all its
recipients, as it always was. With it, each recipient gets their own envelope whose sender is
``support+<tag>@domain`` (:mod:`daemon.verp`): a bounce then comes back to an address that
names the recipient who failed, and a recipient's copy shows only their own tag. The header
``From`` is the same in every copy; only the envelope differs.

:func:`send` hands the envelopes to a transport one after another. When some copies were
accepted, a copy that failed is reported as that recipient refused (the mail counts as sent,
the ticket records the refusal), as SMTP itself reports a recipient refused among accepted
ones: retrying the whole mail would send the accepted copies twice. A server that cannot be
reached or refuses our login (``TransportUnavailable``, ``LoginRefused``) is raised at once,
as before: the outbox gives the mail back untried. (Should that happen between two copies,
after a dropped connection, the copies already accepted go again later with the same
Message-ID: a duplicate the recipient's client shows once, rather than a lost copy.)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from daemon import verp
from daemon.config import Config
from daemon.errors import TransportPermanent, TransportTemporary
from daemon.replies.transports import Transport


@dataclass(frozen=True)
class Envelope:
    """One SMTP transaction: ``MAIL FROM:<sender>`` and a ``RCPT TO`` for each recipient."""

    sender: str
    recipients: tuple[str, ...]


def envelopes(config: Config, *, outbox_id: int, sender: str, recipients: Sequence[str],
              verp_key: str | None) -> list[Envelope]:
    """The envelopes to send outbox row ``outbox_id`` in (see the module docstring).

    A row queued before VERP existed has no key and goes in one envelope from ``sender``.
    """
    if not config.mail.verp or not verp_key:
        return [Envelope(sender, tuple(recipients))]
    base = config.support.address
    return [Envelope(verp.address(base, verp.make_tag(outbox_id, index, rcpt, verp_key)),
                     (rcpt,)) for index, rcpt in enumerate(recipients)]


def send(transport: Transport, mail: Sequence[Envelope], raw: bytes) -> dict[str, str]:
    """Send ``raw`` in each envelope; returns the refused recipients (usually {}).

    When no copy is accepted the mail's failure is raised (temporary if any copy may succeed
    later), so the outbox retries or fails it as before; see the module docstring for a copy
    refused beside accepted ones.
    """
    refused: dict[str, str] = {}
    failures: list[TransportTemporary | TransportPermanent] = []
    for envelope in mail:
        try:
            refused.update(transport.send(envelope.sender, envelope.recipients, raw))
        except (TransportTemporary, TransportPermanent) as exc:
            failures.append(exc)
            refused.update({rcpt: str(exc) for rcpt in envelope.recipients})
    if failures and len(failures) == len(mail):
        raise next((f for f in failures if isinstance(f, TransportTemporary)), failures[0])
    return refused
