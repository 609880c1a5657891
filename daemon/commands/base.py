"""What every ticket command is: a name, Chinese and English aliases, help, and ``apply``.

One object serves both places a command is given: ``ticketd tickets resolve NUMBER TEXT`` on
the command line and ``#resolve TEXT`` (or ``#解决``) at the top of a handler's mail. Both call
``apply`` with the same :class:`Context`, so both change the ticket, log the events and queue
the mails identically (Mailman's ``IEmailCommand``, one step further).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Protocol

from sqlalchemy.orm import Session

from daemon.intents import MailIntent
from daemon.models import Ticket
from daemon.workflow import Process


@dataclass(frozen=True)
class Context:
    """Where a command runs: the process (config, people, time), the transaction, and who
    gives the command (a handler's address, or the support address for an operator)."""

    process: Process
    session: Session
    actor: str


class Command(Protocol):
    name: ClassVar[str]                 # the English name: "resolve"
    aliases: ClassVar[tuple[str, ...]]  # other names, e.g. ("解决",)
    argument: ClassVar[str]             # what follows the name, e.g. "[TEXT]", "ADDR"
    help: ClassVar[str]                 # one line for the handler's command_result / --help

    def apply(self, ctx: Context, ticket: Ticket, arg: str, body: str) -> list[MailIntent]:
        """Change ``ticket``; ``arg`` is the rest of the command line, ``body`` the mail's
        text after the command lines (empty on the command line). Raises
        :class:`~daemon.errors.Refused` without changing anything when not allowed."""
        ...

    def describe(self, ticket: Ticket, arg: str) -> str:
        """What was done, in one line, after ``apply`` succeeded."""
        ...


def joined(arg: str, body: str) -> str:
    """The text of a command that takes one: its argument, then the mail's text."""
    return "\n\n".join(part for part in (arg.strip(), body.strip()) if part)
