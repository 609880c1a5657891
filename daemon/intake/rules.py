"""Decide that a message must not become a ticket: loops, bounces, reports, auto-replies, lists.

A support desk that answers automatic mail talks to itself: an out-of-office answers our
acknowledgement, we acknowledge the out-of-office, and so on. These rules recognise such mail
from its headers (RFC 3834 and what real MTAs and mail clients send). Each rule is a small
named function that returns a :class:`Finding` (the reason, and the header that decided it) or
None; :data:`RULES` lists them in order with the kind of mail each one recognises, and
:func:`first_match` runs them. Rules only decide: ``pipeline.decide`` turns the
:class:`RuleHit` into an "ignored" or "bounce" decision (a value, not an exception) that the
pipeline acts on, and ``ticketd inspect`` shows which rule and header matched.

The rules err towards opening a ticket. A person's mail must never be dropped because of a
guess, so subject heuristics are limited to the well-known auto-reply prefixes followed by a
colon, and signs that are only *probably* automatic (an ``X-Loop`` naming somebody else, a
``noreply`` sender) do not stop a ticket; they only stop automatic answers, see
:func:`is_auto_sender`.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import NamedTuple

from daemon.addresses import normalize
from daemon.intake.parsed import ParsedMail
from daemon.intake.reports import DELIVERY_STATUS, bounce_evidence

__all__ = [
    "KINDS",
    "RULES",
    "Finding",
    "Rule",
    "RuleContext",
    "RuleHit",
    "first_match",
    "is_auto_sender",
]

KINDS = frozenset({"auto-reply", "bounce", "list", "loop", "report"})


@dataclass(frozen=True)
class RuleContext:
    """What the rules need to know about us.

    ``own_addresses`` are our support addresses (stored lower-case), ``loop_header`` the header
    our outgoing mail carries (e.g. "X-Ticketd-Loop") and ``loop_value`` our instance's value
    for it.
    """

    own_addresses: frozenset[str]
    loop_header: str
    loop_value: str
    own_mailboxes: frozenset[str] = field(default=frozenset(), init=False, repr=False)

    def __post_init__(self) -> None:
        lowered = frozenset(address.strip().lower() for address in self.own_addresses)
        object.__setattr__(self, "own_addresses", lowered)
        object.__setattr__(self, "own_mailboxes", frozenset(normalize(a) for a in lowered))
        if not re.fullmatch(r"[!-9;-~]*", self.loop_header):
            raise ValueError(f"loop_header must be a header name, got {self.loop_header!r}")

    def is_own(self, address: str) -> bool:
        """One of our mailboxes, whatever ``+tag`` it carries (``support+<VERP tag>@``)."""
        return normalize(address) in self.own_mailboxes


@dataclass(frozen=True)
class RuleHit:
    """The rule that matched: its name, the kind of mail, a reason and the deciding header."""

    rule: str
    kind: str      # "auto-reply" | "bounce" | "list" | "loop" | "report"
    reason: str
    header: str | None

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"kind must be one of {sorted(KINDS)}, got {self.kind!r}")


class Finding(NamedTuple):
    """What one rule returns when it matches: why, and which header said so."""

    reason: str
    header: str | None


Check = Callable[[ParsedMail, RuleContext], Finding | None]


@dataclass(frozen=True)
class Rule:
    """One entry of :data:`RULES`: a check function and the kind of mail it recognises."""

    check: Check
    kind: str

    @property
    def name(self) -> str:
        return self.check.__name__

    @property
    def description(self) -> str:
        """The first line of the check's docstring, for ``ticketd inspect``."""
        lines = (self.check.__doc__ or "").strip().splitlines()
        return lines[0] if lines else ""


# --- helpers -----------------------------------------------------------------------------

_NO_VALUES = frozenset({"no", "false", "0", "off"})
# Exchange X-Auto-Response-Suppress values that mark the mail itself as automatic.
_SUPPRESS_AUTO = frozenset({"all", "oof", "autoreply"})
_PRECEDENCE_AUTO = frozenset({"bulk", "junk", "auto_reply", "auto-reply"})
# Subject prefixes auto-responders use, each followed by ":" (ASCII or full-width).
_AUTO_SUBJECT = re.compile(
    r"^\s*(?:automatic reply|auto[- ]?reply|out of (?:the )?office(?: auto[- ]?reply)?"
    r"|abwesenheitsnotiz|automatische antwort|réponse automatique|自动回复|自动答复)\s*[:：]",
    re.IGNORECASE,
)
# Lotus Notes' "Auto:" is also an ordinary word, so it counts only on a reply to a thread.
_AUTO_SUBJECT_SHORT = re.compile(r"^\s*auto\s*[:：]", re.IGNORECASE)
# RFC 3834 section 2 and common practice: senders that never want an automatic answer.
_NO_ANSWER_LOCAL = re.compile(
    r"^(?:mailer[-_]?daemon|postmaster|no[-_.]?reply|do[-_.]?not[-_.]?reply|bounces?"
    r"|owner-.*|.*-request|.*-bounces?|listserv|majordomo)(?:\+.*)?$",
    re.IGNORECASE,
)


def _values(mail: ParsedMail, name: str) -> tuple[str, ...]:
    return mail.headers.get(name.lower(), ())


def _keyword(value: str) -> str:
    """``"Auto-Replied; owner=x"`` -> ``"auto-replied"``."""
    return value.partition(";")[0].strip().lower()


def _list_id_is_ours(value: str, context: RuleContext) -> bool:
    """A Google Group or alias list that *is* our support address delivers real customers."""
    match = re.search(r"<([^<>]+)>", value)
    list_id = (match.group(1) if match else value).strip().lower()
    return any(list_id == address.replace("@", ".") for address in context.own_addresses)


def _addresses_in(value: str) -> set[str]:
    return {address.lower() for address in re.findall(r"[^\s<>,;\"']+@[^\s<>,;\"']+", value)}


# --- rules -------------------------------------------------------------------------------


def loop_header(mail: ParsedMail, context: RuleContext) -> Finding | None:
    """Our loop header is present: this is mail a ticketd sent (ours or another instance's)."""
    values = _values(mail, context.loop_header) if context.loop_header else ()
    if not values:
        return None
    value = values[0].strip()
    whose = "ours" if value == context.loop_value else "another ticketd"
    return Finding(f"{context.loop_header}: {value} ({whose})", context.loop_header)


def own_address(mail: ParsedMail, context: RuleContext) -> Finding | None:
    """The mail comes From one of our own support addresses."""
    if mail.from_ is not None and mail.from_.email and context.is_own(mail.from_.email):
        return Finding(f"sent from our own address {mail.from_.email}", "From")
    return None


def x_loop(mail: ParsedMail, context: RuleContext) -> Finding | None:
    """X-Loop names one of our addresses or our loop value (procmail/RT-style loop mark)."""
    ours = context.own_addresses | ({context.loop_value.lower()} if context.loop_value else set())
    for value in _values(mail, "x-loop"):
        if value.strip().lower() in ours or any(context.is_own(a) for a in _addresses_in(value)):
            return Finding(f"X-Loop: {value.strip()} (ours)", "X-Loop")
    return None


def delivery_report(mail: ParsedMail, context: RuleContext) -> Finding | None:
    """The mail is a delivery status report (RFC 3464 DSN or a recognised text bounce)."""
    report = mail.report
    if report is None or report.report_type != DELIVERY_STATUS:
        return None
    details = ", ".join(
        part
        for part in (
            report.action,
            report.status,
            f"for {', '.join(report.recipients)}" if report.recipients else None,
        )
        if part
    )
    reason = "delivery status report" + (f" ({details})" if details else "")
    if mail.content_type in ("multipart/report", "message/delivery-status"):
        return Finding(reason, "Content-Type")
    evidence = bounce_signs(mail, context)  # a text bounce: name the header that gave it away
    return Finding(reason, evidence.header if evidence else None)


def bounce_signs(mail: ParsedMail, context: RuleContext) -> Finding | None:
    """A bounce without a DSN part: MAILER-DAEMON sender, bounce subject, null sender..."""
    evidence = bounce_evidence(
        sender=mail.from_.email if mail.from_ else "",
        sender_name=mail.from_.name if mail.from_ else "",
        subject=mail.subject,
        return_path=mail.header("return-path"),
        failed_recipients=mail.header("x-failed-recipients"),
        auto_submitted=mail.header("auto-submitted"),
    )
    return Finding(f"bounce: {evidence.reason}", evidence.header) if evidence else None


def other_report(mail: ParsedMail, context: RuleContext) -> Finding | None:
    """A read receipt (MDN), abuse complaint (ARF) or other multipart/report."""
    if mail.report is None or mail.report.report_type == DELIVERY_STATUS:
        return None
    return Finding(f"{mail.report.report_type} report", "Content-Type")


def auto_submitted(mail: ParsedMail, context: RuleContext) -> Finding | None:
    """Auto-Submitted with any value but "no" (RFC 3834 section 5)."""
    for value in _values(mail, "auto-submitted"):
        if _keyword(value) not in ("", "no"):
            return Finding(f"Auto-Submitted: {value.strip()}", "Auto-Submitted")
    return None


def autoreply_headers(mail: ParsedMail, context: RuleContext) -> Finding | None:
    """X-Autoreply, X-Autorespond or X-Autoresponse set by an auto-responder."""
    for name in ("X-Autoreply", "X-Autorespond", "X-Autoresponse"):
        for value in _values(mail, name):
            if _keyword(value) not in _NO_VALUES:
                return Finding(f"{name}: {value.strip()}", name)
    return None


def exchange_suppress(mail: ParsedMail, context: RuleContext) -> Finding | None:
    """X-Auto-Response-Suppress of All, OOF or AutoReply (Exchange's automatic mail)."""
    for value in _values(mail, "x-auto-response-suppress"):
        tokens = {token.strip().lower() for token in re.split(r"[,;\s]+", value)}
        if tokens & _SUPPRESS_AUTO:
            return Finding(f"X-Auto-Response-Suppress: {value.strip()}",
                           "X-Auto-Response-Suppress")
    return None


def mailing_list(mail: ParsedMail, context: RuleContext) -> Finding | None:
    """List-Id (RFC 2919), or List-Unsubscribe with Precedence: list; not our own alias list."""
    for value in _values(mail, "list-id"):
        if not _list_id_is_ours(value, context):
            return Finding(f"mailing list mail (List-Id: {value.strip()})", "List-Id")
    precedences = {_keyword(value) for value in _values(mail, "precedence")}
    if _values(mail, "list-unsubscribe") and "list" in precedences:
        return Finding("mailing list mail (List-Unsubscribe with Precedence: list)",
                       "List-Unsubscribe")
    return None


def precedence_list(mail: ParsedMail, context: RuleContext) -> Finding | None:
    """Precedence: list (mail sent through a list server)."""
    if any(_keyword(value) == "list" for value in _values(mail, "precedence")):
        return Finding("Precedence: list", "Precedence")
    return None


def precedence_bulk(mail: ParsedMail, context: RuleContext) -> Finding | None:
    """Precedence: bulk, junk or auto_reply (bulk mail and auto-responders)."""
    for value in _values(mail, "precedence"):
        if _keyword(value) in _PRECEDENCE_AUTO:
            return Finding(f"Precedence: {value.strip()}", "Precedence")
    return None


def auto_reply_subject(mail: ParsedMail, context: RuleContext) -> Finding | None:
    """Only well-known auto-reply subject prefixes ("Automatic reply:", "自动回复:", ...)."""
    subject = mail.subject.strip()
    if _AUTO_SUBJECT.match(subject) or (
        _AUTO_SUBJECT_SHORT.match(subject) and (mail.in_reply_to or mail.references)
    ):
        return Finding(f"auto-reply subject {subject[:80]!r}", "Subject")
    return None


def null_sender(mail: ParsedMail, context: RuleContext) -> Finding | None:
    """Return-Path: <> (null envelope sender): a bounce or an automatic reply (RFC 3834 §3.1)."""
    value = mail.header("return-path")
    if value is not None and re.sub(r"\s", "", value) == "<>":
        return Finding("null sender (Return-Path: <>): a bounce or an automatic reply",
                       "Return-Path")
    return None


RULES: tuple[Rule, ...] = (
    Rule(loop_header, "loop"),
    Rule(own_address, "loop"),
    Rule(x_loop, "loop"),
    Rule(delivery_report, "bounce"),
    Rule(bounce_signs, "bounce"),
    Rule(other_report, "report"),
    Rule(auto_submitted, "auto-reply"),
    Rule(autoreply_headers, "auto-reply"),
    Rule(exchange_suppress, "auto-reply"),
    Rule(mailing_list, "list"),
    Rule(precedence_list, "list"),
    Rule(precedence_bulk, "auto-reply"),
    Rule(auto_reply_subject, "auto-reply"),
    # Null sender comes last: the rules above name the kind more precisely when they can.
    Rule(null_sender, "auto-reply"),
)


def first_match(mail: ParsedMail, context: RuleContext) -> RuleHit | None:
    """Run :data:`RULES` in order; the first that matches says why ``mail`` is no ticket."""
    for rule in RULES:
        finding = rule.check(mail, context)
        if finding is not None:
            return RuleHit(rule=rule.name, kind=rule.kind, reason=finding.reason,
                           header=finding.header)
    return None


def is_auto_sender(mail: ParsedMail, context: RuleContext | None = None) -> bool:
    """True when no automatic mail (acknowledgement, notification) may be sent to this sender.

    Every rule above counts, and so do signs too weak to refuse a ticket: any ``X-Loop``, and a
    sender such as ``noreply@``, ``postmaster@``, ``owner-*`` or ``*-request`` (RFC 3834 §2).
    Without a ``context`` the rules that need one (our addresses, our loop header) are skipped.
    """
    checked = context or RuleContext(own_addresses=frozenset(), loop_header="", loop_value="")
    if first_match(mail, checked) is not None:
        return True
    if _values(mail, "x-loop"):
        return True
    if mail.from_ is None or "@" not in mail.from_.email:
        return True  # nobody to answer
    local = mail.from_.email.rpartition("@")[0]
    return _NO_ANSWER_LOCAL.match(local) is not None
