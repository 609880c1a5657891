"""[[teams]], [[categories]], [sla]: the process's configuration and its one-line errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from daemon.config import load
from daemon.directory import Directory
from tests.unit.test_config import error_of, write

TEAMS = '''
[[teams]]
name = "ops"
label_zh = "运维组"
label_en = "Operations"
lead = "Lead <lead@corp.example>"
members = ["王工 <Wang@Corp.example>", "li@corp.example"]
[[teams]]
name = "dev"
members = ["dev1@corp.example"]
assign = "least_open"
[[teams]]
name = "admins"
'''


def test_teams_become_a_directory_of_handlers(tmp_path: Path) -> None:
    cfg = load(write(tmp_path, TEAMS + "[sla]\nassign_p0 = 10\n"))
    people = Directory.from_config(cfg)
    assert people.is_handler("wang@corp.example") and people.is_handler("LEAD@corp.example")
    assert not people.is_handler("zhang.san@corp.example")
    assert people.display_name("wang@corp.example") == "王工"
    assert people.label("ops", "zh-CN") == "运维组" and people.label("ops", "en") == "Operations"
    assert people.label("dev", "en") == "Development"  # a built-in team keeps its labels
    assert cfg.sla.assign_minutes("P0") == 10 and cfg.sla.assign_minutes("P3") == 120


def test_without_teams_the_built_in_teams_have_no_members(tmp_path: Path) -> None:
    people = Directory.from_config(load(write(tmp_path, "")))
    assert [t.name for t in people.teams] == ["ops", "dev", "admins"]
    assert people.handlers == frozenset()


@pytest.mark.parametrize(("text", "message"), [
    (TEAMS + '[[teams]]\nname = "ops"\n', '[[teams]][3] name: duplicate team "ops"'),
    (TEAMS.replace('"li@corp.example"', '"li at corp"'),
     '[teams][0] members: expected e-mail addresses ("a@corp.example" or '
     '"Name <a@corp.example>"), got "li at corp"'),
    (TEAMS.replace('assign = "least_open"', 'assign = "random"'),
     '[teams][1] assign: expected one of "round_robin", "least_open", got "random"'),
    (TEAMS + '[[categories]]\nname = "系统故障"\nteam = "nobody"\n',
     '[[categories]][0] team: unknown team "nobody" (teams: admins, dev, ops)'),
    ('[[teams]]\nname = "ops"\n',
     "[[teams]]: the built-in categories route to ops, dev, admins; define team(s) dev, "
     "admins or configure [[categories]]"),
    ('[sla]\nassign_p1 = 0\n', "[sla] assign_p1: expected an integer 1-100000, got 0"),
    ('[[teams]]\nname = "bad name"\n', '[teams][0] name: expected a team name'),
    ('teams = "ops"\n', '[[teams]]: expected a list of tables'),
])
def test_process_config_errors_name_the_key(tmp_path: Path, text: str, message: str) -> None:
    assert message in error_of(tmp_path, text)


def test_configured_categories_replace_the_built_in_table(tmp_path: Path) -> None:
    from daemon.classify import Reader

    cfg = load(write(tmp_path, TEAMS + '''
[[categories]]
name = "打印机"
label_en = "Printer"
team = "admins"
keywords = ["printer", "打印机", "卡纸"]
required = ["department"]
'''))
    reader = Reader.from_config(cfg)
    found = reader.classify("三楼打印机卡纸", "打印机又卡纸了")
    assert (found.category, found.team) == ("打印机", "admins")
    assert [f.name for f in reader.missing(found.category, found.fields)] == ["department"]
    assert reader.lookup("printer") is not None and reader.lookup("Printer") is not None
