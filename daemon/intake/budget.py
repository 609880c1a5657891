"""The hourly new-ticket budget answered for a whole batch, not with one query per message.

:func:`counted_over_budget` is the rule: a sender's normalised mailbox (and, with
``[mail] max_new_tickets_per_domain_hour``, its domain) may open so many tickets per rolling
hour. Asked once per new message it is one count query each. A batch knows its senders
before it begins, so :func:`prime` counts the recent tickets of all of them in one grouped,
indexed query (``tickets.requester_mailbox`` / ``requester_domain`` with ``created_at``),
keeps the counts in the transaction's ``session.info``, and :func:`counted` adds each ticket
the batch opens. :func:`over_budget` then answers exactly what :func:`counted_over_budget`
would at the same ``now``: the same predicate
(:func:`same_mailbox`, :func:`in_domain`) decides which tickets count. Any rollback (one
message's savepoint included) drops the counts; the next question counts again from the
database, so a rolled-back ticket is never counted. A mailbox that was not primed falls back to
the single query.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import ColumnElement, func, or_, select
from sqlalchemy.orm import Session

from daemon.addresses import normalize
from daemon.db import BatchMemory, drop, keep, kept
from daemon.models import Ticket

_KEY = "ticketd.budget"
WINDOW = timedelta(hours=1)
# Senders counted in one query: a batch of 50 messages names at most 50.
MAX_PRIMED = 500


@dataclass
class _Counts(BatchMemory):
    since: datetime                        # the window's start when primed
    domains: bool                          # were the domains counted too?
    wanted: frozenset[str]                 # the primed mailboxes
    mailboxes: dict[str, list[datetime]] = field(default_factory=dict)
    by_domain: dict[str, list[datetime]] = field(default_factory=dict)


def same_mailbox(email: str, mailbox: str) -> bool:
    """Does ``requester_email`` count for the normalised ``mailbox``? What
    :func:`counted_over_budget` counts (the stored ``requester_mailbox`` is
    ``requester_email`` normalised: ``= local@domain`` or ``local+tag@domain``), for the
    lower-case addresses intake stores."""
    local, _, domain = mailbox.rpartition("@")
    tail = f"@{domain}"
    head = f"{local}+"
    return email == mailbox or (email.startswith(head) and email.endswith(tail)
                                and len(email) >= len(head) + len(tail))


def in_domain(email: str, domain: str) -> bool:
    """Does ``requester_email`` count for ``domain`` (``LIKE %@domain``)?"""
    return email.endswith(f"@{domain}")


def _domain(mailbox: str) -> str:
    return mailbox.rpartition("@")[2]


@dataclass(frozen=True)
class Budget:
    """Why a sender may open no new ticket now: who is over, how many, the limit."""

    who: str          # the normalised mailbox, or "@domain"
    count: int
    limit: int

    @property
    def reason(self) -> str:
        key = "max_new_tickets_per_domain_hour" if self.who.startswith("@") \
            else "max_new_tickets_per_hour"
        return (f"rate limit: {self.count} new tickets from {self.who} in the last hour "
                f"([mail] {key} = {self.limit})")


def counted_over_budget(session: Session, mailbox: str, now: datetime, limit: int,
                        domain_limit: int) -> Budget | None:
    """The rule, asked of the database alone: whether ``mailbox`` (normalised) or its domain
    opened ``limit`` (``domain_limit``) or more tickets in the hour before ``now``; 0
    switches a limit off. Indexed counts over ``tickets.requester_mailbox`` /
    ``requester_domain`` with ``created_at``."""
    since = now - WINDOW
    if limit:
        count = session.scalar(select(func.count()).select_from(Ticket).where(
            Ticket.created_at > since, same_mailbox_clause(mailbox))) or 0
        if count >= limit:
            return Budget(mailbox, count, limit)
    if domain_limit:
        domain = mailbox.rpartition("@")[2]
        count = session.scalar(select(func.count()).select_from(Ticket).where(
            Ticket.created_at > since, in_domain_clause(domain))) or 0
        if count >= domain_limit:
            return Budget(f"@{domain}", count, domain_limit)
    return None


def same_mailbox_clause(mailbox: str) -> ColumnElement[bool]:
    """``requester_email`` is this (normalised) mailbox, with or without a ``+tag``: the
    stored normalised mailbox, indexed with ``created_at``."""
    return Ticket.requester_mailbox == mailbox


def in_domain_clause(domain: str) -> ColumnElement[bool]:
    """``requester_email`` is an address at ``domain`` (indexed with ``created_at``)."""
    return Ticket.requester_domain == domain


def prime(session: Session, senders: Iterable[str], now: datetime, *, mailboxes: bool,
          domains: bool) -> None:
    """Read, in one query, when each sender's mailbox (``mailboxes``) and domain
    (``domains``) opened tickets in the hour before ``now``; :func:`over_budget` answers from
    this for the rest of the transaction, at ``now`` or later."""
    wanted = frozenset(list(dict.fromkeys(normalize(s) for s in senders if s))[:MAX_PRIMED])
    if not (mailboxes or domains) or not wanted:
        drop(session, _KEY)
        return
    counts = _Counts(session.get_transaction(), now - WINDOW, domains, wanted)
    counts.mailboxes = {m: [] for m in wanted} if mailboxes else {}
    keep(session, _KEY, counts)
    _load(session, counts)


def _load(session: Session, counts: _Counts) -> None:
    """The tickets that count, as (requester, opened at): a mailbox over its limit opens no
    more, so these are few (at most the limit per sender, the domain limit per domain)."""
    for times in counts.mailboxes.values():
        times.clear()
    counts.by_domain = {_domain(m): [] for m in counts.wanted} if counts.domains else {}
    counts.stale = False
    # same_mailbox_clause / in_domain_clause for all of them: indexed lookups
    matches = []
    if counts.mailboxes:
        matches.append(Ticket.requester_mailbox.in_(sorted(counts.mailboxes)))
    if counts.by_domain:
        matches.append(Ticket.requester_domain.in_(sorted(counts.by_domain)))
    rows = session.execute(
        select(Ticket.requester_email, Ticket.created_at)
        .where(Ticket.created_at > counts.since, or_(*matches)))
    for email, created_at in rows:
        _add(counts, email, created_at)


def _add(counts: _Counts, email: str, created_at: datetime) -> None:
    mailbox = normalize(email)
    if mailbox in counts.mailboxes and same_mailbox(email, mailbox):
        counts.mailboxes[mailbox].append(created_at)
    for domain, times in counts.by_domain.items():
        if in_domain(email, domain):
            times.append(created_at)


def over_budget(session: Session, mailbox: str, now: datetime, limit: int,
                domain_limit: int) -> Budget | None:
    """:func:`counted_over_budget`, answered from the batch's tickets when it
    has them (the same answer: the same tickets, the same window)."""
    counts = kept(session, _KEY, _Counts)
    if counts is None or mailbox not in counts.wanted or now - WINDOW < counts.since \
            or (limit and mailbox not in counts.mailboxes) \
            or (domain_limit and not counts.domains):
        return counted_over_budget(session, mailbox, now, limit, domain_limit)
    if counts.stale:
        _load(session, counts)
    since = now - WINDOW
    if limit:
        count = sum(1 for at in counts.mailboxes[mailbox] if at > since)
        if count >= limit:
            return Budget(mailbox, count, limit)
    if domain_limit:
        domain = _domain(mailbox)
        count = sum(1 for at in counts.by_domain[domain] if at > since)
        if count >= domain_limit:
            return Budget(f"@{domain}", count, domain_limit)
    return None


def counted(session: Session, requester_email: str, created_at: datetime) -> None:
    """The batch opened a ticket for ``requester_email`` at ``created_at``."""
    counts = kept(session, _KEY, _Counts)
    if counts is not None and not counts.stale:
        _add(counts, requester_email, created_at)


def forget(session: Session) -> None:
    """Drop the batch's counts: every question is asked with its own query."""
    drop(session, _KEY)
