"""Mail templates: find them, compile them, reload them when edited, and check them.

Admins edit the files under ``templates/mail/`` without reading this code, so everything here
is built to keep mail flowing through their mistakes and to tell them exactly where they are:

* The search order, per kind ``K`` and requested locale ``L`` (also in
  ``templates/mail/README.md``)::

      <site_dir>/<L>/K.txt  ->  <default_dir>/<L>/K.txt            (L after normalising)
      <site_dir>/<D>/K.txt  ->  <default_dir>/<D>/K.txt            (D = the default locale)

  The directory that supplies ``K.txt`` also supplies ``K.html``, the optional HTML
  alternative, so a mail's two bodies always come from the same edit.
* ``K.txt`` is ``Subject: <one line>``, a blank line, then the body. Both parts are Jinja; the
  body is compiled with two leading newlines so error line numbers are those of the file.
* Jinja runs sandboxed (immutable) with ``StrictUndefined``: a misspelt name is an error, never
  an empty string. Only ``.html`` files are autoescaped.
* Hot reload: every render stats the files it uses (mtime, size, inode) and recompiles a file
  that changed. A version that fails to compile, or fails on its first render, is logged once
  (file and line, on ``ticketd.templates``) and the last good version keeps being used. Only
  when there never was a good version does render raise :class:`TemplateError`.
"""

from __future__ import annotations

import difflib
import logging
import re
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path

from jinja2 import StrictUndefined, Template, TemplateSyntaxError, meta, nodes, pass_context
from jinja2 import select_autoescape as _select_autoescape
from jinja2.runtime import Context
from jinja2.sandbox import ImmutableSandboxedEnvironment
from markupsafe import Markup, escape

import daemon
from daemon.errors import TemplateError
from daemon.replies.kinds import KINDS, context_of, kind_class, sample, variables_of

_LOG = logging.getLogger("ticketd.templates")

_SUBJECT_LINE = re.compile(r"subject:[ \t]*(.*)", re.IGNORECASE)
_LOCALE_ALIASES = {"zh": "zh-CN", "zh-hans": "zh-CN", "zh-chs": "zh-CN", "zh-hans-cn": "zh-CN"}
_SUFFIXES = (".txt", ".html")
_KEEP_GOOD = 3  # earlier good versions kept per file, newest first


@dataclass(frozen=True)
class RenderedMail:
    """One mail's rendered parts: a single-line subject, the text body, the optional HTML."""

    subject: str
    text: str
    html: str | None


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


def make_environment() -> ImmutableSandboxedEnvironment:
    """The one Jinja environment shape every template is compiled in."""
    env = ImmutableSandboxedEnvironment(
        undefined=StrictUndefined,
        autoescape=_select_autoescape(("html",), default_for_string=False, default=False),
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        auto_reload=False,
    )
    env.filters.update(FILTERS)
    return env


# ---------------------------------------------------------------------------------------------
# Reading one file into its Jinja sources


class _SourceProblem(Exception):
    def __init__(self, line: int | None, message: str) -> None:
        super().__init__(message)
        self.line = line
        self.message = message


def _read(path: Path) -> str:
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8-sig")  # Notepad's BOM is not part of the subject
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise _SourceProblem(line, "not valid UTF-8; save the file as UTF-8") from None
    return text.replace("\r\n", "\n").replace("\r", "\n")


def _sources(path: Path, text: str) -> tuple[str, ...]:
    """The Jinja sources of a file: (subject, body) for ``.txt``, (body,) for ``.html``.

    The body keeps two leading newlines so Jinja's line numbers are the file's.
    """
    if path.suffix != ".txt":
        return (text,)
    lines = text.split("\n")
    match = _SUBJECT_LINE.fullmatch(lines[0])
    if match is None:
        raise _SourceProblem(
            1, "the first line must be 'Subject: ...', then a blank line, then the body"
        )
    if len(lines) > 1 and lines[1].strip():
        raise _SourceProblem(2, "the 'Subject:' line must be followed by a blank line")
    return match.group(1), "\n\n" + "\n".join(lines[2:])


def _line_in(exc: BaseException, filename: str) -> int | None:
    """The template line an exception raised during rendering points at (Jinja rewrites it)."""
    line = None
    tb = exc.__traceback__
    while tb is not None:
        if tb.tb_frame.f_code.co_filename == filename:
            line = tb.tb_lineno
        tb = tb.tb_next
    return line


def _render_problem(path: Path, exc: Exception) -> Problem:
    message = getattr(exc, "message", None) or str(exc) or type(exc).__name__
    return Problem(str(path), _line_in(exc, str(path)), f"cannot render: {message}")


# ---------------------------------------------------------------------------------------------
# The store


@dataclass(eq=False)
class _Version:
    """One compiled state of one file, keyed by its stat."""

    path: Path
    key: tuple[int, int, int]
    parts: tuple[Template, ...] = ()
    problem: Problem | None = None  # set when it does not compile
    proven: bool = False  # rendered at least once
    broken: bool = False  # failed to compile, or failed before it was ever proven


@dataclass
class _FileState:
    current: _Version | None = None
    good: list[_Version] = field(default_factory=list)  # newest first


class TemplateStore:
    """Finds, compiles, hot-reloads and checks the mail templates. Safe to share across threads."""

    def __init__(
        self, site_dir: Path | None, default_locale: str, default_dir: Path | None = None
    ) -> None:
        self.site_dir = site_dir
        self.default_dir = default_dir if default_dir is not None else default_templates_dir()
        self.default_locale = normalise_locale(default_locale) or "en"
        self._env = make_environment()
        self._files: dict[Path, _FileState] = {}
        self._logged: set[tuple[Path, tuple[int, int, int]]] = set()
        self._lock = threading.Lock()

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
        names = {
            entry.name
            for root in self.roots()
            for entry in root.iterdir()
            if entry.is_dir() and normalise_locale(entry.name) == entry.name
        }
        return sorted(names)

    def resolve_locale(self, locale: str) -> str:
        """The locale directory to use for ``locale``: itself, its language, or the default."""
        wanted = normalise_locale(locale)
        known = self.locales()
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
        kind_class(kind)
        roots = self.roots()
        tried: list[str] = []
        for loc in dict.fromkeys((self.resolve_locale(locale), self.default_locale)):
            for root in roots:
                text = root / loc / f"{kind}.txt"
                if text.is_file():
                    html = text.with_suffix(".html")
                    return TemplateFiles(loc, text, html if html.is_file() else None)
                tried.append(str(text))
        raise TemplateError(f"no {kind!r} mail template; looked for {', '.join(tried) or '-'}")

    # -- rendering -------------------------------------------------------------------------

    def render(self, kind: str, locale: str, obj: object) -> RenderedMail:
        """Render the mail of ``kind`` for ``obj`` (an instance of ``KINDS[kind]``).

        Raises TemplateError when no version of a needed file ever compiled and rendered.
        """
        cls = kind_class(kind)
        if not isinstance(obj, cls):
            raise TypeError(f"a {kind!r} mail needs a {cls.__name__}, got {type(obj).__name__}")
        files = self.locate(kind, locale)
        context = context_of(obj)
        context["locale"] = files.locale  # the language of the template actually used
        with self._lock:
            subject, text = self._render_file(files.text, context)
            html = self._render_file(files.html, context)[0] if files.html else None
        return RenderedMail(subject=subject, text=text, html=html)

    def _render_file(self, path: Path, context: dict[str, object]) -> tuple[str, ...]:
        state = self._files.setdefault(path, _FileState())
        newest = self._load(path, state)
        failure: Problem | None = newest.problem
        if not newest.broken:
            try:
                out = _render_parts(newest, context)
            except Exception as exc:
                failure = _render_problem(path, exc)
                if not newest.proven:
                    newest.broken = True
                self._report(newest, failure)
            else:
                newest.proven = True
                state.good = [newest, *(v for v in state.good if v is not newest)][:_KEEP_GOOD]
                return out
        for good in state.good:
            if good is newest:
                continue
            try:
                return _render_parts(good, context)
            except Exception:  # an older version may fail on this data too
                continue
        if any(good is not newest for good in state.good):
            raise TemplateError(f"{failure} (and the earlier good versions fail too)")
        raise TemplateError(f"{failure} (no earlier good version to fall back on)")

    def _load(self, path: Path, state: _FileState) -> _Version:
        """The newest version of ``path``, recompiled only when its stat changed."""
        try:
            st = path.stat()
            key = (st.st_mtime_ns, st.st_size, st.st_ino)
        except OSError:
            key = (-1, -1, -1)
        if state.current is not None and state.current.key == key:
            return state.current
        version = self._compile(path, key)
        state.current = version
        if version.problem is not None:
            self._report(version, version.problem)
        return version

    def _compile(self, path: Path, key: tuple[int, int, int]) -> _Version:
        try:
            sources = _sources(path, _read(path))
            parts = tuple(self._compile_source(path, source) for source in sources)
        except _SourceProblem as exc:
            problem = Problem(str(path), exc.line, exc.message)
            return _Version(path, key, problem=problem, broken=True)
        except TemplateSyntaxError as exc:
            problem = Problem(str(path), exc.lineno, f"syntax error: {exc.message}")
            return _Version(path, key, problem=problem, broken=True)
        except OSError as exc:
            problem = Problem(str(path), None, f"cannot read: {exc.strerror or exc}")
            return _Version(path, key, problem=problem, broken=True)
        return _Version(path, key, parts=parts)

    def _compile_source(self, path: Path, source: str) -> Template:
        code = self._env.compile(source, path.name, str(path))
        return self._env.template_class.from_code(
            self._env, code, self._env.make_globals(None), None
        )

    def _report(self, version: _Version, problem: Problem) -> None:
        """Log a broken version once per (file, stat)."""
        marker = (version.path, version.key)
        if marker in self._logged:
            return
        self._logged.add(marker)
        state = self._files.get(version.path)
        fallback = any(v is not version for v in (state.good if state else ()))
        consequence = (
            "the last good version keeps being used until this is fixed"
            if fallback
            else "there is no good version to fall back on: these mails cannot be sent"
        )
        _LOG.error("mail template broken: %s; %s", problem, consequence)

    # -- checking --------------------------------------------------------------------------

    def check(self) -> list[Problem]:
        """Everything wrong with the templates in every root, sorted by file and line."""
        problems: list[Problem] = []
        roots = self.roots()
        locales = {self.default_locale}
        for root in roots:
            for entry in sorted(root.iterdir()):
                if entry.name.startswith(".") or entry.name.lower().startswith("readme"):
                    continue
                if not entry.is_dir():
                    problems.append(Problem(
                        str(entry), None,
                        "not inside a locale directory (such as zh-CN/ or en/); it is never used",
                    ))
                    continue
                spelled = normalise_locale(entry.name)
                if spelled != entry.name:
                    problems.append(Problem(
                        str(entry), None,
                        f"locale directories are spelled like {spelled!r}; this one is never used",
                    ))
                    continue
                locales.add(entry.name)
                problems.extend(self._check_locale_dir(entry))
        problems.extend(self._check_complete(roots, sorted(locales)))
        return sorted(problems, key=lambda p: (p.path, p.line or 0, p.message))

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

    def _check_locale_dir(self, directory: Path) -> list[Problem]:
        problems: list[Problem] = []
        for path in sorted(directory.iterdir()):
            if path.name.startswith(".") or path.name.lower().startswith("readme"):
                continue
            if path.is_dir() or path.suffix not in _SUFFIXES:
                problems.append(Problem(
                    str(path), None,
                    "not a template file name (<kind>.txt or <kind>.html); it is never used",
                ))
                continue
            kind = path.stem
            if kind not in KINDS:
                guess = difflib.get_close_matches(kind, KINDS, n=1)
                hint = f" (did you mean {guess[0]!r}?)" if guess else ""
                problems.append(Problem(
                    str(path), None,
                    f"unknown mail kind {kind!r}{hint}; it is never used. "
                    f"Kinds: {', '.join(KINDS)}",
                ))
                continue
            if path.suffix == ".html" and not path.with_suffix(".txt").is_file():
                problems.append(Problem(
                    str(path), None,
                    f"{kind}.html is used only beside {kind}.txt in the same directory; "
                    "it is never used",
                ))
                continue
            problems.extend(self._check_file(path, kind, directory.name))
        return problems

    def _check_file(self, path: Path, kind: str, locale: str) -> list[Problem]:
        try:
            sources = _sources(path, _read(path))
        except _SourceProblem as exc:
            return [Problem(str(path), exc.line, exc.message)]
        except OSError as exc:
            return [Problem(str(path), None, f"cannot read: {exc.strerror or exc}")]
        try:
            trees = [self._env.parse(source, path.name, str(path)) for source in sources]
        except TemplateSyntaxError as exc:
            return [Problem(str(path), exc.lineno, f"syntax error: {exc.message}")]

        problems: list[Problem] = []
        provided = variables_of(kind)
        allowed = provided | self._env.globals.keys()
        for tree in trees:
            unknown = meta.find_undeclared_variables(tree) - allowed
            for name in sorted(unknown):
                guess = difflib.get_close_matches(name, provided, n=1)
                hint = f" (did you mean {guess[0]!r}?)" if guess else ""
                problems.append(Problem(
                    str(path), _first_use(tree, name),
                    f"unknown variable {name!r}{hint}; the {kind} mail provides: "
                    f"{', '.join(sorted(provided))}",
                ))
        if problems:
            return problems  # rendering would only repeat them

        data = sample(kind, locale)
        version = self._compile(path, (0, 0, 0))
        if version.problem is not None:
            return [version.problem]
        context = context_of(data)
        context["locale"] = locale
        try:
            rendered = _render_parts(version, context)
        except Exception as exc:
            return [_render_problem(path, exc)]
        if len(trees) == 2 and (
            "number" not in meta.find_undeclared_variables(trees[0])
            or f"[{data.number}]" not in rendered[0]
        ):
            problems.append(Problem(
                str(path), 1,
                "the subject must contain [{{ number }}] so replies find their ticket",
            ))
        return problems


def _first_use(tree: nodes.Template, name: str) -> int | None:
    lines = [n.lineno for n in tree.find_all(nodes.Name) if n.name == name and n.ctx == "load"]
    return min(lines) if lines else None


def _render_parts(version: _Version, context: dict[str, object]) -> tuple[str, ...]:
    """Render a compiled file: (subject, text) for ``.txt``, (html,) for ``.html``."""
    outputs = tuple(part.render(context) for part in version.parts)
    if len(outputs) == 2:
        subject = " ".join(outputs[0].split())
        lines = [line.rstrip() for line in outputs[1].split("\n")]
        body = "\n".join(lines).strip("\n")
        return subject, body + "\n"
    return (outputs[0].strip() + "\n",)


__all__ = [
    "FILTERS",
    "Problem",
    "RenderedMail",
    "TemplateFiles",
    "TemplateStore",
    "default_templates_dir",
    "make_environment",
    "normalise_locale",
]
