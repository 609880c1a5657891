"""The foundation commands, run as a user runs them: exit codes, one-line errors, JSON shape."""

from __future__ import annotations

import json
from pathlib import Path

from daemon import tickets
from daemon.app import App
from daemon.clock import FixedClock
from daemon.config import load
from tests.e2e.conftest import Run


def test_config_check_ok_and_error(ticketd: Run, site: Path) -> None:
    ok = ticketd("config", "check")
    assert (ok.returncode, ok.stdout.strip()) == (0, "ok")
    bad = site / "bad.toml"
    bad.write_text('[imap]\nport = "abc"\n')
    res = ticketd("--config", str(bad), "config", "check")
    assert res.returncode == 2
    assert res.stderr.strip() == f'{bad}: [imap] port: expected an integer 1-65535, got "abc"'
    assert "Traceback" not in res.stderr


def test_config_from_environment_variable(ticketd: Run, site: Path) -> None:
    other = site / "other.toml"
    other.write_text('[tickets]\nprefix = "12"\n')
    res = ticketd("config", "check", env={"TICKETD_CONFIG": str(other)})
    assert res.returncode == 2 and "[tickets] prefix: expected 1-10 ASCII letters" in res.stderr


def test_missing_secret_is_one_line(ticketd: Run, site: Path) -> None:
    cfg = site / "secret.toml"
    cfg.write_text('[imap]\nhost = "127.0.0.1"\nusername = "u"\npassword_env = "NOPE_PW"\n')
    res = ticketd("--config", str(cfg), "config", "check")
    assert res.returncode == 2
    expected = "[imap] password_env: environment variable NOPE_PW is not set"
    assert res.stderr.strip().endswith(expected)


def test_usage_errors_exit_2(ticketd: Run) -> None:
    assert ticketd("frobnicate").returncode == 2
    assert ticketd("tickets", "list", "--status", "bogus").returncode == 2
    assert ticketd().returncode == 2


def test_db_upgrade_then_list_empty(ticketd: Run) -> None:
    first = ticketd("db", "upgrade")
    assert first.returncode == 0 and "upgraded from empty" in first.stdout
    assert "up to date" in ticketd("db", "upgrade").stdout
    res = ticketd("tickets", "list", "--json")
    assert res.returncode == 0 and json.loads(res.stdout) == []


def test_show_unknown_ticket_is_runtime_error(ticketd: Run) -> None:
    res = ticketd("tickets", "show", "TS20990101000001")
    assert res.returncode == 1
    assert res.stderr.strip() == "ticketd: ticket TS20990101000001: no such ticket"


def test_show_and_list_json_shape(ticketd: Run, site: Path) -> None:
    application = App(load(site / "config.toml"), clock=FixedClock())
    application.ready_db()
    with application.db.transaction() as s:
        tickets.create(s, number="TS20231027000001", subject="VPN 无法连接",
                       requester_name="李四", requester_email="li@corp.example",
                       at=application.clock.now(), language="zh")
    application.close()
    shown = json.loads(ticketd("tickets", "show", "TS20231027000001", "--json").stdout)
    assert {"number", "subject", "status", "priority", "category", "requester", "handler", "cc",
            "fields", "created_at", "updated_at", "messages", "events"} <= set(shown)
    assert shown["requester"] == {"name": "李四", "email": "li@corp.example"}
    assert shown["events"][0]["action"] == "created"
    assert set(shown["events"][0]) >= {"at", "actor", "action", "detail"}
    assert shown["created_at"].endswith("+08:00")
    listed = json.loads(ticketd("tickets", "list", "--json").stdout)
    assert [t["number"] for t in listed] == ["TS20231027000001"]
    assert "messages" not in listed[0] and "events" not in listed[0]
    text = ticketd("tickets", "list").stdout
    assert "TS20231027000001" in text and "VPN 无法连接" in text
    assert ticketd("tickets", "list", "--status", "closed", "--json").stdout.strip() == "[]"


def test_debug_shows_traceback(ticketd: Run) -> None:
    res = ticketd("--debug", "tickets", "show", "TS20990101000001")
    assert res.returncode == 1 and "Traceback" in res.stderr


def test_config_check_and_run_agree_on_a_mailbox_secret(ticketd: Run, site: Path) -> None:
    cfg = site / "mailbox-secret.toml"
    cfg.write_text('[imap]\nhost = "127.0.0.1"\nusername = "u"\n'
                   '[[imap.mailboxes]]\nname = "sales"\nusername = "s"\n'
                   'password_env = "TICKETD_TEST_UNSET_SALES_PW"\n')
    expected = ("[imap.mailboxes][0] password_env: environment variable "
                "TICKETD_TEST_UNSET_SALES_PW is not set")
    check = ticketd("--config", str(cfg), "config", "check")
    run = ticketd("--config", str(cfg), "run")
    assert (check.returncode, run.returncode) == (2, 2)
    assert check.stderr.strip() == f"{cfg}: {expected}"
    assert run.stderr.strip().splitlines()[-1] == check.stderr.strip()
