"""`ticketd templates preview`: the mail a kind would produce, sent nowhere, shown to an admin.

The message is built exactly as a real one (:mod:`daemon.replies.drafts` for the variables and
the recipient, the template store with its fallbacks, :func:`compose`), then shown readably:
headers decoded, the text body, and the HTML body as text, with the template files used and
which variables came from sample data. ``--raw`` prints the MIME bytes instead.

From a real ticket the variables come from its row and its first message; what a ticket cannot
know yet (a handler's reply text, a resolution) comes from the kind's sample. Without a ticket
the whole sample is used, so no database is needed. A handler-facing kind (``assigned``,
``sla_breach``) is addressed to a handler or team lead, as the real mail would be.
"""

from __future__ import annotations

import textwrap
from dataclasses import dataclass
from datetime import tzinfo
from email.message import EmailMessage

from inscriptis import get_text

from daemon import tickets
from daemon.addresses import Address
from daemon.app import App
from daemon.clock import format_time
from daemon.replies import drafts, templates
from daemon.replies.compose import compose, make_message_id
from daemon.replies.templates import RenderedMail

_HEADERS = ("From", "To", "Cc", "Subject", "Date", "Message-ID", "In-Reply-To", "References",
            "Auto-Submitted")


@dataclass(frozen=True)
class Preview:
    """A composed mail and how it was made."""

    message: EmailMessage
    rendered: RenderedMail
    audience: str  # requester, handler or lead
    gaps: tuple[str, ...]  # variables (or the recipient) taken from sample data


def build(app: App, kind: str, locale: str | None, number: str | None) -> Preview:
    cfg = app.config
    if number:
        with app.ready_db().transaction() as session:
            ticket = tickets.get(session, number)
            draft = drafts.from_ticket(app, ticket, kind, locale=locale, fill_gaps=True)
    else:
        draft = drafts.from_sample(app, kind, locale)
    rendered = templates.store(app).render(kind, draft.mail.locale, draft.mail)
    message_id, _ = make_message_id(cfg.support.domain)
    msg = compose(rendered, sender=Address(cfg.support.name, cfg.support.address),
                  to=draft.to, message_id=message_id, in_reply_to=draft.in_reply_to,
                  references=draft.references, date=app.clock.now(),
                  auto_submitted=kind != "reply",
                  loop_header=(cfg.mail.loop_header, cfg.support.address))
    return Preview(msg, rendered, drafts.audience(kind), draft.gaps)


def render(preview: Preview, zone: tzinfo) -> str:
    """The preview as an admin reads it."""
    msg = preview.message
    rendered = preview.rendered
    lines = [f"Template:       {', '.join(str(p) for p in rendered.templates)}"]
    if rendered.fallback:
        lines.append(f"Fallback:       {rendered.fallback}")
    lines.append(f"Written to:     the {preview.audience}")
    if preview.gaps:
        lines.append(f"Sample data:    {', '.join(preview.gaps)} (the ticket does not hold "
                     f"{'it' if len(preview.gaps) == 1 else 'them'})")
    lines.append("")
    for name in _HEADERS:
        value = msg[name]
        if value is None:
            continue
        if name == "Date":
            shown = format_time(value.datetime, zone)
        else:
            shown = " ".join(str(value).split())
        lines.append(f"{name + ':':<15} {shown}")
    lines += ["", "---- text ----", rendered.text.rstrip("\n")]
    if rendered.html is not None:
        lines += ["", "---- HTML, shown as text ----", _html_as_text(rendered.html)]
    return "\n".join(lines) + "\n"


def _html_as_text(html: str) -> str:
    text = textwrap.dedent(get_text(html))  # the layout's padding is no use in a terminal
    lines = [line.rstrip() for line in text.split("\n")]
    out: list[str] = []
    for line in lines:
        if line or (out and out[-1]):  # at most one blank line in a row
            out.append(line)
    return "\n".join(out).strip("\n")


__all__ = ["Preview", "build", "render"]
