"""Ticket commands, shared by the command line and by handlers' mail.

``REGISTRY`` maps every name and alias (lower case) to its command object. :func:`parse`
reads the command lines at the top of a mail; :func:`apply_all` applies a mail's commands in
one savepoint, all or none; :func:`apply_one` is the command line's single command.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from daemon.commands.assign import Assign
from daemon.commands.base import Command, Context
from daemon.commands.category import Category
from daemon.commands.cc import Cc
from daemon.commands.close import Close
from daemon.commands.escalate import Escalate
from daemon.commands.internal import Internal
from daemon.commands.needinfo import NeedInfo
from daemon.commands.priority import Priority
from daemon.commands.reopen import Reopen
from daemon.commands.resolve import Resolve
from daemon.commands.team import Team
from daemon.errors import Refused
from daemon.intents import MailIntent
from daemon.models import Ticket

COMMANDS: tuple[Command, ...] = (Resolve(), Close(), Reopen(), Assign(), Cc(), Priority(),
                                 Category(), Team(), NeedInfo(), Internal(), Escalate())


def _registry() -> dict[str, Command]:
    table: dict[str, Command] = {}
    for command in COMMANDS:
        for name in (command.name, *command.aliases):
            key = name.casefold()
            if key in table:
                raise RuntimeError(f"command name {name!r} is used twice")
            table[key] = command
    return table


REGISTRY = _registry()

# "#resolve text", "＃解决：text", "#priority: P1" — a hash, a name, then the argument.
_LINE = re.compile(r"^[#＃]\s*([^\s:：#＃]+)\s*[:：]?\s*(.*)$")


@dataclass(frozen=True)
class Line:
    """One command line of a mail, as written."""

    text: str
    name: str
    arg: str

    @property
    def command(self) -> Command | None:
        return REGISTRY.get(self.name.casefold())


@dataclass(frozen=True)
class Outcome:
    line: str
    applied: bool
    message: str


def parse(text: str) -> tuple[list[Line], str]:
    """The command lines at the top of ``text`` (blank lines before them are skipped) and
    the text after them."""
    lines = text.replace("\r\n", "\n").split("\n")
    found: list[Line] = []
    index = 0
    while index < len(lines) and not lines[index].strip():
        index += 1
    while index < len(lines):
        match = _LINE.match(lines[index].strip())
        if not match:
            break
        found.append(Line(lines[index].strip(), match.group(1), match.group(2).strip()))
        index += 1
    return found, "\n".join(lines[index:]).strip("\n")


def keeps_text(lines: list[Line]) -> bool:
    """True when a command takes the mail's text (resolution, question, note, reason)."""
    return any(getattr(line.command, "keeps_text", False) for line in lines)


def apply_all(ctx: Context, ticket: Ticket, lines: list[Line],
              body: str) -> tuple[list[Outcome], list[MailIntent] | None]:
    """Apply every command of one mail in a savepoint: all, or none when one is refused.

    Returns each line's outcome and the mails to send (None when nothing was applied). The
    text goes to the first command that takes text; the others get none.
    """
    return _apply(ctx, ticket, lines, body, flush=True, keep=True)


def _apply(ctx: Context, ticket: Ticket, lines: list[Line], body: str, *, flush: bool,
           keep: bool) -> tuple[list[Outcome], list[MailIntent] | None]:
    outcomes: list[Outcome] = []
    intents: list[MailIntent] = []
    text_taken = False
    savepoint = ctx.session.begin_nested()
    try:
        for line in lines:
            command = line.command
            if command is None:
                known = ", ".join(sorted({c.name for c in COMMANDS}))
                raise _LineRefused(line, f"unknown command #{line.name} (known: {known})")
            takes = bool(getattr(command, "keeps_text", False)) and not text_taken
            text_taken = text_taken or takes
            try:
                intents += command.apply(ctx, ticket, line.arg, body if takes else "")
            except Refused as exc:
                raise _LineRefused(line, str(exc)) from None
            outcomes.append(Outcome(line.text, True, command.describe(ticket, line.arg)))
        if flush:
            ctx.session.flush()
    except _LineRefused as exc:
        savepoint.rollback()
        result = []
        for line in lines:
            if line is exc.line:
                result.append(Outcome(line.text, False, exc.reason))
            else:
                result.append(Outcome(line.text, False, "not applied (another command of "
                                                        "this mail was refused)"))
        return result, None
    if keep:
        savepoint.commit()
    else:
        savepoint.rollback()
    return outcomes, intents


def preview(ctx: Context, ticket: Ticket, lines: list[Line], body: str) -> list[Outcome]:
    """What :func:`apply_all` would do, changing nothing (``ticketd inspect``): the commands
    run in a savepoint without flushing, which is then rolled back."""
    with ctx.session.no_autoflush:
        outcomes, _ = _apply(ctx, ticket, lines, body, flush=False, keep=False)
    return outcomes


def apply_one(ctx: Context, ticket: Ticket, name: str, arg: str = "",
              body: str = "") -> list[MailIntent]:
    """One command from the command line; Refused propagates (nothing is changed)."""
    command = REGISTRY.get(name.casefold())
    if command is None:
        raise Refused(f"unknown command {name!r}")
    return command.apply(ctx, ticket, arg, body)


class _LineRefused(Exception):
    def __init__(self, line: Line, reason: str) -> None:
        super().__init__(reason)
        self.line = line
        self.reason = reason


__all__ = ["COMMANDS", "REGISTRY", "Command", "Context", "Line", "Outcome", "apply_all",
           "apply_one", "keeps_text", "parse", "preview"]
