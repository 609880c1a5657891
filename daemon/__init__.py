"""ticketd: email-driven support-ticket intake daemon."""

__version__ = "0.1.0"
