"""``#team NAME`` / ``#团队``: route the ticket to another team."""

from __future__ import annotations

from typing import ClassVar

from daemon.commands.base import Context
from daemon.intents import MailIntent
from daemon.models import Ticket


class Team:
    name: ClassVar[str] = "team"
    aliases: ClassVar[tuple[str, ...]] = ("团队", "转组")
    argument: ClassVar[str] = "NAME"
    help: ClassVar[str] = "move the ticket to another team"

    def apply(self, ctx: Context, ticket: Ticket, arg: str, body: str) -> list[MailIntent]:
        return ctx.process.set_team(ctx.session, ticket, arg.strip(), actor=ctx.actor)

    def describe(self, ticket: Ticket, arg: str) -> str:
        return f"team is now {ticket.team}"
