"""`ticketd ingest` as an operator runs it: files, mbox, Maildir, stdin, --json, quarantine, tty.

Numbers carry the real local date here (the command runs on the wall clock), so expected
numbers are computed from today's date in the support time zone.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import pty
import re
import select
import struct
import subprocess
import sys
import termios
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from daemon import tickets
from daemon.app import App
from daemon.config import load
from daemon.intake.pipeline import Intake
from daemon.intake.sources import RawMail
from tests import messages
from tests.e2e.conftest import REPO, Run

pytestmark = pytest.mark.e2e


def number(serial: int) -> str:
    return f"TS{datetime.now(ZoneInfo('Asia/Shanghai')):%Y%m%d}{serial:06d}"


def write(site: Path, name: str, data: bytes) -> Path:
    path = site / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def question(i: int, sender: str = "zhang.san@corp.example") -> bytes:
    """A mail that opens a ticket with exactly one acceptance (no details missing)."""
    return messages.mail(subject=f"请问打印机 {i}", sender=sender,
                         message_id=f"<q{i}@client.example>")


def automatic(message_id: str) -> bytes:
    return messages.mail(subject="Automatic reply: 打印机无法打印", message_id=message_id,
                         body="I am out of the office until Monday.",
                         headers={"Auto-Submitted": "auto-replied"})


def test_one_line_per_mail_then_duplicates_as_json(ticketd: Run, site: Path) -> None:
    a = write(site, "a.eml", question(1))
    b = write(site, "b.eml", question(2, sender="li@corp.example"))
    auto = write(site, "auto.eml", automatic("<auto.1@client.example>"))
    garbage = write(site, "garbage.eml", messages.GARBAGE)

    first = ticketd("ingest", str(a), str(b), str(auto), str(garbage))

    assert first.returncode == 0, first.stderr  # quarantined counts as handled
    assert first.stdout.splitlines() == [f"{number(1)} created", f"{number(2)} created",
                                         "- ignored auto-reply",
                                         "- quarantined not a mail: no header"]
    warning, *rest = first.stderr.splitlines()
    assert warning.endswith(f" WARNING ticketd.intake: quarantined - (file:{garbage}): "
                            "not a mail: no header")
    assert rest == ["4 messages: 2 created, 1 ignored, 1 quarantined",
                    "outbox: 2 sent, 0 to retry, 0 failed"]
    sent = sorted((site / "var" / "outbox").glob("*.eml"))
    assert len(sent) == 2

    c = write(site, "c.eml", question(3, sender="wang@corp.example"))
    again = ticketd("ingest", str(a), str(auto), str(garbage), str(c))

    assert again.returncode == 0, again.stderr
    assert again.stdout.splitlines() == ["- duplicate", "- duplicate", "- duplicate",
                                         f"{number(3)} created"]
    assert again.stderr.splitlines() == ["4 messages: 1 created, 3 duplicate",
                                         "outbox: 1 sent, 0 to retry, 0 failed"]
    assert len(list((site / "var" / "outbox").glob("*.eml"))) == 3


def test_quarantine_list_show_and_release(ticketd: Run, site: Path) -> None:
    garbage = write(site, "mail dir/garbage.eml", messages.GARBAGE + b"\x00\xff\xfe binary")
    application = App(load(site / "config.toml"))
    try:
        result = Intake(application).ingest(RawMail(garbage.read_bytes(), f"file:{garbage}"))
    finally:
        application.close()
    assert result.action == "quarantined"

    listed = ticketd("quarantine", "list")
    assert listed.returncode == 0, listed.stderr
    [line] = listed.stdout.splitlines()
    # times as everywhere: [support] timezone (default Asia/Shanghai), to the second
    assert re.fullmatch(r"    1  \d{4}-\d\d-\d\d \d\d:\d\d:\d\d \+08:00  -  not a mail: no header  "
                        + re.escape(f"[file:{garbage}]"), line), line

    shown = ticketd("quarantine", "show", "1", input=b"")
    assert shown.returncode == 0
    assert shown.stdout == garbage.read_bytes()

    released = ticketd("quarantine", "release", "1")
    assert (released.returncode, released.stdout) == (1, "- quarantined not a mail: no header\n")


def test_an_mbox_file_with_three_messages(ticketd: Run, site: Path) -> None:
    box = write(site, "archive.mbox", messages.mbox(
        question(1), question(2, sender="li@corp.example"),
        messages.mail(subject=f"Re: [{number(1)}] 请问打印机 1", body="补充：型号 HP M404。\n")))

    res = ticketd("ingest", str(box))

    assert res.returncode == 0, res.stderr
    assert res.stdout.splitlines() == [f"{number(1)} created", f"{number(2)} created",
                                       f"{number(1)} appended"]


def test_an_mbox_copy_of_a_mail_with_a_from_line_is_the_same_mail(ticketd: Run,
                                                                  site: Path) -> None:
    """mbox quotes body lines starting with "From " as ">From "; reading must undo that."""
    raw = messages.mail(subject="Export fails", message_id="<fromline@client.example>",
                        body="Hello,\nFrom the logs I see an error.\n")
    box = write(site, "export.mbox", messages.mbox(raw))

    res = ticketd("ingest", str(box))

    assert (res.returncode, res.stdout) == (0, f"{number(1)} created\n"), res.stderr
    application = App(load(site / "config.toml"))
    try:
        with application.db.transaction() as s:
            [message] = tickets.get(s, number(1)).messages[:1]
            assert message.raw == raw.replace(b"\r\n", b"\n")
            assert message.new_text == "Hello,\nFrom the logs I see an error."
        # The same mail fetched over IMAP later is a duplicate, not a second ticket.
        again = Intake(application).ingest(RawMail(raw, "imap:INBOX/1"))
        assert (again.action, again.number) == ("duplicate", number(1))
    finally:
        application.close()


def test_a_maildir_as_json_reads_new_and_cur_but_not_tmp(ticketd: Run, site: Path) -> None:
    folder = site / "Maildir"
    write(folder, "new/1698368400.M1P1.host", question(1))
    write(folder, "new/1698368401.M2P1.host", automatic("<auto.md@client.example>"))
    write(folder, "cur/1698368300.M0P1.host:2,S", question(3, sender="wang@corp.example"))
    write(folder, "cur/1698368301.M0P2.host:2,S", question(1))  # the same mail, copied
    write(folder, "tmp/1698368402.M3P1.host", question(4, sender="half@corp.example"))

    res = ticketd("ingest", "--json", str(folder))

    assert res.returncode == 0, res.stderr
    assert [json.loads(line) for line in res.stdout.splitlines()] == [
        {"number": number(1), "action": "created", "reason": "",
         "message_id": "q1@client.example"},
        {"number": None, "action": "ignored", "reason": "auto-reply",
         "message_id": "auto.md@client.example"},
        {"number": number(2), "action": "created", "reason": "",
         "message_id": "q3@client.example"},
        {"number": number(1), "action": "duplicate",
         "reason": f"already processed (created {number(1)})",
         "message_id": "q1@client.example"},
    ]
    assert res.stderr.splitlines() == ["outbox: 2 sent, 0 to retry, 0 failed"]


def test_a_plain_folder_takes_eml_and_mbox_files_and_names_the_rest(ticketd: Run,
                                                                    site: Path) -> None:
    """An export folder: the mails are read, its manifest and summary are not quarantined."""
    folder = site / "export"
    write(folder, "a.eml", question(1))
    write(folder, "manifest.jsonl", b'{"file": "a.eml"}\n')
    write(folder, "summary.json", b'{"count": 1}\n')
    write(folder, "sub/archive", messages.mbox(question(2, sender="li@corp.example")))
    write(folder, "sub/B.EML", question(3, sender="wang@corp.example"))

    res = ticketd("ingest", str(folder))

    assert res.returncode == 0, res.stderr
    assert res.stdout.splitlines() == [f"{number(1)} created", f"{number(2)} created",
                                       f"{number(3)} created"]
    skipped = [line for line in res.stderr.splitlines() if line.startswith("- skipped")]
    assert skipped == [
        f"- skipped {folder / 'manifest.jsonl'}: not a mail file (a folder gives its *.eml "
        "and mbox files)",
        f"- skipped {folder / 'summary.json'}: not a mail file (a folder gives its *.eml "
        "and mbox files)"]
    assert "quarantined" not in res.stdout
    named = ticketd("ingest", str(folder / "summary.json"))  # named: read, and quarantined
    assert named.stdout.startswith("- quarantined"), named.stdout


def test_stdin_takes_one_message_or_an_mbox(ticketd: Run) -> None:
    one = ticketd("ingest", "-", input=question(1))
    assert (one.returncode, one.stdout) == (0, f"{number(1)} created\n".encode())

    box = messages.mbox(question(2, sender="li@corp.example"),
                        question(3, sender="wang@corp.example"))
    two = ticketd("ingest", "--json", "-", input=box)
    assert two.returncode == 0, two.stderr
    assert [(r["number"], r["action"], r["message_id"])
            for r in map(json.loads, two.stdout.splitlines())] == [
        (number(2), "created", "q2@client.example"),
        (number(3), "created", "q3@client.example")]


def test_a_missing_path_is_a_usage_error_in_one_line(ticketd: Run, site: Path) -> None:
    res = ticketd("ingest", "nowhere.eml")
    assert res.returncode == 2
    assert res.stdout == ""
    assert res.stderr == "ticketd: nowhere.eml: no such file or folder\n"


def in_terminal(args: list[str], cwd: Path) -> tuple[int, str]:
    """Run ticketd with stdin, stdout and stderr on a pseudo-terminal; all it wrote."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    env.pop("TICKETD_CONFIG", None)
    proc = subprocess.Popen([sys.executable, "-m", "daemon", *args], cwd=cwd, env=env,
                            stdin=slave, stdout=slave, stderr=slave, close_fds=True)
    os.close(slave)
    chunks: list[bytes] = []
    try:
        while True:
            ready, _, _ = select.select([master], [], [], 60)
            if not ready:
                proc.kill()
                pytest.fail(f"ticketd {' '.join(args)} wrote nothing for 60 s")
            try:
                data = os.read(master, 65536)
            except OSError:  # EIO: every writer closed the terminal
                break
            if not data:
                break
            chunks.append(data)
    finally:
        os.close(master)
    return proc.wait(timeout=60), b"".join(chunks).decode("utf-8", "replace")


def test_a_progress_bar_only_on_a_terminal(ticketd: Run, site: Path) -> None:
    on_tty = write(site, "tty.mbox", messages.mbox(
        *(question(i, sender=f"user{i}@corp.example") for i in range(30))))
    piped = write(site, "piped.mbox", messages.mbox(
        *(question(i, sender=f"user{i}@corp.example") for i in range(30, 60))))

    status, shown = in_terminal(["ingest", str(on_tty)], site)

    assert status == 0, shown
    assert "30/30" in shown
    assert re.findall(r"TS\d{14} created", shown) == [f"{number(i)} created"
                                                     for i in range(1, 31)]

    res = ticketd("ingest", str(piped))
    assert res.returncode == 0, res.stderr
    assert len(res.stdout.splitlines()) == 30
    assert "30/30" not in res.stderr and "/30" not in res.stderr
    assert res.stderr.splitlines() == ["30 messages: 30 created",
                                       "outbox: 30 sent, 0 to retry, 0 failed"]


def test_tickets_show_json_after_ingest(ticketd: Run, site: Path) -> None:
    payload = b"%PDF-1.4\n" + bytes(range(256)) * 4
    eml = write(site, "with-attachment.eml", messages.mail(
        subject="请问报表格式", message_id="<att@client.example>",
        attachments=[("报表.pdf", "application/pdf", payload)]))
    assert ticketd("ingest", str(eml)).returncode == 0

    res = ticketd("tickets", "show", number(1), "--json")

    assert res.returncode == 0, res.stderr
    shown = json.loads(res.stdout)
    first = shown["messages"][0]
    assert (first["direction"], first["kind"], first["message_id"]) == (
        "in", "new", "att@client.example")
    assert first["attachments"] == [{
        "filename": "报表.pdf", "safe_filename": "报表.pdf",
        "content_type": "application/pdf", "size": len(payload),
        "sha256": hashlib.sha256(payload).hexdigest(), "skipped": None}]
    assert [(e["action"], e["actor"]) for e in shown["events"]] == [
        ("created", "zhang.san@corp.example"), ("routing", "ticketd"), ("mail-queued", "ticketd")]
    assert shown["events"][0]["detail"] == (
        "ticket opened by mail from zhang.san@corp.example; category 系统故障 "
        "(keywords '打印机', '无法打印'), priority P2")
    text = ticketd("tickets", "show", number(1)).stdout.splitlines()
    assert "系统: 打印服务" in text and "影响范围: 三楼" in text  # labels of [support] locale
