"""``#needinfo [what]`` / ``#补充``: ask the requester; the ticket waits for the answer."""

from __future__ import annotations

from typing import ClassVar

from daemon.commands.base import Context, joined
from daemon.intents import MailIntent
from daemon.models import Ticket


class NeedInfo:
    name: ClassVar[str] = "needinfo"
    aliases: ClassVar[tuple[str, ...]] = ("补充", "need-info", "need_info")
    argument: ClassVar[str] = "[QUESTION]"
    help: ClassVar[str] = "ask the requester (the question and the rest of the mail go to " \
                          "them); the ticket waits in need_info"

    keeps_text: ClassVar[bool] = True   # the mail's text goes into this command

    def apply(self, ctx: Context, ticket: Ticket, arg: str, body: str) -> list[MailIntent]:
        return ctx.process.need_info(ctx.session, ticket, joined(arg, body), actor=ctx.actor)

    def describe(self, ticket: Ticket, arg: str) -> str:
        return "the question goes to the requester; waiting for the answer"
