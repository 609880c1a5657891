"""Issue 3 through the pipeline: every mail becomes a ticket or a follow-up, none is lost.

Each test feeds raw bytes to :class:`Intake` on a real database (SQLite, and PostgreSQL when
configured) and asserts what was written: tickets, messages, events, the intake log, the
quarantine, the outbox and the attachment store.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from daemon import tickets
from daemon.app import App
from daemon.clock import FixedClock
from daemon.errors import NotFound, TransientError
from daemon.intake import quarantine
from daemon.intake.pipeline import Intake
from daemon.intake.prepare import content_hash
from daemon.intake.sources import RawMail
from daemon.intents import MailIntent
from daemon.models import (
    Attachment,
    Event,
    IntakeRecord,
    Message,
    OutboxMail,
    Quarantined,
    Suppression,
    Ticket,
    TicketCounter,
)
from daemon.outcomes import IntakeResult
from daemon.replies.notify import Notify, Trigger
from tests import messages
from tests.conftest import make_config

FIRST = "TS20231027000001"
SECOND = "TS20231027000002"
ZHANG = "张三 <zhang.san@corp.example>"
MALLORY = "Mallory <mallory@evil.example>"


# ---------------------------------------------------------------- helpers


@pytest.fixture
def app_with(tmp_path: Path, database_url: str, clock: FixedClock) -> Iterator[Callable[..., App]]:
    """Build an App on the test database with some config sections changed."""
    made: list[App] = []

    def build(**sections: dict[str, object]) -> App:
        application = App(make_config(tmp_path, database_url, **sections), clock=clock)
        application.ready_db()
        made.append(application)
        return application

    yield build
    for application in made:
        application.close()


class FlakyNotifier:
    """The real Notify, except that deliver fails after queuing its mail, ``failures``
    times; the mail it queued must vanish with the rest of the transaction."""

    def __init__(self, app: App, failures: int = 1) -> None:
        self.real = Notify(app)
        self.failures = failures

    def deliver(self, session: Session, ticket: Ticket, intents: Sequence[MailIntent],
                trigger: Trigger | None = None) -> Sequence[object]:
        rows = self.real.deliver(session, ticket, intents, trigger)
        if self.failures:
            self.failures -= 1
            raise RuntimeError("template store unreachable")
        return rows


def feed(intake: Intake, raw: bytes, origin: str = "test") -> IntakeResult:
    return intake.ingest(RawMail(raw, origin))


def count(app: App, model: type[Any]) -> int:
    with app.db.transaction() as s:
        return int(s.scalar(select(func.count()).select_from(model)) or 0)


def events_of(app: App, number: str) -> list[tuple[str, str, str]]:
    """(action, actor, detail) of every event of a ticket, in order."""
    with app.db.transaction() as s:
        return [(e.action, e.actor, e.detail) for e in tickets.get(s, number).events]


def actions_of(app: App, number: str) -> list[str]:
    return [action for action, _, _ in events_of(app, number)]


def ticket_row(app: App, number: str) -> dict[str, Any]:
    with app.db.transaction() as s:
        t = tickets.get(s, number)
        return {"id": t.id, "status": t.status, "cc": list(t.cc), "fields": dict(t.fields),
                "linked_ticket_id": t.linked_ticket_id, "requester": t.requester_email,
                "messages": [(m.direction, m.kind, m.from_email, m.trusted) for m in t.messages]}


def incoming(app: App) -> list[Message]:
    with app.db.transaction() as s:
        rows = list(s.scalars(select(Message).where(Message.direction == "in")
                              .order_by(Message.id)))
        s.expunge_all()
        return rows


def outbox(app: App) -> list[tuple[str, list[str], int | None]]:
    """(kind, recipients, ticket id) of every queued mail, in order."""
    with app.db.transaction() as s:
        return [(o.kind, list(o.recipients), o.ticket_id)
                for o in s.scalars(select(OutboxMail).order_by(OutboxMail.id))]


def outgoing_ids(app: App) -> list[str]:
    with app.db.transaction() as s:
        return list(s.scalars(select(OutboxMail.message_id).order_by(OutboxMail.id)))


def first_ticket(intake: Intake, **changes: Any) -> IntakeResult:
    """The requester's first mail: 张三 about the printer, Message-ID <first@client.example>."""
    options: dict[str, Any] = {"message_id": "<first@client.example>",
                               "cc": "李四 <li@corp.example>"}
    options.update(changes)
    result = feed(intake, messages.mail(**options))
    assert result.action == "created"
    return result


# ---------------------------------------------------------------- new tickets


def test_new_ticket_from_a_gbk_client_keeps_everything(app: App) -> None:
    raw = messages.gbk_mail(
        "导出报表报错", "导出时报错了，麻烦看看。\n系统: OA\n\n> 上次说的问题\n> 也还在\n",
        to="support@corp.example, Boss <boss@corp.example>",
        cc=(("李四", "li@corp.example"), ("", "SUPPORT@corp.example")))

    result = feed(Intake(app), raw, origin="file:/tmp/a.eml")

    assert result == IntakeResult("created", FIRST, "", "gbk.1@client.example")
    with app.db.transaction() as s:
        t = tickets.get(s, FIRST)
        assert (t.subject, t.status, t.requester_name, t.requester_email) == (
            "导出报表报错", "new", "张三", "zhang.san@corp.example")
        assert t.cc == ["boss@corp.example", "li@corp.example"]
        assert (t.category, t.team, t.priority, t.fields, t.language) == (
            "功能异常", "dev", "P2", {"system": "OA", "steps": "导出时报错了，麻烦看看。"}, "zh")
        assert t.created_at == datetime(2023, 10, 27, 1, 30, tzinfo=UTC)
        assert [(e.action, e.actor, e.detail, e.after) for e in t.events] == [
            ("created", "zhang.san@corp.example",
             "ticket opened by mail from zhang.san@corp.example; category 功能异常 "
             "(keywords '报表', '报错'), priority P2",
             {"status": "new", "priority": "P2", "category": "功能异常", "team": "dev"}),
            ("routing", "ticketd", "team dev has no members: waiting for its lead to assign",
             None)]
        [m] = t.messages
        assert (m.direction, m.kind, m.message_id, m.dedup_key, m.from_name, m.from_email) == (
            "in", "new", "gbk.1@client.example", "gbk.1@client.example", "张三",
            "zhang.san@corp.example")
        assert m.raw == raw
        assert m.raw_sha256 == hashlib.sha256(raw).hexdigest()
        assert m.origin == "file:/tmp/a.eml"
        assert m.new_text == "导出时报错了，麻烦看看。\n系统: OA"
        assert m.quoted_text == "> 上次说的问题\n> 也还在"
        assert m.cc == [{"name": "李四", "email": "li@corp.example"},
                        {"name": "", "email": "support@corp.example"}]
        assert m.trusted is True
        [record] = s.scalars(select(IntakeRecord)).all()
        assert (record.dedup_key, record.action, record.ticket_id, record.origin) == (
            "gbk.1@client.example", "created", t.id, "file:/tmp/a.eml")


def test_numbers_carry_the_local_date_and_a_daily_serial(app: App, clock: FixedClock) -> None:
    intake = Intake(app)
    assert feed(intake, messages.mail()).number == FIRST
    assert feed(intake, messages.mail()).number == SECOND
    clock.set(datetime(2023, 10, 27, 16, 30, tzinfo=UTC))  # 00:30 on the 28th in Shanghai
    assert feed(intake, messages.mail()).number == "TS20231028000001"


@pytest.mark.parametrize(("subject", "body", "expected"), [
    ("VPN 无法连接", "所有用户都连不上。\n", ("系统故障", "ops", "P0",
                                          {"system": "VPN", "impact": "所有用户都连不上。"})),
    ("申请开通 OA 权限", "部门: 财务部\n系统: OA\n", ("权限申请", "admins", "P2",
                                                  {"department": "财务部", "system": "OA"})),
    ("请问如何导出报表", "谢谢。\n", ("技术咨询", "ops", "P3", {})),
    ("Feature request: dark mode", "Please add a dark mode.\nPriority: P1\n",
     ("需求开发", "dev", "P1", {"priority": "P1"})),
])
def test_category_priority_and_fields_come_from_the_classifier(
        app: App, subject: str, body: str, expected: tuple[str, str, str, dict[str, str]]) -> None:
    result = feed(Intake(app), messages.mail(subject=subject, body=body))
    with app.db.transaction() as s:
        t = tickets.get(s, result.number or "")
        assert (t.category, t.team, t.priority, t.fields) == expected


def test_mail_without_from_is_opened_for_its_sender_header(app: App) -> None:
    """The quarantine reason promises From, Reply-To and Sender are all tried."""
    raw = messages.without_header(
        messages.mail(headers={"Sender": "王五 <wang.wu@corp.example>"}), "From")
    result = feed(Intake(app), raw)
    assert (result.action, result.number) == ("created", FIRST)
    assert ticket_row(app, FIRST)["requester"] == "wang.wu@corp.example"


# ---------------------------------------------------------------- follow-ups


SUBJECT_FORMS = [
    "Re: [{n}] 打印机无法打印",
    "RE: [{n}] 打印机无法打印",
    "re: [{lower}] 打印机无法打印",
    "回复: [{n}] 打印机无法打印",
    "回复：[{n}] 打印机无法打印",
    "答复: [{n}] 打印机无法打印",
    "Fwd: [{n}] 打印机无法打印",
    "转发: [{n}] 打印机无法打印",
    "[{n}] 打印机无法打印",
    "{n}",
    "打印机还是不行（{n}）",
    "Re: Re: 关于{n}的问题",
]


@pytest.mark.parametrize("form", SUBJECT_FORMS)
def test_follow_up_by_the_number_in_the_subject(app: App, form: str) -> None:
    intake = Intake(app)
    first_ticket(intake)
    subject = form.format(n=FIRST, lower=FIRST.lower())
    result = feed(intake, messages.mail(subject=subject, body="还是打不了。\n",
                                        message_id="<second@client.example>"))
    assert result == IntakeResult("appended", FIRST, "", "second@client.example")
    assert count(app, Ticket) == 1
    assert ticket_row(app, FIRST)["messages"] == [
        ("in", "new", "zhang.san@corp.example", True),
        ("in", "follow-up", "zhang.san@corp.example", True)]
    assert events_of(app, FIRST)[-1] == (
        "follow-up", "zhang.san@corp.example", f"subject: reply from {ZHANG}")


@pytest.mark.parametrize(("header", "rule"), [
    ({"in_reply_to": "<first@client.example>"}, "in-reply-to"),
    ({"references": "<elsewhere@other.example> <first@client.example>"}, "references"),
])
def test_follow_up_by_reply_headers_alone(app: App, header: dict[str, Any], rule: str) -> None:
    intake = Intake(app)
    first_ticket(intake)
    result = feed(intake, messages.mail(subject="Re: 打印机无法打印", body="型号是 HP M404。\n",
                                        **header))
    assert (result.action, result.number, result.reason) == (
        "appended", FIRST, f"{rule} names first@client.example")
    assert count(app, Ticket) == 1
    assert events_of(app, FIRST)[-1] == (
        "follow-up", "zhang.san@corp.example", f"{rule}: reply from {ZHANG}")


def test_follow_up_by_a_reference_to_our_own_acceptance(app: App) -> None:
    intake = Intake(app, notifier=Notify(app))
    first_ticket(intake)
    [ours] = outgoing_ids(app)
    assert ours.startswith("ticketd.") and ours.endswith("@corp.example")
    # Only our Message-ID ties it to the ticket: no number, no reference to the first mail.
    result = feed(intake, messages.mail(subject="Re: 受理通知", body="好的，等你们消息。\n",
                                        references=f"<{ours}>"))
    assert (result.action, result.number, result.reason) == (
        "appended", FIRST, f"references names {ours}")
    assert count(app, Ticket) == 1
    assert [kind for kind, _, _ in outbox(app)] == ["acceptance"]


def test_a_number_that_names_no_ticket_opens_a_new_one_and_says_so(app: App) -> None:
    result = feed(Intake(app), messages.mail(subject="Re: [TS20231020000099] 打印机无法打印"))
    note = "subject names TS20231020000099, which does not exist: new ticket"
    assert result == IntakeResult("created", FIRST, note, result.message_id)
    assert count(app, Ticket) == 1
    with app.db.transaction() as s:
        assert tickets.find(s, "TS20231020000099") is None
    assert events_of(app, FIRST)[1:3] == [
        ("note", "ticketd", note),
        ("routing", "ticketd", "team ops has no members: waiting for its lead to assign")]


def test_stranger_using_a_real_number_gets_a_linked_ticket(app: App) -> None:
    intake = Intake(app)
    first_ticket(intake)
    result = feed(intake, messages.mail(subject=f"Re: [{FIRST}] 打印机无法打印",
                                        body="系统: 伪造\n", sender=MALLORY))
    note = (f"subject names {FIRST} but mallory@evil.example is not a participant and did "
            "not reply to one of our mails: new ticket linked to it")
    assert (result.action, result.number, result.reason) == ("created", SECOND, note)
    first, second = ticket_row(app, FIRST), ticket_row(app, SECOND)
    assert second["linked_ticket_id"] == first["id"]
    assert second["requester"] == "mallory@evil.example"
    assert actions_of(app, SECOND)[:3] == ["created", "linked", "status"]  # no impact
    assert events_of(app, SECOND)[1] == ("linked", "ticketd", note)
    assert len(first["messages"]) == 1
    assert first["fields"] == {"system": "打印服务", "impact": "三楼"}


def test_stranger_appended_and_flagged_untrusted_when_configured(
        app_with: Callable[..., App]) -> None:
    app = app_with(tickets={"stranger_number": "append"})
    intake = Intake(app)
    first_ticket(intake)
    result = feed(intake, messages.mail(subject=f"Re: [{FIRST}] 打印机无法打印",
                                        body="系统: 伪造\n", sender=MALLORY))
    note = (f"mallory@evil.example is not a participant of {FIRST}: appended and flagged as "
            "untrusted")
    assert (result.action, result.number, result.reason) == ("appended", FIRST, note)
    assert count(app, Ticket) == 1
    row = ticket_row(app, FIRST)
    assert row["messages"][-1] == ("in", "follow-up", "mallory@evil.example", False)
    # an untrusted mail changes nothing
    assert row["fields"] == {"system": "打印服务", "impact": "三楼"}
    assert events_of(app, FIRST)[-1] == (
        "follow-up-untrusted", "mallory@evil.example",
        f"subject: reply from {MALLORY} (untrusted: {note})")


def test_a_non_participant_citing_one_of_our_mails_is_appended_but_untrusted(
        app: App) -> None:
    # A reference proves which ticket the mail is about, not who sent it: anybody who
    # saw our mail (or forges its id) is kept with the ticket, and changes nothing.
    intake = Intake(app, notifier=Notify(app))
    first_ticket(intake)
    [acceptance] = outgoing_ids(app)  # ours carry a secret token: a reply to it is real
    result = feed(intake, messages.mail(subject=f"Re: [{FIRST}] 打印机无法打印",
                                        body="我是三楼的同事，也遇到了。\n",
                                        sender="王五 <wang.wu@corp.example>",
                                        in_reply_to=f"<{acceptance}>"))
    assert (result.action, result.number) == ("appended", FIRST)
    assert ticket_row(app, FIRST)["messages"][-1] == (
        "in", "follow-up", "wang.wu@corp.example", False)
    assert events_of(app, FIRST)[-1][0] == "follow-up-untrusted"


def test_a_non_participant_citing_only_the_requesters_mail_is_a_stranger(app: App) -> None:
    # The requester's own Message-ID travels in every reply and is no secret.
    intake = Intake(app)
    first_ticket(intake)
    result = feed(intake, messages.mail(subject=f"Re: [{FIRST}] 打印机无法打印",
                                        body="我看到了这个工单。\n", sender=MALLORY,
                                        in_reply_to="<first@client.example>"))
    assert (result.action, result.number) == ("created", SECOND)
    assert ticket_row(app, FIRST)["messages"][-1][2] == "zhang.san@corp.example"


def test_a_copied_participant_can_follow_up(app: App) -> None:
    intake = Intake(app)
    first_ticket(intake)
    assert ticket_row(app, FIRST)["cc"] == ["li@corp.example"]
    result = feed(intake, messages.mail(subject=f"回复: [{FIRST}] 打印机无法打印",
                                        body="环境: 三楼\n", sender="李四 <li@corp.example>"))
    assert (result.action, result.number, result.reason) == ("appended", FIRST, "")
    row = ticket_row(app, FIRST)
    assert row["messages"][-1] == ("in", "follow-up", "li@corp.example", True)
    assert row["fields"] == {"system": "打印服务", "impact": "三楼", "environment": "三楼"}


# ---------------------------------------------------------------- duplicates


def test_the_same_bytes_twice_are_a_duplicate(app: App) -> None:
    intake = Intake(app)
    raw = messages.mail(message_id="<once@client.example>")
    assert feed(intake, raw).action == "created"
    assert feed(intake, raw, origin="again") == IntakeResult(
        "duplicate", "TS20231027000001", "already processed (created TS20231027000001)",
        "once@client.example")
    assert (count(app, Ticket), count(app, Message), count(app, IntakeRecord)) == (1, 1, 1)


def test_crlf_and_lf_copies_are_the_same_mail(app: App) -> None:
    intake = Intake(app)
    raw = messages.mail(message_id="<eol@client.example>")
    assert raw.count(b"\r\n") > 5
    assert feed(intake, raw, origin="imap:INBOX/1").action == "created"
    assert feed(intake, raw.replace(b"\r\n", b"\n"), origin="file:/tmp/x.eml").action == (
        "duplicate")
    assert count(app, Ticket) == 1


def test_the_same_mail_in_two_folders_with_other_trace_headers(app: App) -> None:
    intake = Intake(app)
    raw = messages.mail(message_id="<twofolders@client.example>")
    inbox = messages.with_trace(raw, "mx1.corp.example", "support@corp.example")
    archive = messages.with_trace(raw, "mx2.corp.example", "it-archive@corp.example")
    assert content_hash(inbox) != content_hash(archive)
    assert feed(intake, inbox, origin="imap:INBOX/1").action == "created"
    assert feed(intake, archive, origin="imap:Archive/9") == IntakeResult(
        "duplicate", "TS20231027000001", "already processed (created TS20231027000001)",
        "twofolders@client.example")
    assert (count(app, Ticket), count(app, Message)) == (1, 1)


def test_a_reused_message_id_on_another_mail_is_not_lost(app: App) -> None:
    intake = Intake(app)
    first = messages.mail(message_id="<reused@client.example>")
    other = messages.mail(message_id="<reused@client.example>", subject="VPN 无法连接",
                          body="VPN 连不上了。\n", sender="li@corp.example")
    assert feed(intake, first).number == FIRST
    result = feed(intake, other)
    assert (result.action, result.number) == ("created", SECOND)
    [_, message] = incoming(app)
    assert message.dedup_key == f"sha256:{content_hash(other)}"
    assert message.message_id == "reused@client.example"
    # Each one again is now a duplicate.
    assert feed(intake, first).action == "duplicate"
    assert feed(intake, other).action == "duplicate"
    assert count(app, Ticket) == 2


def test_a_mail_without_message_id_twice_is_a_duplicate(app: App) -> None:
    intake = Intake(app)
    raw = messages.without_header(messages.mail(), "Message-ID")
    result = feed(intake, raw)
    assert (result.action, result.message_id) == ("created", None)
    assert feed(intake, raw) == IntakeResult(
        "duplicate", "TS20231027000001", "already processed (created TS20231027000001)", None)
    assert feed(intake, raw.replace(b"\r\n", b"\n")).action == "duplicate"
    assert incoming(app)[0].dedup_key.startswith("content:")
    assert count(app, Ticket) == 1


NO_SENDER = "no sender address (From, Reply-To and Sender are all missing)"


def test_a_quarantined_mail_twice_is_quarantined_once(app: App) -> None:
    intake = Intake(app)
    raw = messages.without_header(messages.mail(message_id="<nosender@client.example>"), "From")
    assert feed(intake, raw) == IntakeResult("quarantined", None, NO_SENDER,
                                             "nosender@client.example")
    assert feed(intake, raw) == IntakeResult("duplicate", None, "already quarantined",
                                             "nosender@client.example")
    garbage = messages.GARBAGE
    first = feed(intake, garbage)
    assert first.action == "quarantined"
    assert feed(intake, garbage.replace(b"\r\n", b"\n")).action == "duplicate"
    assert count(app, Quarantined) == 2
    assert count(app, Ticket) == 0


def test_releasing_a_mail_whose_cause_remains_quarantines_it_again(app: App,
                                                                   clock: FixedClock) -> None:
    intake = Intake(app)
    raw = messages.without_header(messages.mail(message_id="<nosender@client.example>"), "From")
    feed(intake, raw, origin="file:/tmp/nosender.eml")
    [entry] = quarantine.entries(app)
    assert (entry.reason, entry.origin, entry.message_id, entry.size) == (
        NO_SENDER, "file:/tmp/nosender.eml", "nosender@client.example", len(raw))
    clock.advance(timedelta(minutes=10))

    again = quarantine.release(app, entry.id, intake)

    assert again == IntakeResult("quarantined", None, NO_SENDER, "nosender@client.example")
    [new] = quarantine.entries(app)
    assert new.id != entry.id
    assert (new.reason, new.origin) == (NO_SENDER,
                                        f"quarantine:{entry.id} (file:/tmp/nosender.eml)")
    assert quarantine.raw_of(app, new.id) == raw
    released = quarantine.entries(app, include_released=True)
    assert [(e.id, e.released_at) for e in released] == [
        (entry.id, clock.now()), (new.id, None)]
    assert count(app, Ticket) == 0


def test_a_release_after_the_fault_is_gone_creates_the_ticket(app: App) -> None:
    intake = Intake(app, notifier=FlakyNotifier(app, failures=1))
    raw = messages.mail(message_id="<flaky@client.example>")
    result = feed(intake, raw, origin="imap:INBOX/7")
    assert result == IntakeResult("quarantined", None,
                                  "new failed: RuntimeError: template store unreachable",
                                  "flaky@client.example")
    [entry] = quarantine.entries(app)

    released = quarantine.release(app, entry.id, intake)

    assert released == IntakeResult("created", FIRST, "", "flaky@client.example")
    assert quarantine.entries(app) == []
    [message] = incoming(app)
    assert (message.raw, message.origin) == (raw, f"quarantine:{entry.id} (imap:INBOX/7)")
    assert [kind for kind, _, _ in outbox(app)] == ["acceptance"]
    assert feed(intake, raw).action == "duplicate"
    with pytest.raises(NotFound, match="no such entry awaiting release"):
        quarantine.release(app, entry.id, intake)


class DatabaseGone:
    """An intake that finds the database unreachable (what Intake.ingest raises then)."""

    def ingest(self, raw: RawMail) -> IntakeResult:
        raise TransientError("database unavailable: connection refused")


def test_a_release_cut_short_by_a_database_outage_can_be_retried(app: App) -> None:
    raw = messages.without_header(messages.mail(), "From")
    feed(Intake(app), raw)
    [entry] = quarantine.entries(app)
    with pytest.raises(TransientError):
        quarantine.release(app, entry.id, DatabaseGone())  # type: ignore[arg-type]
    # The mail was not processed, so it must still be waiting for a release.
    assert [e.id for e in quarantine.entries(app)] == [entry.id]
    assert quarantine.release(app, entry.id, Intake(app)).action == "quarantined"


# ---------------------------------------------------------------- never lost


def test_a_failing_step_rolls_everything_back_and_quarantines_the_bytes(app: App) -> None:
    intake = Intake(app, notifier=FlakyNotifier(app, failures=1))
    raw = messages.mail(message_id="<doomed@client.example>",
                        attachments=[("log.txt", "text/plain", b"error 42\n")])

    result = feed(intake, raw, origin="imap:INBOX/3")

    reason = "new failed: RuntimeError: template store unreachable"
    assert result == IntakeResult("quarantined", None, reason, "doomed@client.example")
    for model in (Ticket, Message, Attachment, OutboxMail, Event, TicketCounter):
        assert count(app, model) == 0, model.__name__
    with app.db.transaction() as s:
        [q] = s.scalars(select(Quarantined)).all()
        assert (q.raw, q.reason, q.origin, q.message_id, q.released_at) == (
            raw, reason, "imap:INBOX/3", "doomed@client.example", None)
        [record] = s.scalars(select(IntakeRecord)).all()
        assert (record.action, record.dedup_key) == ("quarantined",
                                                     f"sha256:{content_hash(raw)}")

    # Intake goes on with the next message, and the rolled-back serial is handed out again.
    nxt = feed(intake, messages.mail(subject="请问打印机", sender="li@corp.example"))
    assert (nxt.action, nxt.number) == ("created", FIRST)
    assert [kind for kind, _, _ in outbox(app)] == ["acceptance"]


def test_an_overlong_message_id_never_stops_intake(app: App) -> None:
    """Spam sends Message-IDs of any length; the safety net itself must not fail on one."""
    raw = messages.mail(message_id=f"<{'a' * 1100}@client.example>")
    intake = Intake(app)
    result = feed(intake, raw)
    assert (result.action, result.number) == ("created", FIRST)
    assert feed(intake, raw).action == "duplicate"


def test_an_overlong_display_name_still_opens_a_ticket(app: App) -> None:
    name = "上海分公司财务部" * 50  # 400 characters
    sender = f"=?utf-8?b?{base64.b64encode(name.encode()).decode()}?= <cw@corp.example>"
    result = feed(Intake(app), messages.mail(sender=sender))
    assert (result.action, result.number) == ("created", FIRST)
    assert ticket_row(app, FIRST)["requester"] == "cw@corp.example"


def test_a_nul_character_in_the_body_still_opens_a_ticket(app: App) -> None:
    raw = messages.mail(body="PLACEHOLDER\n").replace(b"PLACEHOLDER", b"printer\x00jammed")
    result = feed(Intake(app), raw)
    assert (result.action, result.number) == ("created", FIRST)
    assert incoming(app)[0].raw == raw


# ---------------------------------------------------------------- automatic mail


AUTOMATIC = {
    "auto-submitted": ({"headers": {"Auto-Submitted": "auto-replied"}}, "auto-reply"),
    "x-autoreply": ({"headers": {"X-Autoreply": "yes"}}, "auto-reply"),
    "x-autorespond": ({"headers": {"X-Autorespond": "Out of office"}}, "auto-reply"),
    "precedence-bulk": ({"headers": {"Precedence": "bulk"}}, "auto-reply"),
    "precedence-junk": ({"headers": {"Precedence": "junk"}}, "auto-reply"),
    "precedence-list": ({"headers": {"Precedence": "list"}}, "list"),
    "exchange-oof": ({"headers": {"X-Auto-Response-Suppress": "All"},
                      "subject": "Out of Office: 打印机无法打印"}, "auto-reply"),
    "list-id": ({"headers": {"List-Id": "IT News <it-news.corp.example>"}}, "list"),
    "own-address": ({"sender": "Corp Support <support@corp.example>"}, "loop"),
    "own-address-upper-case": ({"sender": "SUPPORT@CORP.EXAMPLE"}, "loop"),
    "loop-header": ({"headers": {"X-Ticketd-Loop": "support@corp.example"}}, "loop"),
}


@pytest.mark.parametrize(("options", "kind"), AUTOMATIC.values(), ids=AUTOMATIC.keys())
def test_automatic_mail_never_opens_a_ticket(app: App, options: dict[str, Any],
                                             kind: str) -> None:
    raw = messages.mail(message_id="<auto@client.example>", **options)
    result = feed(Intake(app, notifier=Notify(app)), raw)
    assert result == IntakeResult("ignored", None, kind, "auto@client.example")
    assert (count(app, Ticket), count(app, Message), count(app, OutboxMail)) == (0, 0, 0)
    with app.db.transaction() as s:
        [record] = s.scalars(select(IntakeRecord)).all()
        assert (record.action, record.dedup_key) == ("ignored", "auto@client.example")


@pytest.mark.parametrize("link", ["subject", "in-reply-to"])
def test_an_auto_reply_about_a_ticket_is_logged_on_it(app: App, link: str) -> None:
    intake = Intake(app, notifier=Notify(app))
    first_ticket(intake)
    [ours] = outgoing_ids(app)
    if link == "subject":
        raw = messages.auto_reply(subject=f"Automatic reply: [{FIRST}] 打印机无法打印")
    else:
        raw = messages.mail(subject="Automatic reply: 受理通知", in_reply_to=f"<{ours}>",
                            body="I am out of the office until Monday.",
                            headers={"Auto-Submitted": "auto-replied"})
    result = feed(intake, raw)
    assert (result.action, result.number, result.reason) == (
        "ignored", FIRST, f"auto-reply ({FIRST})")
    assert count(app, Ticket) == 1
    assert events_of(app, FIRST)[-1] == (
        "auto-reply", "zhang.san@corp.example",
        "Auto-Submitted: auto-replied (Auto-Submitted); no ticket opened")
    assert [m[1] for m in ticket_row(app, FIRST)["messages"]] == ["new", "acceptance"]
    assert len(outbox(app)) == 1


def test_auto_submitted_no_from_a_person_opens_a_ticket(app: App) -> None:
    result = feed(Intake(app, notifier=Notify(app)),
                  messages.mail(headers={"Auto-Submitted": "no"}))
    assert (result.action, result.number) == ("created", FIRST)
    assert [kind for kind, _, _ in outbox(app)] == ["acceptance"]


# ---------------------------------------------------------------- bounces


def test_a_bounce_of_our_acceptance_is_logged_and_suppresses_the_address(
        app: App, clock: FixedClock) -> None:
    intake = Intake(app, notifier=Notify(app))
    first_ticket(intake, sender="gone@corp.example", cc=None)
    [ours] = outgoing_ids(app)

    result = feed(intake, messages.dsn(ours, recipient="gone@corp.example"))

    reason = "delivery status report (failed, 5.1.1, for gone@corp.example)"
    assert result == IntakeResult("bounce", FIRST, f"{reason} ({FIRST})", "dsn.1@mx.corp.example")
    assert count(app, Ticket) == 1
    assert events_of(app, FIRST)[-1] == (
        "delivery-failed", "ticketd",
        f"gone@corp.example: 5.1.1 550 5.1.1 User unknown (our message {ours})")
    with app.db.transaction() as s:
        [held] = s.scalars(select(Suppression)).all()
        assert (held.address, held.reason, held.until) == (
            "gone@corp.example", reason, clock.now() + timedelta(hours=72))

    clock.advance(timedelta(hours=1))
    nxt = feed(intake, messages.mail(sender="gone@corp.example", subject="还在吗"))
    assert (nxt.action, nxt.number) == ("created", SECOND)
    assert len(outbox(app)) == 1
    assert events_of(app, SECOND)[-1] == (
        "mail-suppressed", "ticketd",
        f"no automatic mail to gone@corp.example: it bounced permanently ({reason}); "
        "held until 2023-10-30 09:30:00 +08:00")

    clock.advance(timedelta(hours=72))  # the hold is over
    feed(intake, messages.mail(sender="gone@corp.example", subject="又来了"))
    assert [r for _, r, _ in outbox(app)] == [["gone@corp.example"], ["gone@corp.example"]]


def test_a_delayed_delivery_is_logged_without_suppression(app: App) -> None:
    intake = Intake(app, notifier=Notify(app))
    first_ticket(intake, sender="slow@corp.example", cc=None)
    [ours] = outgoing_ids(app)

    result = feed(intake, messages.delayed_dsn(ours, recipient="slow@corp.example"))

    assert (result.action, result.number, result.reason) == (
        "bounce", FIRST, f"delivery status report (delayed, 4.4.1, for slow@corp.example) "
                         f"({FIRST})")
    assert events_of(app, FIRST)[-1] == (
        "delivery-delayed", "ticketd",
        f"slow@corp.example: 4.4.1 451 4.4.1 try again later (our message {ours})")
    assert count(app, Suppression) == 0
    feed(intake, messages.mail(sender="slow@corp.example", subject="还在吗"))
    assert [kind for kind, _, _ in outbox(app)] == ["acceptance", "acceptance"]


# ---------------------------------------------------------------- attachments


def stored_files(app: App) -> list[Path]:
    root = app.attachments_dir
    return sorted(p for p in root.rglob("*") if p.is_file()) if root.exists() else []


def test_attachments_are_stored_by_content_and_only_once(app: App) -> None:
    intake = Intake(app)
    payload = b"%PDF-1.4\n" + bytes(range(256)) * 8
    digest = hashlib.sha256(payload).hexdigest()
    feed(intake, messages.mail(attachments=[("报表.pdf", "application/pdf", payload)]))
    feed(intake, messages.mail(sender="li@corp.example", subject="同样的报表",
                               attachments=[("copy.pdf", "application/pdf", payload)]))

    path = app.attachments_dir / digest[:2] / digest[2:4] / digest
    assert stored_files(app) == [path]
    assert path.read_bytes() == payload
    with app.db.transaction() as s:
        rows = s.scalars(select(Attachment).order_by(Attachment.id)).all()
        assert [(a.filename, a.content_type, a.size, a.sha256, a.skipped) for a in rows] == [
            ("报表.pdf", "application/pdf", len(payload), digest, None),
            ("copy.pdf", "application/pdf", len(payload), digest, None)]


def test_attachment_names_are_sanitized(app: App) -> None:
    raw = messages.mail(attachments=[("../../etc/passwd", "application/octet-stream",
                                      b"root:x:0:0\n"),
                                     ("x.txt", "text/plain", b"abc")])
    raw = raw.replace(b'filename="x.txt"', b"filename*=utf-8''bad%07na%1Bme.txt")
    feed(Intake(app), raw)
    with app.db.transaction() as s:
        rows = s.scalars(select(Attachment).order_by(Attachment.id)).all()
        assert [(a.filename, a.safe_filename) for a in rows] == [
            ("../../etc/passwd", "passwd"), ("bad\x07na\x1bme.txt", "badname.txt")]
    assert len(stored_files(app)) == 2
    assert all(app.attachments_dir in p.parents for p in stored_files(app))


def test_size_limits_record_skipped_attachments_without_storing_them(
        app_with: Callable[..., App]) -> None:
    app = app_with(attachments={"max_bytes": 1000, "max_message_bytes": 1500})
    big, first, second = b"B" * 1200, b"1" * 800, b"2" * 800
    raw = messages.mail(attachments=[("big.bin", "application/octet-stream", big),
                                     ("one.bin", "application/octet-stream", first),
                                     ("two.bin", "application/octet-stream", second)])
    result = feed(Intake(app), raw)
    assert (result.action, result.number) == ("created", FIRST)
    with app.db.transaction() as s:
        rows = s.scalars(select(Attachment).order_by(Attachment.id)).all()
        assert [(a.filename, a.size, a.skipped) for a in rows] == [
            ("big.bin", 1200, "larger than [attachments] max_bytes (1200 > 1000)"),
            ("one.bin", 800, None),
            ("two.bin", 800, "message total over [attachments] max_message_bytes "
                             "(1600 > 1500)")]
    digest = hashlib.sha256(first).hexdigest()
    assert stored_files(app) == [app.attachments_dir / digest[:2] / digest[2:4] / digest]
    assert incoming(app)[0].raw == raw  # what was skipped is still in the raw message


# ---------------------------------------------------------------- outgoing mail on intake


def test_a_new_ticket_queues_one_acceptance_and_a_follow_up_nothing(app: App) -> None:
    intake = Intake(app, notifier=Notify(app))
    first_ticket(intake)
    # The person the requester copied is copied on the acceptance ([tickets] copy_cc).
    assert outbox(app) == [("acceptance", ["zhang.san@corp.example", "li@corp.example"],
                            ticket_row(app, FIRST)["id"])]
    assert actions_of(app, FIRST) == ["created", "routing", "mail-queued"]
    assert ticket_row(app, FIRST)["status"] == "new"  # team ops has no members here

    # Nobody handles it yet, so a follow-up goes to nobody.
    feed(intake, messages.mail(subject=f"Re: [{FIRST}] 打印机无法打印", body="补充一下。\n"))
    assert len(outbox(app)) == 1
    assert actions_of(app, FIRST) == ["created", "routing", "mail-queued", "follow-up"]


def test_missing_details_are_asked_for_and_a_reply_supplies_them(app: App) -> None:
    intake = Intake(app, notifier=Notify(app))
    feed(intake, messages.mail(subject="导出报表报错", body="点击导出以后页面报错。\n",
                               message_id="<export@client.example>"))
    # ONE mail that both acknowledges the ticket and asks for the details.
    assert [kind for kind, _, _ in outbox(app)] == ["need_info"]
    assert ticket_row(app, FIRST)["status"] == "need_info"
    # "点击导出以后页面报错" is the reproduction: only the system is asked for.
    assert events_of(app, FIRST)[1] == ("status", "ticketd", "missing details: system")

    feed(intake, messages.mail(subject=f"回复: [{FIRST}] 导出报表报错",
                               body="系统: OA\n复现步骤: 点击导出\n",
                               in_reply_to="<export@client.example>"))

    row = ticket_row(app, FIRST)
    assert (row["status"], row["fields"]) == ("new", {"system": "OA", "steps": "点击导出"})
    with app.db.transaction() as s:
        last = tickets.get(s, FIRST).events[-5:]
        assert [(e.action, e.detail, e.before, e.after) for e in last][:3] == [
            ("follow-up", f"subject: reply from {ZHANG}", None, None),
            ("fields", "details supplied by reply: steps, system",
             {"fields": {"steps": "点击导出以后页面报错。"}},
             {"fields": {"system": "OA", "steps": "点击导出"}}),
            ("status", "the requester supplied the missing details", {"status": "need_info"},
             {"status": "new"})]
        assert [e.action for e in last[3:]] == ["routing", "mail-queued"]
    # The requester is told the ticket now goes ahead.
    assert [kind for kind, _, _ in outbox(app)] == ["need_info", "acceptance"]


def test_a_reply_with_part_of_the_details_keeps_need_info(app: App) -> None:
    intake = Intake(app, notifier=Notify(app))
    # neither the system nor the steps
    feed(intake, messages.mail(subject="导出报表报错", body="页面报错了。\n"))
    feed(intake, messages.mail(subject=f"回复: [{FIRST}] 导出报表报错", body="系统: OA\n"))
    row = ticket_row(app, FIRST)
    assert (row["status"], row["fields"]) == ("need_info", {"system": "OA"})
    assert events_of(app, FIRST)[-2] == ("note", "zhang.san@corp.example",
                                         "still missing: steps")
    # One more need_info naming only what is still missing.
    assert [kind for kind, _, _ in outbox(app)] == ["need_info", "need_info"]


def test_the_loop_brake_holds_back_acceptances_for_an_hour(app: App, clock: FixedClock) -> None:
    intake = Intake(app, notifier=Notify(app))
    assert app.config.mail.auto_reply_limit == 5
    numbers = [feed(intake, messages.mail(sender="loop@corp.example", subject=f"请问 {i}"))
               .number for i in range(7)]
    assert numbers == [f"TS2023102700000{i}" for i in range(1, 8)]
    assert len(outbox(app)) == 5
    for number in numbers[5:]:
        assert number is not None
        assert actions_of(app, number) == ["created", "routing", "mail-suppressed"]
        assert events_of(app, number)[-1][2] == (
            "no automatic mail to loop@corp.example: loop brake: 5 automatic mails to "
            "loop@corp.example in the last hour (limit [mail] auto_reply_limit = 5)")
    # Somebody else is not held back meanwhile.
    feed(intake, messages.mail(sender="other@corp.example", subject="请问打印机"))
    assert len(outbox(app)) == 6

    clock.advance(timedelta(hours=2))
    later = feed(intake, messages.mail(sender="loop@corp.example", subject="请问 8"))
    assert actions_of(app, later.number or "") == ["created", "routing", "mail-queued"]
    assert outbox(app)[-1][:2] == ("acceptance", ["loop@corp.example"])
