"""`ticketd inspect` run as an admin runs it: the report, --json, stdin, exit codes."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest

from tests import messages
from tests.e2e.conftest import Run

pytestmark = pytest.mark.e2e

JSON_KEYS = {"from", "to", "cc", "reply_to", "subject", "date", "message_id", "in_reply_to",
             "references", "body_text", "body_html", "quoted_text", "attachments", "charsets",
             "verdict"}


def gb2312_labelled_gbk() -> bytes:
    """A subject with 镕 (in GBK, not in GB2312) labelled gb2312, as old clients send it."""
    word = base64.b64encode("朱镕基的报销单打不开".encode("gbk")).decode()
    return ("From: wang.zhe@corp.example\r\nTo: support@corp.example\r\n"
            f"Subject: =?gb2312?B?{word}?=\r\nDate: Fri, 27 Oct 2023 09:00:00 +0800\r\n"
            "Message-ID: <gb.e2e@client.example>\r\nMIME-Version: 1.0\r\n"
            "Content-Type: text/plain; charset=gb2312\r\n\r\n").encode() + (
        "报销系统打不开。\r\n".encode("gbk"))


def test_text_report_decodes_the_subject_and_gives_the_verdict(ticketd: Run, site: Path) -> None:
    eml = site / "gb.eml"
    eml.write_bytes(gb2312_labelled_gbk())
    res = ticketd("inspect", str(eml))
    assert res.returncode == 0, res.stderr
    out = res.stdout
    assert "Subject:      朱镕基的报销单打不开" in out
    assert "Verdict: new ticket" in out
    assert "gb2312 declared" in out  # the repair note
    for section in ("Envelope / headers", "Charsets", "Body (new text", "Quoted history",
                    "Attachments", "Verdict", "Classification"):
        assert section in out
    assert "no database: follow-ups cannot be recognised" in out
    assert not (site / "tickets.db").exists()  # inspect created no database


def test_follow_up_after_ingest(ticketd: Run, site: Path) -> None:
    first = site / "first.eml"
    first.write_bytes(messages.mail(message_id="<first.e2e@client.example>"))
    ingested = ticketd("ingest", str(first))
    assert ingested.returncode == 0, ingested.stderr
    number = ingested.stdout.split()[0]
    reply = site / "reply.eml"
    reply.write_bytes(messages.mail(subject="Re: 打印机",
                                    in_reply_to="<first.e2e@client.example>"))
    res = ticketd("inspect", str(reply))
    assert res.returncode == 0, res.stderr
    assert (f"Verdict: follow-up on {number} by In-Reply-To; the sender is a participant"
            in res.stdout)
    again = ticketd("inspect", "--json", str(first))
    assert json.loads(again.stdout)["verdict"]["action"] == "duplicate"


def test_json_has_every_key(ticketd: Run, site: Path) -> None:
    eml = site / "m.eml"
    eml.write_bytes(messages.mail(cc="李四 <li.si@corp.example>",
                                  attachments=[("a.pdf", "application/pdf", b"%PDF")]))
    res = ticketd("inspect", "--json", str(eml))
    assert res.returncode == 0, res.stderr
    data = json.loads(res.stdout)
    assert set(data) >= JSON_KEYS
    assert data["from"] == {"name": "张三", "email": "zhang.san@corp.example"}
    assert data["date"] == "2023-10-27T09:00:00+08:00"
    assert data["attachments"][0]["filename"] == "a.pdf"
    assert set(data["attachments"][0]) >= {"filename", "content_type", "size", "sha256",
                                           "skipped"}
    assert set(data["verdict"]) >= {"action", "number", "rule", "reason"}
    assert data["verdict"]["action"] == "new"


def test_stdin(ticketd: Run) -> None:
    res = ticketd("inspect", "--json", "-", input=messages.auto_reply())
    assert res.returncode == 0, res.stderr
    data = json.loads(res.stdout)
    assert (data["origin"], data["verdict"]["action"], data["verdict"]["header"]) == (
        "stdin", "ignored", "Auto-Submitted")


def test_exit_codes(ticketd: Run, site: Path) -> None:
    """One rule: a verdict, even "quarantined", is a successful explanation (exit 0), whether
    the parser refused the bytes or decide() would quarantine them; 2 is a usage error."""
    garbage = site / "garbage.eml"
    garbage.write_bytes(messages.GARBAGE)
    unreadable = ticketd("inspect", str(garbage))
    assert unreadable.returncode == 0, unreadable.stderr
    assert "not a mail: no header" in unreadable.stdout
    as_json = ticketd("inspect", "--json", str(garbage))
    assert as_json.returncode == 0 and json.loads(as_json.stdout)["readable"] is False
    no_sender = site / "no-sender.eml"
    no_sender.write_bytes(b"To: support@corp.example\r\nSubject: who am I\r\n"
                          b"Message-ID: <anon@x.example>\r\n\r\nbody\r\n")
    anonymous = ticketd("inspect", "--json", str(no_sender))
    assert anonymous.returncode == 0, anonymous.stderr
    data = json.loads(anonymous.stdout)
    assert data["readable"] is True
    assert data["verdict"]["action"] == "quarantined"
    assert "no sender address" in data["verdict"]["reason"]
    missing = ticketd("inspect", str(site / "nope.eml"))
    assert missing.returncode == 2
    assert "nope.eml: no such file" in missing.stderr
    assert ticketd("inspect").returncode == 2


def test_reads_the_database_by_every_url_spelling_db_accepts(ticketd: Run, site: Path,
                                                             database_url: str) -> None:
    """`postgres://` (hosting panels) and a relative SQLite path: inspect reads the URL the
    way every other command does (db.parse_url), so it finds the ticket ingest made."""
    first = site / "first.eml"
    first.write_bytes(messages.mail(message_id="<spelling@client.example>"))
    ingested = ticketd("ingest", str(first))
    assert ingested.returncode == 0, ingested.stderr
    number = ingested.stdout.split()[0]
    if database_url.startswith("sqlite"):
        other = "sqlite:///tickets.db"  # relative to the config file's folder
    else:
        other = "postgres://" + database_url.split("://", 1)[1]
    config = site / "config.toml"
    config.write_text(config.read_text().replace(database_url, other), encoding="utf-8")
    assert other in config.read_text()
    reply = site / "reply.eml"
    reply.write_bytes(messages.mail(subject="Re: 打印机",
                                    in_reply_to="<spelling@client.example>"))
    res = ticketd("inspect", "--json", str(reply))
    assert res.returncode == 0, res.stderr
    verdict = json.loads(res.stdout)["verdict"]
    assert (verdict["action"], verdict["number"]) == ("follow-up", number)
