"""The exception tree of ticketd.

Every error ticketd raises on purpose derives from :class:`TicketdError`; the CLI turns
one into a single stderr line and an exit status (2 for usage/configuration, 1 for runtime).
The Transient / Permanent split drives retry policy (IMAP, SMTP, database); a
:class:`LoginRefused` is neither: no amount of retrying fixes a wrong password, so the mail
waits (in the IMAP folder, in the outbox, no attempt counted) until an admin fixes it::

    TicketdError
    ├── ConfigError            bad or missing config: file, [section] key, expected vs got (exit 2)
    │   └── LoginRefused       a server refused our user or password (IMAP or SMTP)
    ├── UsageError             a command line that cannot be carried out as asked (exit 2)
    ├── NotFound               a ticket, template or message named by the user does not exist
    ├── Refused                the process does not allow a ticket command (exit 2)
    ├── TemplateError          a mail template does not parse, render or check
    ├── TransientError         worth retrying later: connection refused, SMTP 4xx, lock timeout
    │   ├── MailboxUnavailable IMAP server down or connection dropped
    │   └── TransportTemporary SMTP 4xx for one mail (one attempt counted)
    │       └── TransportUnavailable  SMTP server unreachable: the whole batch waits, uncounted
    ├── PermanentError         retrying will not help
    │   ├── MailboxRefused     IMAP STARTTLS unavailable, certificate untrusted, folder missing
    │   └── TransportPermanent SMTP 5xx
    └── Quarantine(reason)     one message cannot be parsed or stored: raw bytes kept with reason

Intake's other terminal outcomes (duplicate, ignored, bounce) are not exceptions: the rules
return a :class:`~daemon.intake.rules.RuleHit`, :func:`~daemon.intake.pipeline.decide` turns it
into a ``Decision``, and the pipeline acts on that value.
"""

from __future__ import annotations


class TicketdError(Exception):
    """Base of every deliberate ticketd error; ``str()`` is the one line shown to a user."""

    exit_code = 1


class ConfigError(TicketdError):
    """The configuration file is missing, unreadable or has a wrong key or value."""

    exit_code = 2


class LoginRefused(ConfigError):
    """An IMAP or SMTP server refused ticketd's credentials.

    Time does not fix it, an admin does: it is logged once (not on every reconnection), the
    mail waits without counting attempts, and ``ticketd status`` and ``/healthz`` show it.
    """


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
    """SMTP answered 4xx for one mail, or the connection broke while sending it: the mail
    stays queued and one attempt is counted."""


class TransportUnavailable(TransportTemporary):
    """The SMTP server cannot be reached (refused, timed out, no greeting, no STARTTLS):
    the whole batch is given back untried, and no mail loses an attempt."""


class PermanentError(TicketdError):
    """A failure that retrying will not fix."""


class MailboxRefused(PermanentError):
    """IMAP STARTTLS not offered, certificate not trusted, or the folder does not exist."""


class TransportPermanent(PermanentError):
    """SMTP answered 5xx: the mail is marked failed and logged on its ticket."""


class Quarantine(TicketdError):
    """The message cannot be processed; its raw bytes are kept with this reason.

    Raised by the parser and by ``decide``; the pipeline's safety net catches it (and any
    other error while acting) and writes the quarantine row.
    """

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason
