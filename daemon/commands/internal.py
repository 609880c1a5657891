"""``#internal`` / ``#内部``: the mail's text is a process-log note; nothing is relayed."""

from __future__ import annotations

from typing import ClassVar

from daemon.commands.base import Context, joined
from daemon.intents import MailIntent
from daemon.models import Ticket


class Internal:
    name: ClassVar[str] = "internal"
    aliases: ClassVar[tuple[str, ...]] = ("内部", "note", "备注")
    argument: ClassVar[str] = "[TEXT]"
    help: ClassVar[str] = "keep the text as an internal note (diagnosis, steps, " \
                          "verification); nothing goes to the requester"
    keeps_text: ClassVar[bool] = True   # the mail's text is consumed: nothing to relay

    def apply(self, ctx: Context, ticket: Ticket, arg: str, body: str) -> list[MailIntent]:
        return ctx.process.note(ctx.session, ticket, joined(arg, body), actor=ctx.actor)

    def describe(self, ticket: Ticket, arg: str) -> str:
        return "kept as an internal note"
