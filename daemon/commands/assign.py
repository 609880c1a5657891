"""``#assign ADDR`` / ``#指派``: a new main handler, who gets the ``assigned`` mail."""

from __future__ import annotations

from typing import ClassVar

from daemon.commands.base import Context
from daemon.errors import Refused
from daemon.intents import MailIntent
from daemon.models import Ticket


class Assign:
    name: ClassVar[str] = "assign"
    aliases: ClassVar[tuple[str, ...]] = ("指派", "分派")
    argument: ClassVar[str] = "ADDR [CC-ADDR ...]"
    help: ClassVar[str] = "make ADDR (a handler) the main handler; further addresses become " \
                          "co-handlers"

    def apply(self, ctx: Context, ticket: Ticket, arg: str, body: str) -> list[MailIntent]:
        words = arg.replace(",", " ").split()
        if not words:
            raise Refused("assign: name the new main handler's address")
        return ctx.process.assign(ctx.session, ticket, words[0], actor=ctx.actor,
                                  cc=words[1:])

    def describe(self, ticket: Ticket, arg: str) -> str:
        return f"main handler is now {ticket.handler}"
