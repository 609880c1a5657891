"""``#cc ADDR`` / ``#抄送``: a co-handler, copied on the ticket's mails to handlers."""

from __future__ import annotations

from typing import ClassVar

from daemon.commands.base import Context
from daemon.errors import Refused
from daemon.intents import MailIntent
from daemon.models import Ticket


class Cc:
    name: ClassVar[str] = "cc"
    aliases: ClassVar[tuple[str, ...]] = ("抄送", "协办")
    argument: ClassVar[str] = "ADDR"
    help: ClassVar[str] = "add ADDR (a handler) as a co-handler"

    def apply(self, ctx: Context, ticket: Ticket, arg: str, body: str) -> list[MailIntent]:
        if not arg.strip():
            raise Refused("cc: name the co-handler's address")
        return ctx.process.add_cc(ctx.session, ticket, arg.split(maxsplit=1)[0], actor=ctx.actor)

    def describe(self, ticket: Ticket, arg: str) -> str:
        return f"co-handlers: {', '.join(ticket.co_handlers)}"
