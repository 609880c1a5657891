"""What one step of the daemon reports: a message's intake, a mailbox poll, an outbox flush.

Plain value objects low in the layer map, so that whoever counts or shows them (metrics, the
CLI, status) needs none of the modules that produce them.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from daemon.errors import TicketdError


@dataclass(frozen=True)
class IntakeResult:
    """What became of one message; ``action`` is one of ACTIONS."""

    action: str
    number: str | None = None
    reason: str = ""
    message_id: str | None = None

    ACTIONS = ("created", "appended", "duplicate", "ignored", "bounce", "quarantined")

    def line(self) -> str:
        """The one line `ticketd ingest` prints."""
        if self.action in ("created", "appended"):
            return f"{self.number} {self.action}"
        if self.action == "duplicate":
            return "- duplicate"  # the JSON form names the ticket it already went to
        if self.action == "ignored":
            return f"- ignored {self.reason}"
        if self.action == "bounce":
            return f"- bounce {self.reason}"
        return f"- quarantined {self.reason}"

    def as_dict(self) -> dict[str, str | None]:
        return {"number": self.number, "action": self.action, "reason": self.reason,
                "message_id": self.message_id}


@dataclass
class PollReport:
    mailbox: str
    results: list[IntakeResult] = field(default_factory=list)
    uidvalidity_reset: bool = False

    def count(self, action: str) -> int:
        return sum(1 for r in self.results if r.action == action)


@dataclass
class FlushReport:
    attempted: int = 0   # mails handed to the server
    sent: int = 0
    retrying: int = 0
    failed: int = 0
    held: int = 0        # given back untried: the server could not be reached or refused us
    problem: TicketdError | None = None  # why they were held
