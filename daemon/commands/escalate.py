"""``#escalate [why]`` / ``#升级``: the team lead is asked to step in."""

from __future__ import annotations

from typing import ClassVar

from daemon.commands.base import Context, joined
from daemon.intents import MailIntent
from daemon.models import Ticket


class Escalate:
    name: ClassVar[str] = "escalate"
    aliases: ClassVar[tuple[str, ...]] = ("升级",)
    argument: ClassVar[str] = "[WHY]"
    help: ClassVar[str] = "escalate to the team lead with the reason"

    keeps_text: ClassVar[bool] = True   # the mail's text goes into this command

    def apply(self, ctx: Context, ticket: Ticket, arg: str, body: str) -> list[MailIntent]:
        return ctx.process.escalate(ctx.session, ticket, joined(arg, body), actor=ctx.actor)

    def describe(self, ticket: Ticket, arg: str) -> str:
        return "escalated to the team lead"
