"""Does a mail really come from the handler its From line names?

A From line is not an identity: anyone can write ``From: wang@corp``. A handler's mail may
change a ticket or reach a requester only with one of two proofs:

1. **token**: it answers (In-Reply-To / References) a mail ticketd sent *to that handler's
   address* on that ticket. Our Message-IDs carry 160 random bits, so only someone who
   received that mail can name it.
2. **auth-results**: the topmost ``Authentication-Results`` header (RFC 8601) was added by one
   of our own receiving servers (``[mail] trusted_authserv_ids``) and says ``dmarc=pass``, or
   ``dkim=pass`` with ``header.d`` equal to the From domain. Headers from any other server are
   ignored: a sender can write any header it likes below ours.

Deciding only: :func:`judge` reads the mail and the outbox and returns a :class:`Proof`.
"""

from __future__ import annotations

import re
from collections.abc import Collection
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from daemon.intake.parsed import ParsedMail
from daemon.intake.threader import bounded
from daemon.models import OutboxMail


@dataclass(frozen=True)
class Proof:
    proven: bool
    how: str          # "token" | "auth-results" | "none"
    reason: str       # one line, for the event log and `inspect`


_RESULT = re.compile(r"\b(dmarc|dkim|spf)\s*=\s*([a-z]+)((?:\s+[a-z.]+\s*=\s*[^\s;]+)*)",
                     re.IGNORECASE)
_PROP = re.compile(r"([a-z.]+)\s*=\s*([^\s;]+)", re.IGNORECASE)


def _strip_comments(value: str) -> str:
    out, depth = [], 0
    for ch in value:
        if ch == "(":
            depth += 1
        elif ch == ")" and depth:
            depth -= 1
        elif not depth:
            out.append(ch)
    return "".join(out)


def auth_results(mail: ParsedMail, trusted_ids: Collection[str]) -> tuple[bool, str]:
    """(passes, why) from the topmost Authentication-Results header of a trusted server."""
    values = mail.headers.get("authentication-results", ())
    if not values:
        return False, "no Authentication-Results header"
    top = _strip_comments(values[0]).strip()
    authserv = top.split(";", 1)[0].strip().split()[0].lower() if top else ""
    if authserv not in {t.lower() for t in trusted_ids}:
        return False, (f"the topmost Authentication-Results is from {authserv or '?'}, not one "
                       "of [mail] trusted_authserv_ids")
    domain = (mail.from_.email.rpartition("@")[2] if mail.from_ else "").lower()
    for raw_method, raw_result, props in _RESULT.findall(top):
        method, result = raw_method.lower(), raw_result.lower()
        if method == "dmarc" and result == "pass":
            return True, f"{authserv}: dmarc=pass"
        if method == "dkim" and result == "pass":
            signer = dict((k.lower(), v.lower()) for k, v in _PROP.findall(props))
            if signer.get("header.d") == domain:
                return True, f"{authserv}: dkim=pass header.d={domain}"
    return False, f"{authserv}: no dmarc=pass nor dkim=pass for {domain}"


def failing_dmarc(mail: ParsedMail, trusted_ids: Collection[str]) -> str | None:
    """Why a trusted server says this From is forged (dmarc=fail, or spf and dkim both fail),
    or None."""
    values = mail.headers.get("authentication-results", ())
    if not values or not trusted_ids:
        return None
    top = _strip_comments(values[0]).strip()
    authserv = top.split(";", 1)[0].strip().split()[0].lower() if top else ""
    if authserv not in {t.lower() for t in trusted_ids}:
        return None
    results = {m.lower(): r.lower() for m, r, _ in _RESULT.findall(top)}
    if results.get("dmarc") == "fail":
        return f"{authserv}: dmarc=fail"
    if results.get("spf") == "fail" and results.get("dkim") in ("fail", "none", None) and \
            "dkim" in results:
        return f"{authserv}: spf=fail and dkim={results['dkim']}"
    return None


def judge(session: Session, mail: ParsedMail, ticket_id: int,
          trusted_ids: Collection[str]) -> Proof:
    """Whether the handler named in From proves they wrote ``mail`` on ticket ``ticket_id``."""
    sender = mail.from_.email.lower() if mail.from_ else ""
    ids = bounded((*mail.in_reply_to, *mail.references))
    if ids and sender:
        rows = session.execute(select(OutboxMail.message_id, OutboxMail.recipients).where(
            OutboxMail.message_id.in_(ids), OutboxMail.ticket_id == ticket_id))
        for message_id, recipients in rows:
            if sender in {str(r).lower() for r in recipients}:
                return Proof(True, "token", f"answers our mail {message_id} sent to {sender}")
    passes, why = auth_results(mail, trusted_ids)
    if passes:
        return Proof(True, "auth-results", why)
    return Proof(False, "none", f"no reply to a mail we sent to {sender} and {why}")
