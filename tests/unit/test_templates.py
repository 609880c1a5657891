"""TemplateStore: search order, StrictUndefined, autoescape, hot reload with last-good, check()."""

from __future__ import annotations

import dataclasses
import logging
import os
import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from jinja2.exceptions import SecurityError

from daemon.errors import NotFound, TemplateError
from daemon.replies.kinds import KINDS, Reply, sample
from daemon.replies.templates import (
    Problem,
    TemplateStore,
    default_templates_dir,
    filesize,
    format_datetime,
    make_environment,
    normalise_locale,
)

SHIPPED = default_templates_dir()
WITH_HTML = {"acceptance", "need_info", "resolution", "reply"}


@pytest.fixture
def site(tmp_path: Path) -> Path:
    """A copy of the shipped templates, to break."""
    copy = tmp_path / "mail"
    shutil.copytree(SHIPPED, copy)
    return copy


@pytest.fixture
def only_site(site: Path, tmp_path: Path) -> TemplateStore:
    """A store that sees nothing but the copy (no packaged defaults to fall back on)."""
    return TemplateStore(site, "zh-CN", default_dir=tmp_path / "no-defaults")


def bump(path: Path, text: str, step: int = 10) -> None:
    """Rewrite a file and move its mtime forward deterministically."""
    before = path.stat().st_mtime_ns
    path.write_text(text, encoding="utf-8")
    os.utime(path, ns=(before + step * 1_000_000_000, before + step * 1_000_000_000))


def problems_for(store: TemplateStore, path: Path) -> list[Problem]:
    return [p for p in store.check() if p.path == str(path)]


# --- rendering ---------------------------------------------------------------------------------


def test_shipped_templates_pass_check() -> None:
    assert TemplateStore(None, "zh-CN").check() == []


@pytest.mark.parametrize("locale", ["zh-CN", "en"])
@pytest.mark.parametrize("kind", sorted(KINDS))
def test_every_kind_renders_from_its_sample(kind: str, locale: str) -> None:
    store = TemplateStore(None, "zh-CN")
    data = sample(kind, locale)
    mail = store.render(kind, locale, data)
    assert f"[{data.number}]" in mail.subject
    assert "\n" not in mail.subject
    assert mail.subject == mail.subject.strip()
    assert data.subject in mail.subject
    assert mail.text.endswith("\n")
    assert not mail.text.startswith("\n")
    assert "Subject:" not in mail.text
    if kind in WITH_HTML:
        assert mail.html is not None
        assert mail.html.startswith("<!DOCTYPE html>")
        assert data.number in mail.html


def test_languages_differ() -> None:
    store = TemplateStore(None, "zh-CN")
    zh = store.render("acceptance", "zh-CN", sample("acceptance", "zh-CN"))
    en = store.render("acceptance", "en", sample("acceptance", "en"))
    assert "受理" in zh.subject
    assert "30 分钟" in zh.text
    assert "2023-10-27 10:05" in zh.text
    assert "within 30 minutes" in en.text
    assert en.text.isascii()


def test_need_info_lists_every_missing_detail() -> None:
    store = TemplateStore(None, "zh-CN")
    data = sample("need_info", "zh-CN")
    mail = store.render("need_info", "zh-CN", data)
    for item in data.missing:  # type: ignore[attr-defined]
        assert item.label in mail.text
        assert item.hint in mail.text
    assert "回复本邮件" in mail.text


def test_subject_is_one_line_even_if_the_title_is_not() -> None:
    store = TemplateStore(None, "zh-CN")
    data = dataclasses.replace(sample("closed", "en"), subject="two\nlines  here")
    assert store.render("closed", "en", data).subject.endswith("Closed: two lines here")


def test_autoescape_in_html_only() -> None:
    store = TemplateStore(None, "zh-CN")
    evil = "<script>alert(1)</script> & co"
    data = dataclasses.replace(sample("acceptance", "en"), subject=evil)
    mail = store.render("acceptance", "en", data)
    assert mail.html is not None
    assert "<script>" not in mail.html
    assert "&lt;script&gt;alert(1)&lt;/script&gt; &amp; co" in mail.html
    assert evil in mail.text
    assert evil in mail.subject


def test_linebreaks_escapes_the_handlers_text() -> None:
    store = TemplateStore(None, "zh-CN")
    reply = sample("reply", "en")
    assert isinstance(reply, Reply)
    data = dataclasses.replace(reply, text="a <b>\nline two\n\nnext para")
    html = store.render("reply", "en", data).html
    assert html is not None
    assert "<p>a &lt;b&gt;<br>\nline two</p>\n<p>next para</p>" in html


def test_misspelt_variable_is_an_error(site: Path, only_site: TemplateStore) -> None:
    (site / "en" / "closed.txt").write_text("Subject: [{{ number }}]\n\n{{ numbr }}\n", "utf-8")
    with pytest.raises(TemplateError, match="numbr"):
        only_site.render("closed", "en", sample("closed", "en"))


def test_misspelt_attribute_is_an_error(site: Path, only_site: TemplateStore) -> None:
    (site / "en" / "assigned.txt").write_text(
        "Subject: [{{ number }}]\n\n{{ requester.emial }}\n", "utf-8"
    )
    with pytest.raises(TemplateError, match="emial"):
        only_site.render("assigned", "en", sample("assigned", "en"))


def test_wrong_object_or_kind() -> None:
    store = TemplateStore(None, "zh-CN")
    with pytest.raises(TypeError):
        store.render("acceptance", "en", sample("closed", "en"))
    with pytest.raises(NotFound):
        store.render("acceptence", "en", sample("acceptance", "en"))


def test_templates_cannot_change_their_data() -> None:
    env = make_environment()
    template = env.from_string("{{ fields.pop('a') }}")
    with pytest.raises(SecurityError):
        template.render(fields={"a": "1"})


# --- search order and locales ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("zh", "zh-CN"), ("zh_CN", "zh-CN"), ("zh-cn", "zh-CN"), ("ZH_cn.UTF-8", "zh-CN"),
        ("en", "en"), ("EN", "en"), ("en_us", "en-US"), ("zh-Hans", "zh-CN"), ("", ""),
    ],
)
def test_normalise_locale(given: str, expected: str) -> None:
    assert normalise_locale(given) == expected


@pytest.mark.parametrize(
    ("given", "expected"),
    [("zh", "zh-CN"), ("zh_CN", "zh-CN"), ("zh-cn", "zh-CN"), ("en-US", "en"), ("en_GB", "en"),
     ("fr", "zh-CN"), ("", "zh-CN"), ("zh-TW", "zh-CN")],
)
def test_resolve_locale(given: str, expected: str) -> None:
    assert TemplateStore(None, "zh_cn").resolve_locale(given) == expected


def test_site_overrides_default_and_html_comes_from_the_same_dir(site: Path) -> None:
    for path in site.glob("*/*"):
        if path.name != "acceptance.txt" or path.parent.name != "zh-CN":
            path.unlink()
    bump(site / "zh-CN" / "acceptance.txt", "Subject: [{{ number }}] 站点版本\n\n站点正文\n")
    store = TemplateStore(site, "zh-CN")  # packaged defaults behind it
    mail = store.render("acceptance", "zh", sample("acceptance", "zh-CN"))
    assert mail.subject == "[TS20231027000001] 站点版本"
    assert mail.text == "站点正文\n"
    assert mail.html is None  # the packaged acceptance.html is not mixed with the site text
    english = store.render("acceptance", "en", sample("acceptance", "en"))
    assert english.html is not None  # en comes from the packaged defaults, with its HTML
    assert store.locate("acceptance", "en").text == SHIPPED / "en" / "acceptance.txt"


def test_missing_kind_falls_back_to_the_default_locale(
    site: Path, only_site: TemplateStore
) -> None:
    (site / "en" / "closed.txt").unlink()
    mail = only_site.render("closed", "en", sample("closed", "en"))
    assert "工单已关闭" in mail.subject
    assert only_site.locate("closed", "en").locale == "zh-CN"


def test_no_template_anywhere_is_a_template_error(site: Path, only_site: TemplateStore) -> None:
    for locale in ("en", "zh-CN"):
        (site / locale / "closed.txt").unlink()
    with pytest.raises(TemplateError, match="closed"):
        only_site.render("closed", "en", sample("closed", "en"))


def test_default_templates_dir_is_the_repo_copy_in_a_checkout() -> None:
    assert (SHIPPED / "zh-CN" / "acceptance.txt").is_file()
    assert (SHIPPED / "README.md").is_file()


# --- hot reload --------------------------------------------------------------------------------


def test_an_edit_applies_to_the_next_render(site: Path, only_site: TemplateStore) -> None:
    path = site / "en" / "reply.txt"
    data = sample("reply", "en")
    assert "has replied" in only_site.render("reply", "en", data).text
    bump(path, "Subject: [{{ number }}] v2\n\nversion two from {{ handler_name }}\n")
    assert only_site.render("reply", "en", data).text == "version two from Daniel Lee\n"
    bump(path, "Subject: [{{ number }}] v3\n\nversion three\n", step=20)
    assert only_site.render("reply", "en", data).subject == "[TS20231027000001] v3"


def test_a_broken_edit_keeps_the_last_good_version(
    site: Path, only_site: TemplateStore, caplog: pytest.LogCaptureFixture
) -> None:
    path = site / "en" / "reply.txt"
    data = sample("reply", "en")
    bump(path, "Subject: [{{ number }}] good\n\ngood body\n")
    assert only_site.render("reply", "en", data).text == "good body\n"

    bump(path, "Subject: [{{ number }}] bad\n\nline three\n{% if %}\n", step=20)
    with caplog.at_level(logging.ERROR, logger="ticketd.templates"):
        first = only_site.render("reply", "en", data)
        second = only_site.render("reply", "en", data)
    assert first == second
    assert first.subject == "[TS20231027000001] good"
    records = [r for r in caplog.records if r.name == "ticketd.templates"]
    assert len(records) == 1  # once per (file, mtime)
    assert f"{path}:4:" in records[0].getMessage()
    assert "last good version" in records[0].getMessage()

    bump(path, "Subject: [{{ number }}] fixed\n\nfixed body\n", step=30)
    assert only_site.render("reply", "en", data).text == "fixed body\n"


def test_a_render_failure_keeps_the_last_good_version(
    site: Path, only_site: TemplateStore, caplog: pytest.LogCaptureFixture
) -> None:
    path = site / "en" / "reply.html"
    data = sample("reply", "en")
    good_html = only_site.render("reply", "en", data).html
    bump(path, "<p>\n{{ handler_nmae }}\n</p>\n")
    with caplog.at_level(logging.ERROR, logger="ticketd.templates"):
        mail = only_site.render("reply", "en", data)
        only_site.render("reply", "en", data)
    assert mail.html == good_html
    messages = [r.getMessage() for r in caplog.records if r.name == "ticketd.templates"]
    assert len(messages) == 1
    assert f"{path}:2:" in messages[0]
    assert "handler_nmae" in messages[0]


def test_a_broken_file_without_a_good_version_raises(
    site: Path, only_site: TemplateStore, caplog: pytest.LogCaptureFixture
) -> None:
    bump(site / "en" / "reply.txt", "Subject: [{{ number }}]\n\n{{ oops\n")
    with caplog.at_level(logging.ERROR, logger="ticketd.templates"), pytest.raises(
        TemplateError, match="no earlier good version"
    ):
        only_site.render("reply", "en", sample("reply", "en"))
    assert any("reply.txt:3" in r.getMessage() for r in caplog.records)


# --- check -------------------------------------------------------------------------------------


def test_check_finds_a_syntax_error_with_file_and_line(
    site: Path, only_site: TemplateStore
) -> None:
    path = site / "zh-CN" / "resolution.txt"
    lines = path.read_text("utf-8").split("\n")
    lines[6] = "{% for x in %}"
    path.write_text("\n".join(lines), "utf-8")
    [problem] = only_site.check()
    assert problem.path == str(path)
    assert problem.line == 7
    assert "syntax error" in problem.message
    assert str(problem).startswith(f"{path}:7: syntax error")


def test_check_finds_an_unknown_variable(site: Path, only_site: TemplateStore) -> None:
    path = site / "en" / "need_info.html"
    text = path.read_text("utf-8").replace("{{ item.hint }}", "{{ item.hint }} {{ missng }}")
    path.write_text(text, "utf-8")
    [problem] = only_site.check()
    assert problem.path == str(path)
    assert problem.line is not None
    assert "{{ missng }}" in text.split("\n")[problem.line - 1]
    assert "'missng'" in problem.message
    assert "did you mean 'missing'" in problem.message


def test_check_finds_a_kind_missing_in_a_locale(site: Path, only_site: TemplateStore) -> None:
    (site / "en" / "sla_breach.txt").unlink()
    [problem] = only_site.check()
    assert problem.path == str(site / "en" / "sla_breach.txt")
    assert "'sla_breach'" in problem.message
    assert "'en'" in problem.message


def test_check_a_new_locale_needs_every_kind(site: Path, only_site: TemplateStore) -> None:
    (site / "ja").mkdir()
    shutil.copy(site / "en" / "reply.txt", site / "ja" / "reply.txt")
    problems = only_site.check()
    assert {Path(p.path).stem for p in problems} == set(KINDS) - {"reply"}
    assert all(Path(p.path).parent.name == "ja" for p in problems)


def test_check_finds_a_subject_without_the_number(site: Path, only_site: TemplateStore) -> None:
    path = site / "en" / "closed.txt"
    path.write_text(path.read_text("utf-8").replace("[{{ number }}] ", "", 1), "utf-8")
    [problem] = only_site.check()
    assert (problem.path, problem.line) == (str(path), 1)
    assert "[{{ number }}]" in problem.message


def test_check_finds_a_number_outside_brackets(site: Path, only_site: TemplateStore) -> None:
    path = site / "en" / "closed.txt"
    path.write_text(path.read_text("utf-8").replace("[{{ number }}]", "#{{ number }}", 1), "utf-8")
    [problem] = only_site.check()
    assert "[{{ number }}]" in problem.message


def test_check_finds_a_misnamed_file(site: Path, only_site: TemplateStore) -> None:
    (site / "zh-CN" / "acceptance.txt").rename(site / "zh-CN" / "acceptence.txt")
    problems = {(Path(p.path).name, p.message.split(" ")[0]) for p in only_site.check()}
    messages = " | ".join(str(p) for p in only_site.check())
    assert ("acceptence.txt", "unknown") in problems
    assert "did you mean 'acceptance'" in messages
    assert ("acceptance.html", "acceptance.html") in problems  # html without its txt
    assert ("acceptance.txt", "missing:") in problems


def test_check_finds_stray_files_and_misspelt_locale_dirs(
    site: Path, only_site: TemplateStore
) -> None:
    (site / "zh_CN").mkdir()
    (site / "closed.txt").write_text("Subject: [{{ number }}]\n\nx\n", "utf-8")
    (site / "en" / "closed.txt.bak").write_text("old", "utf-8")
    names = sorted(Path(p.path).name for p in only_site.check())
    assert names == ["closed.txt", "closed.txt.bak", "zh_CN"]


def test_check_finds_a_missing_subject_line(site: Path, only_site: TemplateStore) -> None:
    path = site / "en" / "reopened.txt"
    path.write_text("Hello {{ requester_name }}\n", "utf-8")
    [problem] = only_site.check()
    assert problem.line == 1
    assert "Subject:" in problem.message
    path.write_text("Subject: [{{ number }}]\nbody right away\n", "utf-8")
    [problem] = only_site.check()
    assert problem.line == 2


def test_check_renders_with_sample_data(site: Path, only_site: TemplateStore) -> None:
    path = site / "zh-CN" / "sla_breach.txt"
    path.write_text("Subject: [{{ number }}] x\n\nfine\n\n{{ priority.nope }}\n", "utf-8")
    [problem] = only_site.check()
    assert problem.path == str(path)
    assert problem.line == 5
    assert "cannot render" in problem.message


def test_check_reports_invalid_utf8(site: Path, only_site: TemplateStore) -> None:
    path = site / "zh-CN" / "closed.txt"
    path.write_bytes("Subject: [{{ number }}] 关闭\n\n".encode("gbk") + b"\n")
    [problem] = only_site.check()
    assert problem.line == 1
    assert "UTF-8" in problem.message


def test_bom_and_crlf_are_accepted(site: Path, only_site: TemplateStore) -> None:
    path = site / "en" / "closed.txt"
    path.write_bytes(b"\xef\xbb\xbfSubject: [{{ number }}] done\r\n\r\nbye\r\n")
    assert only_site.check() == []
    mail = only_site.render("closed", "en", sample("closed", "en"))
    assert (mail.subject, mail.text) == ("[TS20231027000001] done", "bye\n")


def test_problem_str_without_line() -> None:
    assert str(Problem("a/b.txt", None, "oops")) == "a/b.txt: oops"
    assert str(Problem("a/b.txt", 3, "oops")) == "a/b.txt:3: oops"


# --- filters -----------------------------------------------------------------------------------


def test_filesize() -> None:
    assert filesize(800) == "800 B"
    assert filesize(3_412) == "3.3 KB"
    assert filesize(245_760) == "240 KB"
    assert filesize(5 * 1024 * 1024) == "5.0 MB"


def test_datetime_filter() -> None:
    at = datetime(2023, 10, 27, 10, 5, tzinfo=UTC)
    assert format_datetime(at) == "2023-10-27 10:05"
    assert format_datetime(at, "%H:%M") == "10:05"
    with pytest.raises(TypeError):
        format_datetime("2023-10-27")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("span", "zh", "en"),
    [
        (timedelta(minutes=15), "15 分钟", "15 minutes"),
        (timedelta(hours=1), "1 小时", "1 hour"),
        (timedelta(hours=1, minutes=30), "1 小时 30 分钟", "1 hour 30 minutes"),
        (timedelta(days=2, hours=3, minutes=4), "2 天 3 小时", "2 days 3 hours"),
        (timedelta(seconds=20), "不到 1 分钟", "less than a minute"),
    ],
)
def test_duration_filter_follows_the_locale(span: timedelta, zh: str, en: str) -> None:
    template = make_environment().from_string("{{ span|duration }}")
    assert template.render(span=span, locale="zh-CN") == zh
    assert template.render(span=span, locale="en") == en


# --- layouts and partials ({% extends %}, {% include %}) ---------------------------------------

HTML_KINDS = sorted(WITH_HTML)


@pytest.mark.parametrize("locale", ["zh-CN", "en"])
def test_every_shipped_html_template_extends_the_layout(locale: str) -> None:
    for kind in HTML_KINDS:
        first = (SHIPPED / locale / f"{kind}.html").read_text("utf-8").split("\n", 1)[0]
        assert first == '{% extends "_layout.html" %}'
    assert (SHIPPED / locale / "_layout.html").is_file()


def test_a_site_layout_changes_every_html_mail(tmp_path: Path) -> None:
    site = tmp_path / "site"
    (site / "en").mkdir(parents=True)
    layout = (SHIPPED / "en" / "_layout.html").read_text("utf-8")
    (site / "en" / "_layout.html").write_text(
        layout.replace("<body", "<!-- ACME brand -->\n<body"), "utf-8")
    store = TemplateStore(site, "zh-CN")  # the kinds themselves stay the packaged ones
    for kind in HTML_KINDS:
        mail = store.render(kind, "en", sample(kind, "en"))
        assert mail.html is not None and "<!-- ACME brand -->" in mail.html, kind
    zh = store.render("acceptance", "zh-CN", sample("acceptance", "zh-CN")).html
    assert zh is not None and "ACME" not in zh  # zh-CN has its own layout


def test_layout_values_are_escaped(tmp_path: Path) -> None:
    store = TemplateStore(None, "zh-CN")
    data = dataclasses.replace(sample("need_info", "en"), subject="<b>x</b>")
    html = store.render("need_info", "en", data).html
    assert html is not None
    assert "<title>[TS20231027000001] &lt;b&gt;x&lt;/b&gt;</title>" in html


def test_text_templates_can_include_a_partial(site: Path, only_site: TemplateStore) -> None:
    (site / "en" / "_signature.txt").write_text("-- \n{{ support_name }} <{{ support_address }}>\n",
                                                "utf-8")
    bump(site / "en" / "closed.txt",
         'Subject: [{{ number }}] closed\n\nBye.\n{% include "_signature.txt" %}\n')
    mail = only_site.render("closed", "en", sample("closed", "en"))
    assert mail.text == "Bye.\n--\nIT Service Desk <support@example.com>\n"
    assert only_site.check() == []


def test_a_name_with_a_slash_comes_from_the_top_of_the_roots(
    site: Path, only_site: TemplateStore
) -> None:
    path = site / "zh-CN" / "reply.html"
    bump(path, path.read_text("utf-8").replace('"_layout.html"', '"en/_layout.html"'))
    html = only_site.render("reply", "zh-CN", sample("reply", "zh-CN")).html
    assert html is not None and "Segoe UI',Roboto" in html  # the English layout's fonts
    assert only_site.check() == []


def test_a_layout_edit_applies_to_the_next_mail(site: Path, only_site: TemplateStore) -> None:
    layout = site / "en" / "_layout.html"
    data = sample("acceptance", "en")
    assert "v2" not in (only_site.render("acceptance", "en", data).html or "")
    bump(layout, layout.read_text("utf-8").replace("<body", "<!-- v2 -->\n<body"))
    assert "<!-- v2 -->" in (only_site.render("acceptance", "en", data).html or "")


def test_a_layout_replaced_with_the_same_size_and_mtime_is_noticed(
    site: Path, only_site: TemplateStore
) -> None:
    layout = site / "en" / "_layout.html"
    data = sample("acceptance", "en")
    before = only_site.render("acceptance", "en", data).html or ""
    text = layout.read_text("utf-8")
    st = layout.stat()
    new = site / "en" / "_layout.new"
    new.write_text(text.replace("#f4f5f7", "#000000"), "utf-8")  # same length
    os.utime(new, ns=(st.st_atime_ns, st.st_mtime_ns))
    new.replace(layout)  # an editor's atomic save: only the inode differs
    after = only_site.render("acceptance", "en", data).html or ""
    assert "#f4f5f7" in before and "#000000" in after


def test_a_broken_layout_keeps_the_last_good_version_of_the_whole_mail(
    site: Path, only_site: TemplateStore, caplog: pytest.LogCaptureFixture
) -> None:
    layout = site / "en" / "_layout.html"
    data = sample("acceptance", "en")
    good = only_site.render("acceptance", "en", data).html
    lines = layout.read_text("utf-8").split("\n")
    lines[4] = "{% block oops %}"
    bump(layout, "\n".join(lines))
    with caplog.at_level(logging.ERROR, logger="ticketd.templates"):
        mail = only_site.render("acceptance", "en", data)
    assert mail.html == good  # the old layout, not a mix
    assert mail.fallback is not None and "last good version" in mail.fallback
    [record] = [r.getMessage() for r in caplog.records if r.name == "ticketd.templates"]
    assert f"{layout}:" in record
    assert f"used by {site / 'en' / 'acceptance.html'}" in record


def test_check_reports_a_broken_layout_and_every_template_using_it(
    site: Path, only_site: TemplateStore
) -> None:
    layout = site / "zh-CN" / "_layout.html"
    lines = layout.read_text("utf-8").split("\n")
    lines[9] = "{% block content %}{% endblok %}"
    layout.write_text("\n".join(lines), "utf-8")
    problems = only_site.check()
    [own] = [p for p in problems if p.path == str(layout)]
    assert own.line == 10 and "syntax error" in own.message
    users = {Path(p.path).name: p for p in problems if p.path != str(layout)}
    assert set(users) == {f"{kind}.html" for kind in HTML_KINDS}
    for problem in users.values():
        assert problem.line == 1  # the {% extends %} line
        assert f"uses {layout}" in problem.message


def test_check_reports_a_missing_layout_where_it_is_named(
    site: Path, only_site: TemplateStore
) -> None:
    path = site / "en" / "reply.html"
    path.write_text(path.read_text("utf-8").replace("_layout.html", "_layot.html"), "utf-8")
    [problem] = only_site.check()
    assert (problem.path, problem.line) == (str(path), 1)
    assert "extends '_layot.html': no such template" in problem.message


def test_check_finds_an_unknown_variable_in_a_layout(site: Path, only_site: TemplateStore) -> None:
    layout = site / "en" / "_layout.html"
    text = layout.read_text("utf-8").replace("<title>", "<title>{{ ticket_no }}")
    layout.write_text(text, "utf-8")
    problems = only_site.check()
    assert {p.path for p in problems} == {str(layout)}
    line = next(i for i, text_line in enumerate(text.split("\n"), 1) if "ticket_no" in text_line)
    assert {p.line for p in problems} == {line}
    assert all("'ticket_no'" in p.message for p in problems)


def test_check_does_not_call_partials_misnamed(site: Path, only_site: TemplateStore) -> None:
    (site / "en" / "_footer.html").write_text("<p>{{ support_name }}</p>\n", "utf-8")
    (site / "en" / "_notes.txt").write_text("{# nothing yet #}\n", "utf-8")
    assert only_site.check() == []
    (site / "en" / "_footer.htm").write_text("x", "utf-8")
    [problem] = only_site.check()
    assert problem.path.endswith("_footer.htm") and "not a template file name" in problem.message


def test_check_asks_for_a_quoted_template_name(site: Path, only_site: TemplateStore) -> None:
    path = site / "en" / "closed.txt"
    path.write_text(path.read_text("utf-8") + "{% include locale ~ '/_x.txt' ignore missing %}\n",
                    "utf-8")
    [problem] = only_site.check()
    assert problem.path == str(path) and "in quotes" in problem.message


# --- a broken site template never stops a mail (packaged fallback, problems()) -----------------


def test_a_broken_template_after_a_restart_falls_back_to_the_packaged_one(
    site: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = site / "zh-CN" / "acceptance.txt"
    bump(path, "Subject: [{{ number }}] 站点版本\n\n{% if %}\n")
    store = TemplateStore(site, "zh-CN")  # a fresh store: no last good version
    data = sample("acceptance", "zh-CN")
    with caplog.at_level(logging.ERROR, logger="ticketd.templates"):
        mail = store.render("acceptance", "zh-CN", data)
        store.render("acceptance", "zh-CN", data)
    assert mail.subject.startswith("[TS20231027000001] 工单已受理")  # the packaged wording
    assert mail.templates == (SHIPPED / "zh-CN" / "acceptance.txt",
                              SHIPPED / "zh-CN" / "acceptance.html")
    assert mail.fallback is not None and f"{path}:3" in mail.fallback
    [record] = [r.getMessage() for r in caplog.records if r.name == "ticketd.templates"]
    assert f"{path}:3: syntax error" in record
    assert f"packaged acceptance template in {SHIPPED / 'zh-CN'}" in record


def test_a_broken_site_layout_falls_back_to_the_packaged_layout(site: Path) -> None:
    layout = site / "en" / "_layout.html"
    bump(layout, layout.read_text("utf-8").replace("{% endblock %}", "", 1))
    store = TemplateStore(site, "zh-CN")
    mail = store.render("reply", "en", sample("reply", "en"))
    assert mail.html is not None and mail.html.startswith("<!DOCTYPE html>")
    assert mail.templates[0] == SHIPPED / "en" / "reply.txt"
    assert mail.fallback is not None and str(layout) in mail.fallback


def test_problems_name_the_broken_template_and_what_is_used_instead(site: Path) -> None:
    store = TemplateStore(site, "zh-CN")
    assert store.problems() == []
    path = site / "zh-CN" / "acceptance.txt"
    bump(path, path.read_text("utf-8") + "{{ numbr }}\n")
    [broken] = store.problems()
    assert (broken.template, broken.kind, broken.locale) == (str(path), "acceptance", "zh-CN")
    assert broken.problem.path == str(path) and "numbr" in broken.problem.message
    assert broken.fallback == f"the packaged template in {SHIPPED / 'zh-CN'}"
    assert "acceptance mails use the packaged template" in str(broken)
    assert broken.as_dict()["problem"].startswith(f"{path}:")
    bump(path, "Subject: [{{ number }}] fixed\n\nfixed\n", step=20)
    assert store.problems() == []


def test_problems_prefer_the_last_good_version_when_there_is_one(site: Path) -> None:
    store = TemplateStore(site, "zh-CN")
    data = sample("closed", "en")
    store.render("closed", "en", data)
    path = site / "en" / "closed.txt"
    bump(path, "Subject: [{{ number }}]\n\n{% for %}\n")
    [broken] = store.problems()
    assert broken.fallback == "the last good version (from before the edit)"
    assert "Closed" in store.render("closed", "en", data).subject


def test_problems_list_every_mail_a_broken_layout_breaks(site: Path) -> None:
    layout = site / "en" / "_layout.html"
    bump(layout, layout.read_text("utf-8") + "{% if %}\n")
    store = TemplateStore(site, "zh-CN")
    broken = store.problems()
    assert {Path(b.template).name for b in broken} == {f"{k}.html" for k in HTML_KINDS}
    assert {b.problem.path for b in broken} == {str(layout)}
    assert all(f"(used by {b.template})" in str(b) for b in broken)


def test_without_packaged_templates_a_broken_one_still_raises(
    site: Path, only_site: TemplateStore
) -> None:
    bump(site / "en" / "closed.txt", "Subject: [{{ number }}]\n\n{% for %}\n")
    [broken] = only_site.problems()
    assert broken.fallback == "nothing: these mails cannot be sent"
    with pytest.raises(TemplateError, match="no earlier good version"):
        only_site.render("closed", "en", sample("closed", "en"))
