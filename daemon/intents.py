"""What a change asks to be mailed: the hand-over from the process to the outgoing side.

:mod:`daemon.workflow` returns these; :mod:`daemon.replies.notify` turns each into a queued
mail. A plain value low in the layer map, so neither side imports the other.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from daemon.addresses import Address


@dataclass(frozen=True)
class MailIntent:
    """A mail a change implies: ``kind`` (a template kind), who gets it, and the kind's own
    variables (the ticket's number, subject and support identity are added by notify)."""

    kind: str
    to: tuple[Address, ...]
    cc: tuple[Address, ...] = ()
    locale: str = "en"
    values: Mapping[str, Any] = field(default_factory=dict)
    to_requester: bool = False        # the requester's address may be replaced by Reply-To
    automatic: bool = True            # RFC 3834 auto mail (the loop brake counts it)
    sender_name: str | None = None    # From display name (a relay: "王工 via 技术支持")
    attachment_ids: tuple[int, ...] = ()   # stored attachments to attach
