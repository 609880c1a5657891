"""``#type NAME`` / ``#类型``: a new problem type (its stored name or English label)."""

from __future__ import annotations

from typing import ClassVar

from daemon.commands.base import Context
from daemon.intents import MailIntent
from daemon.models import Ticket


class Category:
    name: ClassVar[str] = "type"
    aliases: ClassVar[tuple[str, ...]] = ("类型", "category", "分类")
    argument: ClassVar[str] = "NAME"
    help: ClassVar[str] = "set the problem type (e.g. 系统故障 or \"System failure\")"

    def apply(self, ctx: Context, ticket: Ticket, arg: str, body: str) -> list[MailIntent]:
        return ctx.process.set_category(ctx.session, ticket, arg.strip(), actor=ctx.actor)

    def describe(self, ticket: Ticket, arg: str) -> str:
        return f"type is now {ticket.category}"
