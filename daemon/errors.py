"""The exception tree of ticketd.

Every error ticketd raises on purpose derives from :class:`TicketdError`; the CLI turns
one into a single stderr line and an exit status (2 for usage/configuration, 1 for runtime).
The Transient / Permanent split drives retry policy (IMAP, SMTP, database)::

    TicketdError
    ├── ConfigError            bad or missing config: file, [section] key, expected vs got (exit 2)
    ├── UsageError             a command line that cannot be carried out as asked (exit 2)
    ├── NotFound               a ticket, template or message named by the user does not exist
    ├── Refused                the process does not allow a ticket command (exit 2)
    ├── TemplateError          a mail template does not parse, render or check
    ├── TransientError         worth retrying later: connection refused, SMTP 4xx, lock timeout
    │   ├── MailboxUnavailable IMAP server down or connection dropped
    │   └── TransportTemporary SMTP 4xx / connection failure
    ├── PermanentError         retrying will not help
    │   ├── MailboxRefused     IMAP login refused, STARTTLS unavailable, folder missing
    │   └── TransportPermanent SMTP 5xx
    └── IntakeOutcome          terminal outcome of one message in the intake pipeline
        ├── Ignored(reason)    auto-reply, list mail, loop: never a ticket
        └── Quarantine(reason) cannot be parsed or stored: raw bytes kept with the reason
"""

from __future__ import annotations


class TicketdError(Exception):
    """Base of every deliberate ticketd error; ``str()`` is the one line shown to a user."""

    exit_code = 1


class ConfigError(TicketdError):
    """The configuration file is missing, unreadable or has a wrong key or value."""

    exit_code = 2


class UsageError(TicketdError):
    """The command line asks for something that cannot be done as asked."""

    exit_code = 2


class NotFound(TicketdError):
    """A ticket, template or message the user named does not exist."""


class Refused(TicketdError):
    """A ticket command the process does not allow: an invalid transition, an address that is
    not a handler, a priority that does not exist. Nothing was changed."""

    exit_code = 2


class TemplateError(TicketdError):
    """A mail template fails to load, render or pass `templates check`."""


class TransientError(TicketdError):
    """A failure that may pass: retry with backoff."""


class MailboxUnavailable(TransientError):
    """The IMAP server cannot be reached or dropped the connection."""


class TransportTemporary(TransientError):
    """SMTP answered 4xx or the connection failed: the mail stays queued."""


class PermanentError(TicketdError):
    """A failure that retrying will not fix."""


class MailboxRefused(PermanentError):
    """IMAP login refused, STARTTLS not offered, or the folder does not exist."""


class TransportPermanent(PermanentError):
    """SMTP answered 5xx: the mail is marked failed and logged on its ticket."""


class IntakeOutcome(TicketdError):
    """A terminal outcome for one message; carries the reason logged with its Message-ID."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class Ignored(IntakeOutcome):
    """The message must never open a ticket (auto-reply, list mail, our own loop)."""


class Quarantine(IntakeOutcome):
    """The message cannot be processed; its raw bytes are kept with this reason."""
