"""`explain` on every database: one test per verdict, agreement with intake, nothing changes."""

from __future__ import annotations

import base64
import hashlib
import inspect
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, select, text

from daemon import explain as explain_mod
from daemon.app import App
from daemon.clock import FixedClock
from daemon.explain import AS_INTAKE, NO_DATABASE, Explanation, attachment_skips, explain, render
from daemon.intake.pipeline import Intake
from daemon.intake.sources import RawMail
from daemon.models import Base, OutboxMail
from daemon.outcomes import IntakeResult
from daemon.replies.notify import Notify
from daemon.replies.outbox import flush
from tests import messages
from tests.conftest import make_config

REPO = Path(__file__).resolve().parents[2]
STRANGER = "Mallory <mallory@elsewhere.example>"
# Builders of something other than one message: an mbox file holds several (ingest splits it;
# inspect reads one message).
NOT_ONE_MESSAGE = frozenset({"mbox"})
PDF = ("report.pdf", "application/pdf", b"%PDF-1.4 " + b"x" * 200)


def ingest(app: App, raw: bytes, notify: bool = False) -> IntakeResult:
    return Intake(app, notifier=Notify(app) if notify else None).ingest(RawMail(raw, "test"))


def created(app: App, raw: bytes | None = None, notify: bool = False) -> str:
    result = ingest(app, raw or messages.mail(message_id="<first@client.example>"), notify)
    assert result.action == "created", result
    assert result.number is not None
    return result.number


def see(app: App, raw: bytes) -> Explanation:
    expl = explain(app, raw, origin="test")
    render(expl)  # every explanation renders
    return expl


def no_from(sender_headers: str = "") -> bytes:
    return ("To: support@corp.example\r\nSubject: 没有发件人\r\n"
            "Date: Fri, 27 Oct 2023 01:00:00 +0000\r\nMessage-ID: <nofrom.1@client.example>\r\n"
            f"{sender_headers}MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n"
            "Content-Transfer-Encoding: 8bit\r\n\r\n请帮忙看看。\r\n").encode()


def gb2312_labelled_gbk(subject: str = "朱镕基的报销单打不开") -> bytes:
    """A subject with 镕 (GBK only, not in GB2312) labelled gb2312, as old clients send it."""
    word = base64.b64encode(subject.encode("gbk")).decode()
    return (f"From: =?gb2312?B?{base64.b64encode('王喆'.encode('gbk')).decode()}?= "
            "<wang.zhe@corp.example>\r\nTo: support@corp.example\r\n"
            f"Subject: =?gb2312?B?{word}?=\r\nDate: Fri, 27 Oct 2023 09:00:00 +0800\r\n"
            "Message-ID: <gb.1@client.example>\r\nMIME-Version: 1.0\r\n"
            "Content-Type: text/plain; charset=gb2312\r\nContent-Transfer-Encoding: 8bit\r\n\r\n"
            ).encode() + "报销系统打不开，请帮忙。\r\n".encode("gbk")


# ---------------------------------------------------------------- one test per verdict


def test_new_ticket_shows_headers_body_and_classification(app: App) -> None:
    raw = messages.mail(subject="OA系统宕机", body="OA 打不开了。\n系统: OA\n\n> 旧的引用\n",
                        cc="李四 <li.si@corp.example>")
    expl = see(app, raw)
    assert expl.readable and expl.database_used
    assert (expl.verdict.action, expl.verdict.number, expl.verdict.rule) == ("new", None, "none")
    data = expl.as_dict()
    assert data["from"] == {"name": "张三", "email": "zhang.san@corp.example"}
    assert data["cc"] == [{"name": "李四", "email": "li.si@corp.example"}]
    assert data["date"] == "2023-10-27T09:00:00+08:00"  # Asia/Shanghai, the configured zone
    assert data["subject"] == "OA系统宕机"
    ticket = data["classification"]
    assert (ticket["category"], ticket["team"], ticket["fields"]) == ("系统故障", "ops",
                                                                        {"system": "OA"})
    assert [f["name"] for f in ticket["missing"]] == ["impact"]
    assert ticket["scores"]["系统故障"] > 0 == ticket["scores"]["权限申请"]
    report = render(expl)
    assert "  scores: 系统故障 " in report
    assert "  priority P0: core business down or many users ('宕机')" in report
    for section in ("Envelope / headers", "Charsets", "Body (new text", "Quoted history",
                    "Attachments", "Verdict", "Classification"):
        assert section in report
    assert "Verdict: new ticket" in report and "impact (影响范围 / Impact)" in report


def test_follow_up_by_subject_number_from_participant(app: App) -> None:
    number = created(app)
    reply = messages.mail(subject=f"Re: [{number}] 打印机无法打印", body="影响范围: 三楼\n")
    expl = see(app, reply)
    v = expl.verdict
    assert (v.action, v.number, v.rule, v.participant, v.trusted) == (
        "follow-up", number, "subject", True, True)
    assert expl.ticket is not None and expl.ticket.supplied == {"impact": "三楼"}
    assert f"follow-up on {number} by the ticket number in the subject" in render(expl)
    assert "a participant of that ticket" in render(expl)


def test_follow_up_by_in_reply_to(app: App) -> None:
    number = created(app)
    expl = see(app, messages.mail(subject="Re: 打印机", in_reply_to="<first@client.example>"))
    v = expl.verdict
    assert (v.action, v.number, v.rule, v.participant) == ("follow-up", number, "in-reply-to",
                                                           True)
    assert "by In-Reply-To" in render(expl)


def test_stranger_replying_to_the_requesters_mail_gets_a_linked_new_ticket(app: App) -> None:
    # The requester's own Message-ID is no secret; only our tokened ids prove a real reply.
    number = created(app)
    expl = see(app, messages.mail(subject="Re: 打印机", in_reply_to="<first@client.example>",
                                  sender=STRANGER))
    v = expl.verdict
    assert (v.action, v.rule, v.participant, v.linked_number) == (
        "new", "in-reply-to", False, number)


def test_follow_up_by_references(app: App) -> None:
    number = created(app)
    expl = see(app, messages.mail(subject="Re: 打印机",
                                  references="<other@x.example> <first@client.example>"))
    assert (expl.verdict.action, expl.verdict.number, expl.verdict.rule,
            expl.verdict.participant) == ("follow-up", number, "references", True)
    assert expl.as_dict()["references"] == ["other@x.example", "first@client.example"]


def test_stranger_naming_a_ticket_gets_a_linked_new_ticket(app: App) -> None:
    number = created(app)
    expl = see(app, messages.mail(subject=f"[{number}] 我也有这个问题", sender=STRANGER))
    v = expl.verdict
    assert (v.action, v.number, v.rule, v.participant, v.linked_number) == (
        "new", None, "subject", False, number)
    assert f"linked to {number}" in render(expl)


def test_stranger_appended_when_policy_says_so(
        tmp_path: Path, database_url: str, clock: FixedClock) -> None:
    app = App(make_config(tmp_path, database_url, tickets={"stranger_number": "append"}),
              clock=clock)
    app.ready_db()
    number = created(app)
    expl = see(app, messages.mail(subject=f"[{number}] 我也有这个问题", sender=STRANGER))
    v = expl.verdict
    assert (v.action, v.number, v.participant, v.trusted) == ("follow-up", number, False, False)
    assert expl.ticket is not None and expl.ticket.supplied == {}  # strangers supply nothing
    assert "untrusted (flagged)" in render(expl)
    app.close()


def test_duplicate(app: App) -> None:
    raw = messages.mail(message_id="<dup@client.example>")
    number = created(app, raw)
    expl = see(app, raw)
    assert (expl.verdict.action, expl.verdict.number, expl.verdict.reason) == (
        "duplicate", number, f"already processed (created {number})")


def test_ignored_auto_reply_names_rule_and_header(app: App) -> None:
    expl = see(app, messages.auto_reply())
    v = expl.verdict
    assert (v.action, v.kind, v.rule, v.header) == ("ignored", "auto-reply", "auto_submitted",
                                                    "Auto-Submitted")
    assert "decided by header Auto-Submitted" in render(expl)


def test_bounce_names_our_outgoing_message_and_its_ticket(app: App) -> None:
    number = created(app, notify=True)
    with app.db.transaction() as session:
        ours = session.scalars(select(OutboxMail.message_id)).first()
    assert ours is not None
    expl = see(app, messages.dsn(ours))
    v = expl.verdict
    assert (v.action, v.bounced_message_id, v.number, v.rule) == ("bounce", ours, number,
                                                                  "delivery_report")
    assert f"bounce of our outgoing message <{ours}> of ticket {number}" in render(expl)
    assert all(a.skipped for a in expl.attachments)  # a bounce stores nothing


def test_quarantined_without_sender_is_readable(app: App) -> None:
    expl = see(app, no_from())
    assert expl.readable
    assert expl.verdict.action == "quarantined"
    assert "no sender address" in expl.verdict.reason
    assert "From:         - (no sender address)" in render(expl)


def test_unreadable_is_not_readable_with_the_reason(app: App) -> None:
    expl = see(app, messages.GARBAGE)
    assert not expl.readable
    assert (expl.verdict.action, expl.verdict.reason) == ("quarantined", "not a mail: no header")
    data = expl.as_dict()
    assert data["error"] == "not a mail: no header" and data["from"] is None
    assert "Could not be read as a mail" in render(expl)


def test_already_quarantined_is_a_duplicate_as_for_intake(app: App) -> None:
    assert ingest(app, messages.GARBAGE).action == "quarantined"
    expl = see(app, messages.GARBAGE)
    assert (expl.readable, expl.verdict.action) == (False, "duplicate")
    assert ingest(app, messages.GARBAGE).action == "duplicate"


def test_gb2312_labelled_gbk_subject_shows_the_repair(app: App) -> None:
    expl = see(app, gb2312_labelled_gbk())
    assert expl.mail is not None and expl.mail.subject == "朱镕基的报销单打不开"
    charsets = expl.as_dict()["charsets"]
    subject = next(c for c in charsets if c["where"] == "subject")
    assert subject["declared"] == "gb2312" and subject["used"] != "gb2312"
    assert subject["repair"] and "gb2312 declared" in subject["repair"]
    report = render(expl)
    assert "朱镕基的报销单打不开" in report and f"repair: {subject['repair']}" in report


def test_attachment_over_max_bytes_is_skipped_with_the_reason(
        tmp_path: Path, database_url: str, clock: FixedClock) -> None:
    app = App(make_config(tmp_path, database_url,
                          attachments={"max_bytes": 100, "max_message_bytes": 150}), clock=clock)
    small = ("a.txt", "text/plain", b"a" * 80)
    raw = messages.mail(attachments=[PDF, small, small])
    expl = see(app, raw)
    skipped = [a.skipped for a in expl.attachments]
    assert skipped[0] == "larger than [attachments] max_bytes (209 > 100)"
    assert skipped[1] is None
    assert skipped[2] == "message total over [attachments] max_message_bytes (160 > 150)"
    first = expl.as_dict()["attachments"][0]
    assert {k: first[k] for k in ("filename", "content_type", "size", "sha256")} == {
        "filename": "report.pdf", "content_type": "application/pdf", "size": 209,
        "sha256": hashlib.sha256(PDF[2]).hexdigest()}
    assert "skipped: larger than [attachments] max_bytes" in render(expl)
    # intake applies the same limits
    app.ready_db()
    result = ingest(app, raw)
    with app.db.transaction() as session:
        stored = session.execute(text("SELECT skipped FROM attachments ORDER BY id")).all()
    assert [row[0] for row in stored] == skipped, result
    app.close()


def test_attachment_skips_is_the_store_rule() -> None:
    assert attachment_skips([], 10, 20) == []
    assert attachment_skips([10, 11, 10, 1], 10, 20) == [
        None, "larger than [attachments] max_bytes (11 > 10)", None,
        "message total over [attachments] max_message_bytes (21 > 20)"]


# ---------------------------------------------------------------- agreement with intake


def _builder_args(follow_to: str, ours: str) -> dict[str, Any]:
    """Arguments for builders in tests/messages.py that need some (by parameter name)."""
    base = messages.mail(subject="Fwd: 打印机", message_id="<base@client.example>")
    return {"original_message_id": ours, "raw": base, "name": "From",
            "relay": "relay.example", "delivered_to": "support@corp.example",
            "subject": f"Re: [{follow_to}] 打印机", "body": "还是不行。"}


def _suite_messages(number: str, ours: str) -> Iterator[tuple[str, bytes]]:
    """Every builder and constant of tests/messages.py, called with whatever it needs."""
    known = _builder_args(number, ours)
    for name, obj in vars(messages).items():
        if name.startswith("_"):
            continue
        if isinstance(obj, bytes):
            yield name, obj
        elif inspect.isfunction(obj) and obj.__module__ == messages.__name__:
            if name in NOT_ONE_MESSAGE:
                continue
            params = inspect.signature(obj).parameters.values()
            needed = [p.name for p in params if p.default is inspect.Parameter.empty
                      and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]
            unknown = [p for p in needed if p not in known]
            if unknown:
                pytest.fail(f"tests/messages.py {name}: teach _builder_args about {unknown}")
            yield name, obj(**{p: known[p] for p in needed})


def _own_messages(number: str, ours: str) -> Iterator[tuple[str, bytes]]:
    yield "gb2312-gbk", gb2312_labelled_gbk()
    yield "no-from", no_from()
    yield "reply-to-only", no_from("Reply-To: 王五 <wang.wu@corp.example>\r\n")
    yield "latin1-utf8", ("From: =?iso-8859-1?Q?Ren=C3=A9?= <rene@corp.example>\r\n"
                          "To: support@corp.example\r\nSubject: caf\xc3\xa9 down\r\n"
                          "Message-ID: <l1@c.example>\r\nContent-Type: text/plain; "
                          "charset=iso-8859-1\r\n\r\nThe caf\xc3\xa9 wifi is down.\r\n"
                          ).encode("latin-1")
    yield "precedence-bulk", messages.mail(headers={"Precedence": "bulk"})
    yield "list", messages.mail(headers={"List-Id": "<news.example.org>"})
    yield "x-autoreply", messages.mail(headers={"X-Autoreply": "yes"})
    yield "loop", messages.mail(headers={"X-Ticketd-Loop": "support@corp.example"})
    yield "own-address", messages.mail(sender="support@corp.example")
    yield "auto-subject-zh", messages.mail(subject="自动回复: 我在休假")
    yield "dsn-ours", messages.dsn(ours)
    yield "dsn-unknown", messages.dsn("unknown@corp.example")
    yield "follow-subject", messages.mail(subject=f"Re: [{number}] 打印机", body="系统: 打印")
    yield "follow-irt", messages.mail(subject="Re: x", in_reply_to="<first@client.example>")
    yield "follow-refs", messages.mail(subject="Re: x", references="<first@client.example>")
    yield "stranger", messages.mail(subject=f"[{number}] 同样问题", sender=STRANGER)
    yield "ghost-number", messages.mail(subject="[TS20991231000001] 不存在的工单")
    yield "with-attachment", messages.mail(attachments=[PDF])
    yield "duplicate", messages.mail(message_id="<first@client.example>")
    yield "empty", b""
    yield "ole", b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + b"\0" * 64
    yield "garbage-again", messages.GARBAGE


def test_inspect_and_ingest_agree_on_every_test_message(app: App) -> None:
    number = created(app, notify=True)
    with app.db.transaction() as session:
        ours = session.scalars(select(OutboxMail.message_id)).first()
    assert ours is not None
    seen: list[tuple[str, str, str | None]] = []
    cases = [*_suite_messages(number, ours), *_own_messages(number, ours)]
    assert {"mail", "auto_reply", "dsn", "GARBAGE"} <= {name for name, _ in cases}
    for name, raw in cases:
        verdict = explain(app, raw, origin=name).verdict
        result = ingest(app, raw)
        # a new ticket has no number before intake allocates one
        expected = None if result.action == "created" else result.number
        assert (verdict.intake_action, verdict.number) == (result.action, expected), (
            name, verdict, result)
        seen.append((name, verdict.action, verdict.number))
    # the suite covers every verdict
    assert {action for _, action, _ in seen} == set(AS_INTAKE)


# ---------------------------------------------------------------- nothing changes


def _tree(root: Path) -> dict[str, str]:
    """sha256 of every file under root (and the empty folders): the store as bytes."""
    if not root.exists():
        return {"<absent>": ""}
    out: dict[str, str] = {}
    for path in sorted(root.rglob("*")):
        key = str(path.relative_to(root))
        out[key] = hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else "dir"
    return out


def _rows(app: App) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every table, read through a separate engine that is disposed at once."""
    engine = create_engine(app.db.engine.url)
    try:
        with engine.connect() as conn:
            return {t.name: sorted(map(tuple, conn.execute(t.select()).all()), key=repr)
                    for t in Base.metadata.sorted_tables}
    finally:
        engine.dispose()


def _sqlite_files(app: App) -> dict[str, str]:
    if app.db.engine.dialect.name != "sqlite":
        return {}
    db_file = Path(str(app.db.engine.url.database))
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(db_file.parent.glob(db_file.name + "*"))}


def _config_file(app: App, tmp_path: Path) -> Path:
    cfg = app.config
    path = tmp_path / "inspect.toml"
    path.write_text(
        f'[support]\naddress = "{cfg.support.address}"\n'
        f"[database]\nurl = '{app.db.engine.url.render_as_string(hide_password=False)}'\n"
        f"[smtp]\nbackend = \"file\"\nfile_dir = '{cfg.smtp.file_dir}'\n"
        f"[attachments]\ndir = '{cfg.attachments.dir}'\n", encoding="utf-8")
    return path


def _inspect(config: Path, mail_file: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    env.pop("TICKETD_CONFIG", None)
    return subprocess.run([sys.executable, "-m", "daemon", "--config", str(config), "inspect",
                           *extra, str(mail_file)], capture_output=True, text=True, env=env,
                          cwd=config.parent, timeout=120, check=False)


@pytest.fixture
def busy(app: App) -> App:
    """A database with tickets, messages, stored attachments, queued and sent mail."""
    created(app, messages.mail(message_id="<first@client.example>", attachments=[PDF]),
            notify=True)
    ingest(app, messages.GARBAGE)
    ingest(app, messages.mail(subject="第二个问题", message_id="<second@client.example>"),
           notify=True)
    report = flush(app)
    assert report.sent >= 1
    return app


def _explain_all(app: App, number: str, ours: str) -> list[str]:
    actions = [explain(app, raw, origin=name).verdict.action
               for name, raw in [*_suite_messages(number, ours), *_own_messages(number, ours)]]
    return actions


def test_explain_changes_nothing_in_any_store(busy: App, tmp_path: Path) -> None:
    app = busy
    with app.db.transaction() as session:
        ours = session.scalars(select(OutboxMail.message_id)).first()
        number = session.execute(text("SELECT number FROM tickets ORDER BY id")).scalars().first()
    assert ours is not None and number is not None
    # Close our own pool first: a second connection inside this process would share its
    # SQLite shared-memory index (see the module docstring); ticketd inspect has none.
    app.db.dispose()
    stores = (Path(app.config.attachments.dir), Path(app.config.smtp.file_dir))
    rows = _rows(app)
    before = (_sqlite_files(app), [_tree(s) for s in stores])
    assert before[1][0] != {"<absent>": ""} and before[1][1] != {"<absent>": ""}
    actions = _explain_all(app, number, ours)
    assert {"new", "follow-up", "duplicate", "ignored", "bounce", "quarantined"} <= set(actions)
    assert (_sqlite_files(app), [_tree(s) for s in stores]) == before
    assert _rows(app) == rows

    mail_file = tmp_path / "reply.eml"
    mail_file.write_bytes(messages.mail(subject=f"Re: [{number}] 打印机"))
    config = _config_file(app, tmp_path)
    before = (_sqlite_files(app), [_tree(s) for s in stores])
    res = _inspect(config, mail_file, "--json")
    assert res.returncode == 0, res.stderr
    assert f'"number": "{number}"' in res.stdout
    assert (_sqlite_files(app), [_tree(s) for s in stores]) == before
    assert _rows(app) == rows


def test_inspect_beside_a_process_holding_the_database_changes_nothing(
        busy: App, tmp_path: Path) -> None:
    """The daemon has the database open (WAL and shared memory present): still no byte moves."""
    app = busy
    with app.db.transaction() as session:  # this process now holds a pooled connection
        number = session.execute(text("SELECT number FROM tickets ORDER BY id")).scalars().first()
    assert number is not None
    files = _sqlite_files(app)
    if app.db.is_sqlite:
        assert {name.rsplit("-", 1)[-1] for name in files} >= {"wal", "shm"}
    mail_file = tmp_path / "reply.eml"
    mail_file.write_bytes(messages.mail(subject=f"Re: [{number}] 打印机"))
    config = _config_file(app, tmp_path)
    for extra in ((), ("--json",)):
        res = _inspect(config, mail_file, *extra)
        assert res.returncode == 0, res.stderr
        assert number in res.stdout
        assert _sqlite_files(app) == files


def test_no_database_creates_no_file_or_folder(tmp_path: Path, clock: FixedClock) -> None:
    site = tmp_path / "site"
    site.mkdir()
    app = App(make_config(site, "sqlite:///var/db/tickets.db"), clock=clock)
    expl = explain(app, messages.mail(subject="Re: [TS20231027000001] 打印机"), origin="x")
    assert (expl.verdict.action, expl.database_used) == ("new", False)
    assert NO_DATABASE in render(expl) and NO_DATABASE in expl.as_dict()["notes"]
    app.close()
    config = site / "config.toml"
    config.write_text('[support]\naddress = "support@corp.example"\n'
                      '[database]\nurl = "sqlite:///var/db/tickets.db"\n', encoding="utf-8")
    mail_file = tmp_path / "m.eml"
    mail_file.write_bytes(messages.mail())
    res = _inspect(config, mail_file)
    assert res.returncode == 0, res.stderr
    assert "Verdict: new ticket" in res.stdout and NO_DATABASE in res.stdout
    assert sorted(p.name for p in site.iterdir()) == ["config.toml"]


def test_database_without_schema_is_no_database(tmp_path: Path, clock: FixedClock) -> None:
    db_file = tmp_path / "empty.db"
    db_file.write_bytes(b"")
    app = App(make_config(tmp_path, f"sqlite:///{db_file}"), clock=clock)
    expl = explain(app, messages.mail(), origin="x")
    assert not expl.database_used and "no ticketd schema" in expl.database
    assert sorted(p.name for p in tmp_path.iterdir()) == ["empty.db"]
    assert db_file.read_bytes() == b""


def test_unreachable_database_still_explains(tmp_path: Path, clock: FixedClock) -> None:
    url = "postgresql+psycopg://nobody@127.0.0.1:9/none"  # discard port: nothing listens
    app = App(make_config(tmp_path, url), clock=clock)
    expl = explain(app, messages.auto_reply(), origin="x")
    assert expl.readable and expl.verdict.action == "ignored"
    assert not expl.database_used and expl.database.startswith(NO_DATABASE)
    assert "cannot read the database" in expl.database


def test_every_verdict_has_an_intake_action() -> None:
    assert set(explain_mod.VERDICTS) == set(AS_INTAKE)
    assert set(AS_INTAKE.values()) == set(IntakeResult.ACTIONS)

