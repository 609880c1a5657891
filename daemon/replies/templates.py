"""Mail templates: find them, load them, reload them when edited, check them, never lose a mail.

Admins edit the files under ``templates/mail/`` without reading this code, so everything here
is built to keep mail flowing through their mistakes and to tell them exactly where they are:

* The search order, per kind ``K`` and requested locale ``L`` (also in
  ``templates/mail/README.md``)::

      <site_dir>/<L>/K.txt  ->  <default_dir>/<L>/K.txt            (L after normalising)
      <site_dir>/<D>/K.txt  ->  <default_dir>/<D>/K.txt            (D = the default locale)

  The directory that supplies ``K.txt`` also supplies ``K.html``, the optional HTML
  alternative, so a mail's two bodies always come from the same edit.
* Layouts and partials: files whose name starts with ``_`` (``zh-CN/_layout.html``) are not
  kinds; templates use them with ``{% extends %}`` / ``{% include %}``. Jinja loads them through
  a ``ChoiceLoader`` of one :class:`MailLoader` (a ``FileSystemLoader``) per root, site first,
  so an admin can override just the layout. A name without a slash is looked up in the
  including file's own locale directory (:meth:`MailEnvironment.join_path`).
* ``K.txt`` is ``Subject: <one line>``, a blank line, then the body. The loader turns the
  subject line into a ``{% set %}`` block on the same line, so one file is one template, read
  once, and every error line number is the file's.
* Jinja runs sandboxed (immutable) with ``StrictUndefined``: a misspelt name is an error, never
  an empty string. Only ``.html`` files are autoescaped.
* Hot reload: a compiled template is a frozen *version* of every file it was built from (the
  kind file, its layout, its partials, each keyed by mtime, size and inode). Every render stats
  those files and builds a new version when one changed or a site file now shadows a packaged
  one. A version that fails to build, or fails on its first render, is logged once (file and
  line, on ``ticketd.templates``) and the last good version keeps being used.
* No mail depends on a site template being valid: when a kind has no good version at all
  (a broken file right after a restart), the mail is rendered from the packaged templates
  alone, and :meth:`TemplateStore.problems` tells ``ticketd status`` and ``/healthz`` which
  site template is broken and what is used instead. Only when the packaged templates fail too
  does render raise :class:`TemplateError`.
"""

from __future__ import annotations

import difflib
import logging
import re
import threading
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import date, timedelta
from pathlib import Path
from typing import Any

from jinja2 import (
    BaseLoader,
    ChoiceLoader,
    FileSystemLoader,
    StrictUndefined,
    Template,
    TemplateNotFound,
    TemplateSyntaxError,
    meta,
    nodes,
    pass_context,
)
from jinja2 import select_autoescape as _select_autoescape
from jinja2.environment import Environment
from jinja2.loaders import split_template_path
from jinja2.runtime import Context
from jinja2.sandbox import ImmutableSandboxedEnvironment
from markupsafe import Markup, escape

import daemon
from daemon.app import App
from daemon.errors import TemplateError
from daemon.replies.kinds import KINDS, context_of, kind_class, sample, variables_of

_LOG = logging.getLogger("ticketd.templates")

_SUBJECT_LINE = re.compile(r"subject:[ \t]*(.*)", re.IGNORECASE)
_LOCALE_ALIASES = {"zh": "zh-CN", "zh-hans": "zh-CN", "zh-chs": "zh-CN", "zh-hans-cn": "zh-CN"}
_SUFFIXES = (".txt", ".html")
_KEEP_GOOD = 3  # earlier good versions kept per file, newest first
_REFERENCES = (nodes.Extends, nodes.Include, nodes.Import, nodes.FromImport)

#: The variable the loader assigns a ``.txt`` file's subject line to (see :class:`MailLoader`).
SUBJECT_VARIABLE = "mail_subject_line"

Key = tuple[int, int, int]  # (mtime_ns, size, inode): a file's identity for hot reload
_MISSING: Key = (-1, -1, -1)


@dataclass(frozen=True)
class RenderedMail:
    """One mail's rendered parts: a single-line subject, the text body, the optional HTML.

    ``templates`` are the kind files used; ``fallback`` says why they are not the newest site
    files (a broken edit), else None.
    """

    subject: str
    text: str
    html: str | None
    templates: tuple[Path, ...] = ()
    fallback: str | None = None


@dataclass(frozen=True)
class Problem:
    """One finding of :meth:`TemplateStore.check`; ``str()`` is ``path:line: message``."""

    path: str
    line: int | None
    message: str

    def __str__(self) -> str:
        where = f"{self.path}:{self.line}" if self.line is not None else self.path
        return f"{where}: {self.message}"


@dataclass(frozen=True)
class BrokenTemplate:
    """A template in use that is broken now (:meth:`TemplateStore.problems`).

    ``problem`` may lie in a layout or partial the template uses; ``fallback`` is what the
    mails of this kind and locale are written from meanwhile.
    """

    template: str
    kind: str
    locale: str
    problem: Problem
    fallback: str

    def __str__(self) -> str:
        used_by = f" (used by {self.template})" if self.problem.path != self.template else ""
        return f"{self.problem}{used_by}; {self.kind} mails use {self.fallback}"

    def as_dict(self) -> dict[str, Any]:
        return {"template": self.template, "kind": self.kind, "locale": self.locale,
                "problem": str(self.problem), "fallback": self.fallback}


@dataclass(frozen=True)
class TemplateFiles:
    """Where the templates of one kind were found, and in which locale."""

    locale: str
    text: Path
    html: Path | None


def default_templates_dir() -> Path:
    """The packaged templates: inside the wheel, else the repo's ``templates/mail``."""
    package = Path(daemon.__file__).parent
    packaged = package / "default_templates" / "mail"
    return packaged if packaged.is_dir() else package.parent / "templates" / "mail"


def normalise_locale(locale: str) -> str:
    """Spell a locale as directories are named: ``zh_cn``/``zh`` -> ``zh-CN``, ``EN`` -> ``en``.

    Encodings and modifiers (``zh_CN.UTF-8``, ``de_DE@euro``) are dropped.
    """
    text = locale.strip().split(".")[0].split("@")[0].replace("_", "-")
    parts = [p for p in text.split("-") if p]
    if not parts:
        return ""
    rest = [
        p.upper() if len(p) == 2 else p.title() if len(p) == 4 else p.lower() for p in parts[1:]
    ]
    spelled = "-".join([parts[0].lower(), *rest])
    return _LOCALE_ALIASES.get(spelled.lower(), spelled)


def is_partial(name: str) -> bool:
    """Layouts and partials (``_layout.html``) are used by templates; they are not kinds."""
    return name.rpartition("/")[2].startswith("_")


# ---------------------------------------------------------------------------------------------
# Filters (documented for admins in templates/mail/README.md)


def filesize(value: int | float) -> str:
    """``245760`` -> ``240 KB``; binary multiples, as mail clients show them."""
    size = float(value)
    unit = "B"
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if abs(size) < 1024 or unit == "TB":
            break
        size /= 1024
    if unit == "B":
        return f"{int(size)} B"
    return f"{size:.1f} {unit}" if abs(size) < 10 else f"{size:.0f} {unit}"


def format_datetime(value: date, fmt: str = "%Y-%m-%d %H:%M") -> str:
    """A date or datetime in its own time zone, by ``strftime`` format."""
    if not isinstance(value, date):
        raise TypeError(f"the datetime filter needs a date or time, got {type(value).__name__}")
    return value.strftime(fmt)


_UNITS = (("天", "day", 1440), ("小时", "hour", 60), ("分钟", "minute", 1))


@pass_context
def duration(context: Context, value: timedelta | int | float) -> str:
    """A time span in the mail's language: ``1 小时 30 分钟`` / ``1 hour 30 minutes``.

    Shows the largest unit and the next one; numbers are seconds.
    """
    seconds = value.total_seconds() if isinstance(value, timedelta) else float(value)
    zh = str(context.get("locale", "")).startswith("zh")
    minutes = int(abs(seconds)) // 60
    amounts = []
    for zh_unit, en_unit, size in _UNITS:
        amount, minutes = divmod(minutes, size)
        amounts.append((amount, zh_unit, en_unit))
    first = next((i for i, (amount, _, _) in enumerate(amounts) if amount), None)
    if first is None:
        return "不到 1 分钟" if zh else "less than a minute"
    shown = [a for a in amounts[first : first + 2] if a[0]]
    if zh:
        return " ".join(f"{amount} {zh_unit}" for amount, zh_unit, _ in shown)
    return " ".join(
        f"{amount} {en_unit}{'' if amount == 1 else 's'}" for amount, _, en_unit in shown
    )


def quote(value: str) -> str:
    """Prefix every line with ``> ``, as mail clients quote."""
    return "\n".join(f"> {line}" if line.strip() else ">" for line in str(value).splitlines())


def linebreaks(value: str) -> Markup:
    """Plain text as HTML: escaped, blank lines -> paragraphs, newlines -> ``<br>``."""
    text = str(value).replace("\r\n", "\n").strip()
    paragraphs = [p for p in re.split(r"\n[ \t]*\n+", text) if p.strip()]
    return Markup("\n").join(
        Markup("<p>{}</p>").format(Markup("<br>\n").join(escape(line) for line in p.split("\n")))
        for p in paragraphs
    )


FILTERS = {
    "filesize": filesize,
    "datetime": format_datetime,
    "duration": duration,
    "quote": quote,
    "linebreaks": linebreaks,
}


# ---------------------------------------------------------------------------------------------
# Loading: files -> Jinja sources


class _FormatError(TemplateSyntaxError):
    """A file Jinja cannot take as it is: not UTF-8, unreadable, or no proper Subject line."""


def _stat_key(path: Path) -> Key:
    try:
        st = path.stat()
    except OSError:
        return _MISSING
    return (st.st_mtime_ns, st.st_size, st.st_ino)


class _Unchanged:
    """Jinja's ``uptodate`` callable for one file; also tells the state it was read in."""

    def __init__(self, path: Path, key: Key) -> None:
        self.path = path
        self.key = key

    def __call__(self) -> bool:
        return _stat_key(self.path) == self.key


def _decode(raw: bytes, name: str, filename: str) -> str:
    try:
        text = raw.decode("utf-8-sig")  # Notepad's BOM is not part of the subject
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise _FormatError("not valid UTF-8; save the file as UTF-8", line, name,
                           filename) from None
    return text.replace("\r\n", "\n").replace("\r", "\n")


def _subject_as_set(environment: Environment, text: str, name: str, filename: str) -> str:
    """``Subject: X`` on line 1 becomes ``{% set mail_subject_line %}X{% endset %}``.

    The body keeps its line numbers; a subject that does not parse on its own is reported
    as such (not as an unclosed ``set`` the admin never wrote).
    """
    lines = text.split("\n")
    match = _SUBJECT_LINE.fullmatch(lines[0])
    if match is None:
        raise _FormatError(
            "the first line must be 'Subject: ...', then a blank line, then the body",
            1, name, filename)
    if len(lines) > 1 and lines[1].strip():
        raise _FormatError("the 'Subject:' line must be followed by a blank line", 2, name,
                           filename)
    subject = match.group(1)
    try:
        environment.parse(subject, name, filename)
    except TemplateSyntaxError as exc:
        exc.lineno = 1
        raise
    lines[0] = f"{{% set {SUBJECT_VARIABLE} %}}{subject}{{% endset %}}"
    return "\n".join(lines)


class MailLoader(FileSystemLoader):
    """One template root (the site directory or the packaged one) as Jinja sources.

    Files are UTF-8 (a byte-order mark is dropped, Windows line ends are fine). A kind's
    ``.txt`` file carries its subject on line 1 (:func:`_subject_as_set`). A file is up to date
    while its mtime, size and inode are unchanged, so an edit saved within the same second,
    or a file replaced by a rename, is still noticed.
    """

    def __init__(self, root: Path) -> None:
        super().__init__(str(root), encoding="utf-8")
        self.root = root

    def find(self, name: str) -> Path | None:
        """The file for a template name under this root, if there is one."""
        try:
            pieces = split_template_path(name)
        except TemplateNotFound:
            return None
        path = self.root.joinpath(*pieces)
        return path if path.is_file() else None

    def get_source(self, environment: Environment, template: str
                   ) -> tuple[str, str, Callable[[], bool]]:
        path = self.find(template)
        if path is None:
            raise TemplateNotFound(template)
        key = _stat_key(path)  # before reading: an edit in between is caught next time
        try:
            raw = path.read_bytes()
        except OSError as exc:
            raise _FormatError(f"cannot read: {exc.strerror or exc}", 0, template,
                               str(path)) from None
        text = _decode(raw, template, str(path))
        if path.suffix == ".txt" and not is_partial(template):
            text = _subject_as_set(environment, text, template, str(path))
        return text, str(path), _Unchanged(path, key)


class MailEnvironment(ImmutableSandboxedEnvironment):
    """The sandbox every mail template runs in, with locale-relative template names."""

    def join_path(self, template: str, parent: str) -> str:
        """``{% extends "_layout.html" %}`` in ``zh-CN/x.html`` means ``zh-CN/_layout.html``.

        A name with a slash (``en/_layout.html``) is taken from the top of the roots.
        """
        if "/" in template:
            return template
        folder = parent.rpartition("/")[0]
        return f"{folder}/{template}" if folder else template


def make_environment(loader: BaseLoader | None = None) -> MailEnvironment:
    """The one Jinja environment shape every template is compiled in."""
    env = MailEnvironment(
        loader=loader,
        undefined=StrictUndefined,
        autoescape=_select_autoescape(("html",), default_for_string=False, default=False),
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        auto_reload=True,
    )
    env.filters.update(FILTERS)
    return env


def _always_fresh() -> bool:
    return True


class _Snapshot(BaseLoader):
    """Loads each template of one version once, through the live loaders, and keeps it.

    A version therefore never changes under a later edit of its layout: the last good version
    stays good. ``files`` records where each name was found (or that it was not) and in which
    state, which is how the store notices that a version is out of date.
    """

    def __init__(self, view: _View, top: str, top_path: Path) -> None:
        self.view = view
        self.top = top
        self.top_path = top_path
        self.files: dict[str, tuple[Path | None, Key]] = {}
        self._sources: dict[str, tuple[str, str]] = {}

    def where(self, name: str) -> tuple[Path | None, Key]:
        return self.view.where(name, self.top_path if name == self.top else None)

    def get_source(self, environment: Environment, template: str
                   ) -> tuple[str, str, Callable[[], bool]]:
        if template not in self._sources:
            loader: BaseLoader = (self.view.loader_for(self.top_path) if template == self.top
                                  else self.view.live)
            try:
                source, filename, uptodate = loader.get_source(environment, template)
            except (TemplateNotFound, TemplateSyntaxError):
                self.files[template] = self.where(template)
                raise
            path = Path(filename or template)
            key = uptodate.key if isinstance(uptodate, _Unchanged) else _stat_key(path)
            self.files[template] = (path, key)
            self._sources[template] = (source, str(path))
        source, filename = self._sources[template]
        return source, filename, _always_fresh

    def source_of(self, name: str) -> tuple[str, str] | None:
        return self._sources.get(name)


# ---------------------------------------------------------------------------------------------
# Versions and views


@dataclass(frozen=True)
class _Edge:
    source: str  # the template name that refers
    line: int
    target: str  # the template name it refers to


@dataclass(eq=False)
class _Version:
    """One build of one kind file with everything it uses, frozen."""

    path: Path
    name: str
    snapshot: _Snapshot
    template: Template | None = None
    problem: Problem | None = None  # why it cannot be used: does not build, or broke
    edges: list[_Edge] = field(default_factory=list)
    proven: bool = False  # rendered at least once
    broken: bool = False  # failed to build, or failed before it was ever proven
    reported: bool = False  # its problem was logged
    sample_problem: Problem | None = None
    sample_checked: bool = False

    @property
    def files(self) -> dict[str, tuple[Path | None, Key]]:
        return self.snapshot.files


@dataclass
class _FileState:
    current: _Version | None = None
    good: list[_Version] = field(default_factory=list)  # newest first


class _Unrenderable(Exception):
    """No version of a file renders: the newest is broken and no earlier one helps."""

    def __init__(self, version: _Version, problem: Problem, had_good: bool) -> None:
        super().__init__(str(problem))
        self.version = version
        self.problem = problem
        self.had_good = had_good


class _View:
    """The templates as seen through some roots: site then packaged, or packaged alone."""

    def __init__(self, roots: Sequence[Path]) -> None:
        self.roots = list(roots)
        self.loaders = [MailLoader(root) for root in self.roots]
        self.live = ChoiceLoader(self.loaders)
        self.env = make_environment(self.live)
        self.states: dict[Path, _FileState] = {}

    def where(self, name: str, pinned: Path | None = None) -> tuple[Path | None, Key]:
        """The file a name resolves to now (``pinned``: that very file), and its state."""
        if pinned is not None:
            return pinned, _stat_key(pinned)
        for loader in self.loaders:
            path = loader.find(name)
            if path is not None:
                return path, _stat_key(path)
        return None, _MISSING

    def loader_for(self, path: Path) -> MailLoader:
        for loader in self.loaders:
            if path.is_relative_to(loader.root):
                return loader
        raise TemplateError(f"{path} is not under {', '.join(map(str, self.roots))}")

    def name_of(self, path: Path) -> str:
        return path.relative_to(self.loader_for(path).root).as_posix()

    def current(self, path: Path) -> tuple[_FileState, _Version]:
        """The state of a kind file and its newest version, rebuilt when anything changed."""
        state = self.states.setdefault(path, _FileState())
        version = state.current
        if version is None or any(version.snapshot.where(name) != seen
                                  for name, seen in version.files.items()):
            version = self.build(path)
            state.current = version
        return state, version

    def build(self, path: Path) -> _Version:
        name = self.name_of(path)
        snapshot = _Snapshot(self, name, path)
        env = self.env.overlay(loader=snapshot, cache_size=-1)
        version = _Version(path, name, snapshot)
        try:
            _walk(env, name, version.edges, self.roots)
            version.template = env.get_template(name)
        except _Unresolved as exc:
            version.problem = exc.problem
        except TemplateSyntaxError as exc:
            version.problem = _syntax_problem(exc, path)
        except TemplateNotFound as exc:  # the kind file itself vanished
            version.problem = Problem(str(path), None, f"cannot read: {exc.name} is gone")
        version.broken = version.problem is not None
        return version

    def render_file(self, path: Path, context: dict[str, object]
                    ) -> tuple[tuple[str, ...], _Version, _Version]:
        """(parts, the version used, the newest version); raises _Unrenderable."""
        state, newest = self.current(path)
        failure = newest.problem
        if not newest.broken:
            try:
                out = _render_parts(newest, context)
            except Exception as exc:
                failure = _render_problem(newest, exc)
                if not newest.proven:
                    newest.broken, newest.problem = True, failure
            else:
                newest.proven = True
                state.good = [newest, *(v for v in state.good if v is not newest)][:_KEEP_GOOD]
                return out, newest, newest
        assert failure is not None
        for good in state.good:
            if good is newest:
                continue
            try:
                return _render_parts(good, context), good, newest
            except Exception:  # an older version may fail on this data too
                continue
        raise _Unrenderable(newest, failure, any(g is not newest for g in state.good))

    def sample_problem(self, version: _Version, kind: str, locale: str) -> Problem | None:
        """Why the version cannot render its kind's sample data (checked once per version)."""
        if version.problem is not None:
            return version.problem
        if not version.sample_checked:
            version.sample_checked = True
            context = context_of(sample(kind, locale))
            context["locale"] = locale
            try:
                _render_parts(version, context)
            except Exception as exc:
                version.sample_problem = _render_problem(version, exc)
        return version.sample_problem


class _Unresolved(Exception):
    def __init__(self, problem: Problem) -> None:
        super().__init__(str(problem))
        self.problem = problem


def _walk(env: Environment, top: str, edges: list[_Edge], roots: Sequence[Path]) -> None:
    """Load and parse ``top`` and every template it names, so a broken layout is found now."""
    assert env.loader is not None
    queue, seen = [top], {top}
    while queue:
        current = queue.pop(0)
        source, found_in, _ = env.loader.get_source(env, current)
        filename = found_in or current
        tree = env.parse(source, current, filename)
        for node in tree.find_all(_REFERENCES):
            target = _target_of(node)
            if not isinstance(target, nodes.Const) or not isinstance(target.value, str):
                continue  # a computed name: `templates check` asks for a quoted one
            dep = env.join_path(target.value, current)
            edges.append(_Edge(current, node.lineno, dep))
            if dep in seen:
                continue
            seen.add(dep)
            try:
                env.loader.get_source(env, dep)
            except TemplateNotFound:
                if isinstance(node, nodes.Include) and node.ignore_missing:
                    continue
                keyword = type(node).__name__.lower().replace("fromimport", "from ... import")
                folders = " or ".join(str(root) for root in roots)
                raise _Unresolved(Problem(
                    filename, node.lineno,
                    f"{keyword} {target.value!r}: no such template ({dep} in {folders})",
                )) from None
            queue.append(dep)


def _target_of(node: nodes.Node) -> nodes.Expr:
    """The template name expression of an extends, include or import tag."""
    assert isinstance(node, _REFERENCES)
    return node.template


def _syntax_problem(exc: TemplateSyntaxError, path: Path) -> Problem:
    where = exc.filename or str(path)
    message = exc.message or str(exc)
    if not isinstance(exc, _FormatError):
        message = f"syntax error: {message}"
    return Problem(where, exc.lineno or None, message)


def _render_problem(version: _Version, exc: Exception) -> Problem:
    """The file and line a rendering error points at: Jinja rewrites tracebacks to them."""
    message = getattr(exc, "message", None) or str(exc) or type(exc).__name__
    files = {str(path) for path, _ in version.files.values() if path is not None}
    where, line = str(version.path), None
    tb = exc.__traceback__
    while tb is not None:
        if tb.tb_frame.f_code.co_filename in files:
            where, line = tb.tb_frame.f_code.co_filename, tb.tb_lineno
        tb = tb.tb_next
    return Problem(where, line, f"cannot render: {message}")


def _render_parts(version: _Version, context: dict[str, object]) -> tuple[str, ...]:
    """Render a version: (subject, text) for a kind's ``.txt``, (body,) otherwise."""
    template = version.template
    if template is None:
        raise TemplateError(str(version.problem))
    if version.path.suffix == ".txt" and not is_partial(version.name):
        try:
            module = template.make_module(context)
        except Exception:
            template.environment.handle_exception()  # maps the traceback to template lines
        subject = " ".join(str(getattr(module, SUBJECT_VARIABLE)).split())
        lines = [line.rstrip() for line in str(module).split("\n")]
        return subject, "\n".join(lines).strip("\n") + "\n"
    return (template.render(context).strip() + "\n",)


# ---------------------------------------------------------------------------------------------
# The store


class TemplateStore:
    """Finds, loads, hot-reloads and checks the mail templates. Safe to share across threads."""

    def __init__(
        self, site_dir: Path | None, default_locale: str, default_dir: Path | None = None
    ) -> None:
        self.site_dir = site_dir
        self.default_dir = default_dir if default_dir is not None else default_templates_dir()
        self.default_locale = normalise_locale(default_locale) or "en"
        self._views_for: tuple[Path, ...] = ()
        self._full: _View | None = None
        self._packaged: _View | None = None
        self._lock = threading.RLock()

    def __repr__(self) -> str:
        return (
            f"TemplateStore(site_dir={self.site_dir!r}, default_dir={self.default_dir!r}, "
            f"default_locale={self.default_locale!r})"
        )

    # -- finding ---------------------------------------------------------------------------

    def roots(self) -> list[Path]:
        """The existing template roots, site first."""
        found: list[Path] = []
        for root in (self.site_dir, self.default_dir):
            if root is not None and root.is_dir() and all(
                not root.samefile(other) for other in found
            ):
                found.append(root)
        return found

    def locales(self) -> list[str]:
        """Locales that have a directory under some root, sorted."""
        return self._locales(self.roots())

    @staticmethod
    def _locales(roots: Iterable[Path]) -> list[str]:
        names = {
            entry.name
            for root in roots
            for entry in root.iterdir()
            if entry.is_dir() and normalise_locale(entry.name) == entry.name
        }
        return sorted(names)

    def resolve_locale(self, locale: str) -> str:
        """The locale directory to use for ``locale``: itself, its language, or the default."""
        return self._resolve_locale(locale, self.locales())

    def _resolve_locale(self, locale: str, known: Sequence[str]) -> str:
        wanted = normalise_locale(locale)
        if wanted in known:
            return wanted
        language = wanted.split("-")[0]
        if language in known:
            return language
        for candidate in known:
            if candidate.split("-")[0] == language and language:
                return candidate
        return self.default_locale

    def locate(self, kind: str, locale: str) -> TemplateFiles:
        """Where the templates for ``kind`` in ``locale`` are, following the search order."""
        return self._locate(kind, locale, self.roots())

    def _locate(self, kind: str, locale: str, roots: Sequence[Path]) -> TemplateFiles:
        kind_class(kind)
        tried: list[str] = []
        resolved = self._resolve_locale(locale, self._locales(roots))
        for loc in dict.fromkeys((resolved, self.default_locale)):
            for root in roots:
                text = root / loc / f"{kind}.txt"
                if text.is_file():
                    html = text.with_suffix(".html")
                    return TemplateFiles(loc, text, html if html.is_file() else None)
                tried.append(str(text))
        raise TemplateError(f"no {kind!r} mail template; looked for {', '.join(tried) or '-'}")

    def _views(self) -> tuple[_View, _View | None]:
        """The view through every root, and the packaged-only fallback when there is a site."""
        roots = tuple(self.roots())
        if self._full is None or roots != self._views_for:
            self._views_for = roots
            self._full = _View(roots)
            packaged = tuple(r for r in roots if r == self.default_dir)
            self._packaged = _View(packaged) if packaged and packaged != roots else None
        return self._full, self._packaged

    # -- rendering -------------------------------------------------------------------------

    def render(self, kind: str, locale: str, obj: object) -> RenderedMail:
        """Render the mail of ``kind`` for ``obj`` (an instance of ``KINDS[kind]``).

        A broken site template falls back to its last good version, else to the packaged
        templates (logged once, and listed by :meth:`problems`). Raises TemplateError only
        when neither can write this mail.
        """
        cls = kind_class(kind)
        if not isinstance(obj, cls):
            raise TypeError(f"a {kind!r} mail needs a {cls.__name__}, got {type(obj).__name__}")
        context = context_of(obj)
        with self._lock:
            full, packaged = self._views()
            files = self._locate(kind, locale, full.roots)
            try:
                return self._render_with(full, files, context)
            except _Unrenderable as exc:
                if packaged is None:
                    self._report(exc.version, exc.problem,
                                 "there is no good version to fall back on: these mails "
                                 "cannot be sent")
                    raise TemplateError(f"{exc.problem} (" + (
                        "and the earlier good versions fail too" if exc.had_good
                        else "no earlier good version to fall back on") + ")") from None
                first = exc
            try:
                spare = self._locate(kind, locale, packaged.roots)
                mail = self._render_with(packaged, spare, context)
            except (_Unrenderable, TemplateError) as exc:
                self._report(first.version, first.problem,
                             "the packaged template cannot be used either: these mails "
                             "cannot be sent")
                raise TemplateError(f"{first.problem}; the packaged template fails too: "
                                    f"{getattr(exc, 'problem', exc)}") from None
            where = spare.text.parent
            self._report(first.version, first.problem,
                         f"the packaged {kind} template in {where} is used until this is fixed")
            return replace(mail, fallback=f"{first.problem}; written from the packaged "
                                          f"template in {where}")

    def _render_with(self, view: _View, files: TemplateFiles,
                     context: dict[str, object]) -> RenderedMail:
        context = {**context, "locale": files.locale}  # the language of the template used
        (subject, text), used, newest = view.render_file(files.text, context)
        fallbacks = [(newest, used)]
        html = None
        if files.html is not None:
            (html,), used_html, newest_html = view.render_file(files.html, context)
            fallbacks.append((newest_html, used_html))
        notes = []
        for newest_version, used_version in fallbacks:
            if used_version is not newest_version and newest_version.problem is not None:
                self._report(newest_version, newest_version.problem,
                             "the last good version keeps being used until this is fixed")
                notes.append(f"{newest_version.problem}; written from the last good version")
        templates = (files.text, files.html) if files.html else (files.text,)
        return RenderedMail(subject=subject, text=text, html=html, templates=templates,
                            fallback="; ".join(notes) or None)

    def _report(self, version: _Version, problem: Problem, consequence: str) -> None:
        """Log a broken version once."""
        if version.reported:
            return
        version.reported = True
        used_by = f" (used by {version.path})" if problem.path != str(version.path) else ""
        _LOG.error("mail template broken: %s%s; %s", problem, used_by, consequence)

    # -- what is broken now ----------------------------------------------------------------

    def problems(self) -> list[BrokenTemplate]:
        """The templates in use that are broken now, and what their mails use instead.

        For ``ticketd status`` and ``/healthz``. Each template is checked the way `check`
        does (built, then filled with sample data) once per version, so a call costs a few
        file stats. A newly found problem is logged once.
        """
        found: list[BrokenTemplate] = []
        with self._lock:
            full, packaged = self._views()
            for locale in self._locales(full.roots):
                for kind in KINDS:
                    try:
                        files = self._locate(kind, locale, full.roots)
                    except TemplateError:
                        continue  # `templates check` names the missing kind
                    if files.locale != locale:
                        continue
                    for path in (files.text, files.html):
                        if path is None:
                            continue
                        state, version = full.current(path)
                        problem = full.sample_problem(version, kind, locale)
                        if problem is None:
                            continue
                        fallback = self._fallback_of(state, version, kind, locale, packaged)
                        self._report(version, problem, f"{kind} mails use {fallback} until "
                                                       "this is fixed")
                        found.append(BrokenTemplate(str(path), kind, locale, problem, fallback))
        return found

    def _fallback_of(self, state: _FileState, version: _Version, kind: str, locale: str,
                     packaged: _View | None) -> str:
        if any(good is not version for good in state.good):
            return "the last good version (from before the edit)"
        if packaged is not None:
            try:
                spare = self._locate(kind, locale, packaged.roots)
            except TemplateError:
                spare = None
            if spare is not None and all(
                packaged.sample_problem(packaged.current(path)[1], kind, spare.locale) is None
                for path in (spare.text, spare.html) if path is not None
            ):
                return f"the packaged template in {spare.text.parent}"
        return "nothing: these mails cannot be sent"

    # -- checking --------------------------------------------------------------------------

    def check(self) -> list[Problem]:
        """Everything wrong with the templates in every root, sorted by file and line."""
        problems: list[Problem] = []
        with self._lock:
            full, _ = self._views()
            roots = full.roots
            locales = {self.default_locale}
            for root in roots:
                for entry in sorted(root.iterdir()):
                    if entry.name.startswith(".") or entry.name.lower().startswith("readme"):
                        continue
                    if not entry.is_dir():
                        problems.append(Problem(
                            str(entry), None,
                            "not inside a locale directory (such as zh-CN/ or en/); "
                            "it is never used",
                        ))
                        continue
                    spelled = normalise_locale(entry.name)
                    if spelled != entry.name:
                        problems.append(Problem(
                            str(entry), None,
                            f"locale directories are spelled like {spelled!r}; "
                            "this one is never used",
                        ))
                        continue
                    locales.add(entry.name)
                    problems.extend(self._check_locale_dir(full, entry))
            problems.extend(self._check_complete(roots, sorted(locales)))
        unique = dict.fromkeys(problems)
        return sorted(unique, key=lambda p: (p.path, p.line or 0, p.message))

    def _check_complete(self, roots: Sequence[Path], locales: Iterable[str]) -> list[Problem]:
        problems = []
        for locale in locales:
            homes = [root / locale for root in roots if (root / locale).is_dir()]
            home = homes[0] if homes else (roots[0] if roots else self.default_dir) / locale
            for kind in KINDS:
                if any((root / locale / f"{kind}.txt").is_file() for root in roots):
                    continue
                if locale == self.default_locale:
                    effect = "the default locale has none, so these mails cannot be sent"
                else:
                    effect = f"these mails fall back to {self.default_locale!r}"
                problems.append(Problem(
                    str(home / f"{kind}.txt"), None,
                    f"missing: no {kind!r} template for locale {locale!r}; {effect}",
                ))
        return problems

    def _check_locale_dir(self, view: _View, directory: Path) -> list[Problem]:
        problems: list[Problem] = []
        for path in sorted(directory.iterdir()):
            if path.name.startswith(".") or path.name.lower().startswith("readme"):
                continue
            if path.is_dir() or path.suffix not in _SUFFIXES:
                problems.append(Problem(
                    str(path), None,
                    "not a template file name (<kind>.txt, <kind>.html, or _<name>.txt / "
                    "_<name>.html for a layout or partial); it is never used",
                ))
                continue
            if is_partial(path.name):
                problems.extend(self._check_file(view, path, None, directory.name))
                continue
            kind = path.stem
            if kind not in KINDS:
                guess = difflib.get_close_matches(kind, KINDS, n=1)
                hint = f" (did you mean {guess[0]!r}?)" if guess else ""
                problems.append(Problem(
                    str(path), None,
                    f"unknown mail kind {kind!r}{hint}; it is never used. "
                    f"Kinds: {', '.join(KINDS)} (a layout or partial starts with '_')",
                ))
                continue
            if path.suffix == ".html" and not path.with_suffix(".txt").is_file():
                problems.append(Problem(
                    str(path), None,
                    f"{kind}.html is used only beside {kind}.txt in the same directory; "
                    "it is never used",
                ))
                continue
            problems.extend(self._check_file(view, path, kind, directory.name))
        return problems

    def _check_file(self, view: _View, path: Path, kind: str | None,
                    locale: str) -> list[Problem]:
        """A file with everything it extends and includes; ``kind`` None for a partial."""
        version = view.build(path)
        if version.problem is not None:
            return _blame(version, version.problem)
        problems: list[Problem] = []
        trees: dict[str, tuple[str, nodes.Template]] = {}
        for name in version.files:
            found = version.snapshot.source_of(name)
            if found is None:
                continue
            source, filename = found
            tree = view.env.parse(source, name, filename)
            trees[name] = (filename, tree)
            for node in tree.find_all(_REFERENCES):
                if not isinstance(_target_of(node), nodes.Const):
                    problems.append(Problem(
                        filename, node.lineno,
                        "write the template's name in quotes, e.g. "
                        "{% extends \"_layout.html\" %}, so it can be checked",
                    ))
        if kind is None:
            return problems

        provided = variables_of(kind)
        allowed = provided | view.env.globals.keys() | {SUBJECT_VARIABLE}
        for name, (filename, tree) in trees.items():
            unknown = meta.find_undeclared_variables(tree) - allowed
            via = "" if name == version.name else f" (in a file the {kind} mail uses)"
            for variable in sorted(unknown):
                guess = difflib.get_close_matches(variable, provided, n=1)
                hint = f" (did you mean {guess[0]!r}?)" if guess else ""
                problems.append(Problem(
                    filename, _first_use(tree, variable),
                    f"unknown variable {variable!r}{hint}{via}; the {kind} mail provides: "
                    f"{', '.join(sorted(provided))}",
                ))
        if problems:
            return problems  # rendering would only repeat them

        data = sample(kind, locale)
        context = context_of(data)
        context["locale"] = locale
        try:
            rendered = _render_parts(version, context)
        except Exception as exc:
            return _blame(version, _render_problem(version, exc))
        if len(rendered) == 2 and (
            not _subject_uses_number(trees[version.name][1])
            or f"[{data.number}]" not in rendered[0]
        ):
            problems.append(Problem(
                str(path), 1,
                "the subject must contain [{{ number }}] so replies find their ticket",
            ))
        return problems


def _subject_uses_number(tree: nodes.Template) -> bool:
    for block in tree.find_all(nodes.AssignBlock):
        target = block.target
        if isinstance(target, nodes.Name) and target.name == SUBJECT_VARIABLE:
            return any(n.name == "number" for n in block.find_all(nodes.Name))
    return False


def _blame(version: _Version, problem: Problem) -> list[Problem]:
    """The problem, plus, when it lies in a file the template uses, the template's own line."""
    if problem.path == str(version.path):
        return [problem]
    culprit = next((name for name, (path, _) in version.files.items()
                    if path is not None and str(path) == problem.path), None)
    line = None
    for edge in version.edges:
        if edge.source == version.name and (
            culprit is None or _reaches(version.edges, edge.target, culprit)
        ):
            line = edge.line
            break
    return [problem, Problem(str(version.path), line,
                             f"broken: it uses {problem.path}, which has a problem")]


def _reaches(edges: Sequence[_Edge], start: str, goal: str) -> bool:
    seen, queue = {start}, [start]
    while queue:
        current = queue.pop()
        if current == goal:
            return True
        for edge in edges:
            if edge.source == current and edge.target not in seen:
                seen.add(edge.target)
                queue.append(edge.target)
    return False


def _first_use(tree: nodes.Template, name: str) -> int | None:
    lines = [n.lineno for n in tree.find_all(nodes.Name) if n.name == name and n.ctx == "load"]
    return min(lines) if lines else None


__all__ = [
    "FILTERS",
    "SUBJECT_VARIABLE",
    "BrokenTemplate",
    "MailEnvironment",
    "MailLoader",
    "Problem",
    "RenderedMail",
    "TemplateFiles",
    "TemplateStore",
    "default_templates_dir",
    "is_partial",
    "make_environment",
    "normalise_locale",
]


def store(app: App) -> TemplateStore:
    """The app's template store: one per app, so hot reload and the last-good fallback work
    across mails."""
    return app.part(_build_store)


def _build_store(app: App) -> TemplateStore:
    return TemplateStore(Path(app.config.templates.dir), app.config.support.locale)
