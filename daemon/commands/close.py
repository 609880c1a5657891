"""``#close`` / ``#关闭``: closed for good; the requester is told."""

from __future__ import annotations

from typing import ClassVar

from daemon.commands.base import Context
from daemon.intents import MailIntent
from daemon.models import Ticket


class Close:
    name: ClassVar[str] = "close"
    aliases: ClassVar[tuple[str, ...]] = ("关闭",)
    argument: ClassVar[str] = ""
    help: ClassVar[str] = "close the ticket"

    def apply(self, ctx: Context, ticket: Ticket, arg: str, body: str) -> list[MailIntent]:
        return ctx.process.close(ctx.session, ticket, actor=ctx.actor,
                                 why=arg.strip() or f"closed by {ctx.actor}")

    def describe(self, ticket: Ticket, arg: str) -> str:
        return "closed"
