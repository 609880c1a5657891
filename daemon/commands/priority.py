"""``#priority P0..P3`` / ``#优先级``: a new priority; the assignment deadline follows."""

from __future__ import annotations

from typing import ClassVar

from daemon.commands.base import Context
from daemon.intents import MailIntent
from daemon.models import Ticket


class Priority:
    name: ClassVar[str] = "priority"
    aliases: ClassVar[tuple[str, ...]] = ("优先级",)
    argument: ClassVar[str] = "P0..P3"
    help: ClassVar[str] = "set the priority (the assignment deadline is recomputed)"

    def apply(self, ctx: Context, ticket: Ticket, arg: str, body: str) -> list[MailIntent]:
        return ctx.process.set_priority(ctx.session, ticket, arg.strip(), actor=ctx.actor)

    def describe(self, ticket: Ticket, arg: str) -> str:
        return f"priority is now {ticket.priority}"
