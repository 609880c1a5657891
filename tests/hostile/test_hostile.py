"""The hostile-mail suite (issue 13): generated mails that once stalled intake, amplified into
our own mail or silenced a requester, each with its time and memory asserted.

Limits are generous (a loaded 2-core CI machine must not flake) yet far below what the same
mails cost before: CPU via ``time.process_time()`` (the issue measured 7-34 s per mail),
memory via the ``tracemalloc`` peak. ``bench/hostile.py`` prints the numbers at full size.
"""

from __future__ import annotations

import dataclasses
import time
import tracemalloc
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import select

from daemon.app import App
from daemon.clock import FixedClock
from daemon.explain import explain
from daemon.intake import limits
from daemon.intake.parse import parse
from daemon.intake.pipeline import Intake
from daemon.intake.sources import RawMail
from daemon.models import Event, OutboxMail, Quarantined, Suppression, Ticket
from daemon.outcomes import IntakeResult
from daemon.replies import kinds
from daemon.replies.notify import Notify
from tests import messages
from tests.conftest import make_config
from tests.hostile import mails
from tests.writing import write_queued

MB = 1024 * 1024


@dataclass
class Cost:
    cpu: float = 0.0
    peak: int = 0


@contextmanager
def measured() -> Iterator[Cost]:
    """CPU seconds of this process and the tracemalloc peak of the block."""
    cost = Cost()
    tracemalloc.start()
    start = time.process_time()
    try:
        yield cost
    finally:
        cost.cpu = time.process_time() - start
        cost.peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()


# ---------------------------------------------------------------- bounded cost per message

HEADERS: list[tuple[str, Callable[[], bytes], str]] = [
    ("100,000 encoded-words", lambda: mails.encoded_word_subject(100_000),
     "encoded-words (in what was read), read the first 200"),
    ("10 MB Subject", lambda: mails.long_subject(10 * MB), "header Subject: 10,"),
    ("10,000 Cc addresses", lambda: mails.many_addresses(10_000, b"Cc"),
     "addresses, read the first 100"),
    ("10,000 From addresses", lambda: mails.many_addresses(10_000, b"From"),
     "addresses, read the first 100"),
    ("100,000 header fields", lambda: mails.many_headers(100_000), "99,506 dropped"),
]


@pytest.mark.parametrize(("name", "build", "defect"), HEADERS, ids=[h[0] for h in HEADERS])
def test_a_hostile_header_is_read_in_bounded_time_and_memory(
        name: str, build: Callable[[], bytes], defect: str) -> None:
    raw = build()
    with measured() as cost:
        mail = parse(raw)
    # before: 8-23 s of CPU each (parse alone) on a machine twice as fast as some CI
    # machines; now under a second there. 100,000 header fields took 2.6 s here on one of
    # the slower machines, under tracemalloc and beside a test run: 3 s flaked, the blow-up
    # this guards against is many times 6
    assert cost.cpu < 6.0, f"{name}: {cost.cpu:.2f} s"
    assert cost.peak < 120 * MB, f"{name}: {cost.peak / MB:.0f} MB"
    assert any(defect in d for d in mail.defects), mail.defects
    assert mail.raw_size == len(raw)  # the raw bytes are kept whole
    assert len(mail.subject) <= limits.MAX_FIELD_BYTES
    assert len(mail.cc) <= limits.MAX_ADDRESSES and len(mail.to) <= limits.MAX_ADDRESSES


def test_the_subject_behind_a_hundred_thousand_junk_fields_is_still_read() -> None:
    raw = mails.many_headers(100_000).replace(b"Subject: many headers\r\n", b"")
    raw = raw.replace(b"\r\n\r\n", b"\r\nSubject: found\r\n\r\n", 1)
    assert parse(raw).subject == "found"


def test_mail_within_the_caps_is_passed_to_the_parser_untouched() -> None:
    raw = messages.mail(cc=", ".join(f"u{i}@corp.example" for i in range(99)))
    defects: list[str] = []
    assert limits.bounded_headers(raw, defects) is raw and defects == []


@pytest.mark.parametrize(("name", "build", "factor"), [
    ("10 MB body", lambda: mails.large_body(10 * MB), 10),
    ("8 MB attachment", lambda: mails.large_attachment(8 * MB), 14),
], ids=["body", "attachment"])
def test_a_large_mail_is_read_in_bounded_time_and_memory(
        name: str, build: Callable[[], bytes], factor: int) -> None:
    """Memory grows linearly with the mail (what remains of issue 13.4 is the factor)."""
    raw = build()
    with measured() as cost:
        mail = parse(raw)
    assert cost.cpu < 8.0, f"{name}: {cost.cpu:.2f} s"
    assert cost.peak < factor * len(raw), f"{name}: {cost.peak / MB:.0f} MB"
    assert mail.body_text or mail.attachments


# ---------------------------------------------------------------- no amplification


def feed(app: App, raw: bytes) -> IntakeResult:
    return Intake(app, notifier=Notify(app)).ingest(RawMail(raw, "test"))


def queued(app: App) -> list[tuple[str, list[str], int]]:
    write_queued(app)
    with app.db.transaction() as s:
        return [(o.kind, list(o.recipients), o.size or 0)
                for o in s.scalars(select(OutboxMail).order_by(OutboxMail.id))]


def test_a_ten_megabyte_subject_is_not_mailed_back(app: App) -> None:
    raw = mails.long_subject(10 * MB)
    with measured() as cost:
        result = feed(app, raw)
    assert result.action == "created"
    assert cost.cpu < 15.0, f"{cost.cpu:.2f} s"  # before: ~34 s
    [(kind, to, size)] = queued(app)
    assert (kind, to) == ("acceptance", ["a@evil.example"])
    assert size < 20_000  # before: 43 MB
    with app.db.transaction() as s:
        subject = s.scalars(select(OutboxMail.subject)).one()
        assert len(subject) < kinds.SUBJECT_CHARS + 80 and subject.endswith(kinds.CLIPPED)


def test_a_kind_clips_what_it_quotes() -> None:
    base = kinds.sample("assigned", "en")
    assert isinstance(base, kinds.Assigned)
    huge = dataclasses.replace(base, subject="s" * 10**6, text="t" * 10**7,
                               handler_name="n" * 10**4,
                               fields={f"k{i}": "v" * 10**5 for i in range(1000)})
    assert len(huge.subject) == kinds.SUBJECT_CHARS
    assert len(huge.text) == kinds.TEXT_CHARS and huge.text.endswith(kinds.CLIPPED)
    assert len(huge.handler_name) == kinds.NAME_CHARS
    assert len(huge.fields) == kinds.ITEMS
    assert all(len(v) == kinds.TEXT_CHARS for v in huge.fields.values())
    assert dataclasses.replace(base) == base  # ordinary values unchanged


def test_compose_refuses_a_mail_over_the_size_cap() -> None:
    from datetime import UTC, datetime

    from daemon.addresses import Address
    from daemon.replies.compose import OutgoingAttachment, compose
    from daemon.replies.templates import RenderedMail

    rendered = RenderedMail(subject="big", text="hello", html=None)
    with pytest.raises(ValueError, match="over the cap of 100000"):
        compose(rendered, sender=Address("S", "s@corp.example"),
                to=[Address("", "r@corp.example")], message_id="x.1@corp.example",
                in_reply_to=None, references=(), date=datetime(2023, 1, 1, tzinfo=UTC),
                auto_submitted=True, loop_header=("X-Loop", "s@corp.example"),
                attachments=[OutgoingAttachment("a.bin", "application/octet-stream",
                                                b"\0" * 200_000)], max_bytes=100_000)


# ---------------------------------------------------------------- new tickets per hour


@pytest.fixture
def limited(tmp_path: Path, database_url: str, clock: FixedClock) -> Iterator[App]:
    application = App(make_config(tmp_path, database_url, mail={
        "max_new_tickets_per_hour": 3, "max_new_tickets_per_domain_hour": 5}), clock=clock)
    application.ready_db()
    yield application
    application.close()


def test_a_flood_of_new_requests_is_quarantined_beyond_the_hourly_budget(
        limited: App, clock: FixedClock) -> None:
    results = [feed(limited, mails.new_request(i, f"flood+{i}@evil.example"))
               for i in range(5)]
    assert [r.action for r in results] == ["created"] * 3 + ["quarantined"] * 2
    assert results[3].reason == ("rate limit: 3 new tickets from flood@evil.example in the "
                                 "last hour ([mail] max_new_tickets_per_hour = 3)")
    assert [kind for kind, _, _ in queued(limited)] == ["acceptance"] * 3  # no mail beyond
    with limited.db.transaction() as s:
        assert len(s.scalars(select(Quarantined)).all()) == 2  # kept, never lost

    shown = explain(limited, mails.new_request(9, "flood@evil.example"), origin="t")
    assert shown.verdict.action == "quarantined"
    assert shown.verdict.reason.startswith("rate limit: 3 new tickets from flood@evil.example")

    clock.advance(timedelta(minutes=61))
    assert feed(limited, mails.new_request(10, "flood@evil.example")).action == "created"


def test_the_domain_budget_counts_every_sender_of_the_domain(limited: App) -> None:
    results = [feed(limited, mails.new_request(i, f"user{i}@evil.example")) for i in range(6)]
    assert [r.action for r in results] == ["created"] * 5 + ["quarantined"]
    assert results[5].reason == ("rate limit: 5 new tickets from @evil.example in the last "
                                 "hour ([mail] max_new_tickets_per_domain_hour = 5)")
    assert feed(limited, mails.new_request(7, "someone@good.example")).action == "created"


def test_follow_ups_are_never_rate_limited(limited: App) -> None:
    for i in range(3):
        feed(limited, mails.new_request(i, "busy@evil.example"))
    with limited.db.transaction() as s:
        number = s.scalars(select(Ticket.number).order_by(Ticket.id)).first()
    reply = mails.new_request(99, "busy@evil.example").replace(
        b"Subject: request 99", b"Subject: Re: [" + str(number).encode() + b"] request 0")
    assert feed(limited, reply).action == "appended"


# ---------------------------------------------------------------- loop brake per mailbox


def test_the_loop_brake_counts_tagged_addresses_as_one_mailbox(app: App) -> None:
    """victim+0@ .. victim+9@ are one mailbox: at most auto_reply_limit (5) mails an hour."""
    for i in range(10):
        assert feed(app, mails.new_request(i, f"victim+{i}@example.com")).action == "created"
    sent = queued(app)
    assert len(sent) == app.config.mail.auto_reply_limit == 5
    with app.db.transaction() as s:
        braked = s.scalars(select(Event.detail).where(Event.action == "mail-suppressed")).all()
    assert len(braked) == 5
    assert all("loop brake: 5 automatic mails to victim@example.com" in d for d in braked)


# ---------------------------------------------------------------- forged bounces


def text_bounce(original_id: str, recipient: str) -> bytes:
    """A bounce written for people only: no message/delivery-status part."""
    return (f"From: MAILER-DAEMON@mx.evil.example\r\nTo: support@corp.example\r\n"
            f"Subject: Undelivered Mail Returned to Sender\r\nMessage-ID: <fake.1@evil.example>\r\n"
            f"Date: Fri, 27 Oct 2023 02:00:00 +0000\r\n\r\n"
            f"<{recipient}>: host mx said: 550 5.1.1 User unknown\r\n\r\n"
            f"Message-ID: <{original_id}>\r\n").encode()


def held(app: App) -> list[str]:
    with app.db.transaction() as s:
        return sorted(s.scalars(select(Suppression.address)).all())


def our_acceptance(app: App, sender: str, cc: str | None = None) -> str:
    assert feed(app, messages.mail(sender=sender, cc=cc)).action == "created"
    with app.db.transaction() as s:
        return s.scalars(select(OutboxMail.message_id).order_by(OutboxMail.id.desc())).first() \
            or ""


def test_a_bounce_without_delivery_status_fields_holds_nobody(app: App) -> None:
    ours = our_acceptance(app, "victim@corp.example")
    result = feed(app, text_bounce(ours, "victim@corp.example"))
    assert result.action == "bounce"
    assert held(app) == []
    with app.db.transaction() as s:
        notes = s.scalars(select(Event.detail).where(Event.action == "note")).all()
    assert any("no address held" in n for n in notes)


def test_a_dsn_naming_someone_our_mail_did_not_go_to_holds_nobody(app: App) -> None:
    ours = our_acceptance(app, "victim@corp.example")
    assert feed(app, messages.dsn(ours, recipient="other@corp.example")).action == "bounce"
    assert held(app) == []


def test_a_dsn_for_an_id_we_never_sent_holds_nobody(app: App) -> None:
    our_acceptance(app, "victim@corp.example")
    forged = messages.dsn("ticketd.0000000000000000000000000000@corp.example",
                          recipient="victim@corp.example")
    assert feed(app, forged).action == "bounce"
    assert held(app) == []


def test_a_real_dsn_holds_only_the_recipient_it_names(app: App) -> None:
    ours = our_acceptance(app, "gone@corp.example")
    assert feed(app, messages.dsn(ours, recipient="gone@corp.example")).action == "bounce"
    assert held(app) == ["gone@corp.example"]
