"""A proven handler's mail: its commands, then its text to the requester.

Command lines at the top (``#resolve ...``, ``＃优先级 P1``) are applied all together or not at
all (:func:`~daemon.commands.apply_all`). The rest of the mail is the reply to the requester,
unless a command took it (the resolution, the question, the note, the escalation reason). When
a command is refused, nothing is applied and the text is kept as an internal note instead of
being relayed: a handler whose command failed never mails the requester by accident. The
handler gets a ``command_result`` mail either way.
"""

from __future__ import annotations

from daemon import commands
from daemon.commands.base import Context
from daemon.intents import MailIntent
from daemon.models import Message, Ticket


def handle(ctx: Context, ticket: Ticket, message: Message) -> tuple[list[MailIntent],
                                                                     list[commands.Outcome]]:
    """Everything a proven handler's mail does; returns the mails and each command's outcome."""
    process = ctx.process
    lines, rest = commands.parse(message.new_text)
    if not lines:
        return process.handler_wrote(ctx.session, ticket, message, message.new_text), []
    outcomes, intents = commands.apply_all(ctx, ticket, lines, rest)
    applied = intents is not None
    note_kept = False
    mails: list[MailIntent] = []
    if intents is None:
        if rest.strip():
            process.note(ctx.session, ticket, rest, actor=ctx.actor)
            note_kept = True
    else:
        mails += intents
        if not commands.keeps_text(lines):
            mails += process.handler_wrote(ctx.session, ticket, message, rest)
    mails.append(process.command_result(ticket, ctx.actor, outcomes, applied=applied,
                                        note_kept=note_kept))
    return mails, outcomes
