"""Prometheus counters of the daemon, in a registry of its own.

Why a dedicated :class:`CollectorRegistry`: the global one is process-wide, so two services in
one test process (or a re-created service after SIGHUP) would collide on metric names. Every
:class:`Metrics` owns its registry; ``/metrics`` renders exactly that one.

The counters are fed from what the intake and the outbox already return
(:class:`~daemon.intake.imap.PollReport`, :class:`~daemon.replies.outbox.FlushReport`), so
neither module knows that metrics exist.
"""

from __future__ import annotations

import threading
from datetime import datetime

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from daemon.outcomes import FlushReport, IntakeResult, PollReport

CONTENT_TYPE = CONTENT_TYPE_LATEST

# A poll of an empty folder takes milliseconds; a backlog of hundreds of messages, minutes.
POLL_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0)


class Metrics:
    """The daemon's counters and the last poll of each mailbox (for ``/healthz``)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.messages = Counter("ticketd_messages", "Messages through intake, by action",
                                ["action"], registry=r)
        self.tickets_created = Counter("ticketd_tickets_created", "Tickets opened", registry=r)
        self.mails_sent = Counter("ticketd_mails_sent", "Mails accepted by the transport",
                                  registry=r)
        self.mails_retried = Counter("ticketd_mails_retried",
                                     "Mails that failed temporarily and will be retried",
                                     registry=r)
        self.mails_failed = Counter("ticketd_mails_failed", "Mails given up on", registry=r)
        self.failures = Counter("ticketd_failures",
                                "Job runs that failed (IMAP, SMTP or database trouble)",
                                ["job"], registry=r)
        self.poll_seconds = Histogram("ticketd_poll_duration_seconds",
                                      "Time for one poll of a mailbox", ["mailbox"],
                                      buckets=POLL_BUCKETS, registry=r)
        self.last_poll_timestamp = Gauge("ticketd_last_poll_timestamp_seconds",
                                         "Unix time of the last successful poll",
                                         ["mailbox"], registry=r)
        self.sla_breaches = Gauge("ticketd_sla_breaches_open",
                                  "Tickets without a main handler past their assignment "
                                  "deadline", ["team", "priority"], registry=r)
        self.sla_breach_mails = Counter("ticketd_sla_breach_mails",
                                        "sla_breach mails sent to team leads", registry=r)
        self.ratings = Gauge("ticketd_ratings", "Requesters' satisfaction ratings (1-5) "
                             "given, by team", ["team", "rating"], registry=r)
        self._lock = threading.Lock()
        self._last_poll: dict[str, datetime] = {}

    def intake(self, result: IntakeResult) -> None:
        self.messages.labels(result.action).inc()
        if result.action == "created":
            self.tickets_created.inc()

    def poll(self, mailbox: str, report: PollReport, seconds: float, at: datetime) -> None:
        for result in report.results:
            self.intake(result)
        self.poll_seconds.labels(mailbox).observe(seconds)
        self.last_poll_timestamp.labels(mailbox).set(at.timestamp())
        with self._lock:
            self._last_poll[mailbox] = at

    def flush(self, report: FlushReport) -> None:
        self.mails_sent.inc(report.sent)
        self.mails_retried.inc(report.retrying)
        self.mails_failed.inc(report.failed)

    def process(self, breaches: dict[str, dict[str, int]], ratings: dict[str, dict[str, int]],
                breach_mails: int = 0) -> None:
        """The process's numbers after a sweep: open breaches and ratings (gauges read from
        the database, so every instance reports the same), breach mails just sent."""
        self.sla_breaches.clear()
        for team, by_priority in breaches.items():
            for priority, count in by_priority.items():
                self.sla_breaches.labels(team, priority).set(count)
        self.ratings.clear()
        for team, scores in ratings.items():
            for score, count in scores.items():
                self.ratings.labels(team, score).set(count)
        self.sla_breach_mails.inc(breach_mails)

    def failure(self, job: str) -> None:
        self.failures.labels(job).inc()

    def last_polls(self) -> dict[str, datetime]:
        with self._lock:
            return dict(self._last_poll)

    def render(self) -> bytes:
        return generate_latest(self.registry)
