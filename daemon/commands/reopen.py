"""``#reopen`` / ``#重开``: a resolved or closed ticket goes back to work."""

from __future__ import annotations

from typing import ClassVar

from daemon.commands.base import Context
from daemon.intents import MailIntent
from daemon.models import Ticket


class Reopen:
    name: ClassVar[str] = "reopen"
    aliases: ClassVar[tuple[str, ...]] = ("重开", "重新打开")
    argument: ClassVar[str] = "[WHY]"
    help: ClassVar[str] = "reopen a resolved or closed ticket (back to in_progress)"

    def apply(self, ctx: Context, ticket: Ticket, arg: str, body: str) -> list[MailIntent]:
        return ctx.process.reopen(ctx.session, ticket, actor=ctx.actor, reason=arg.strip())

    def describe(self, ticket: Ticket, arg: str) -> str:
        return f"reopened ({ticket.status})"

