"""``#resolve [text]`` / ``#解决``: resolved; the resolution mail goes to the requester."""

from __future__ import annotations

from typing import ClassVar

from daemon.commands.base import Context, joined
from daemon.intents import MailIntent
from daemon.models import Ticket


class Resolve:
    name: ClassVar[str] = "resolve"
    aliases: ClassVar[tuple[str, ...]] = ("解决",)
    argument: ClassVar[str] = "[TEXT]"
    help: ClassVar[str] = "resolve the ticket; the text (and the rest of the mail) is the " \
                          "resolution sent to the requester"

    keeps_text: ClassVar[bool] = True   # the mail's text goes into this command

    def apply(self, ctx: Context, ticket: Ticket, arg: str, body: str) -> list[MailIntent]:
        return ctx.process.resolve(ctx.session, ticket, joined(arg, body), actor=ctx.actor)

    def describe(self, ticket: Ticket, arg: str) -> str:
        return "resolved; the resolution mail goes to the requester"
