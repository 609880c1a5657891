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

Where the parts live: :mod:`~daemon.replies.loader` (files to Jinja sources, the sandbox),
:mod:`~daemon.replies.versions` (frozen versions, hot reload, last good),
:mod:`~daemon.replies.filters` (the filters admins use); this module finds templates, renders
a mail with its fallbacks, and checks.
"""

from __future__ import annotations

import difflib
import logging
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from jinja2 import meta, nodes

import daemon
from daemon.errors import TemplateError
from daemon.replies.filters import FILTERS, filesize, format_datetime
from daemon.replies.kinds import KINDS, context_of, kind_class, sample, variables_of
from daemon.replies.loader import (
    SUBJECT_VARIABLE,
    MailEnvironment,
    MailLoader,
    is_partial,
    make_environment,
)
from daemon.replies.versions import (
    REFERENCES,
    Edge,
    FileState,
    Problem,
    Unrenderable,
    Version,
    View,
    render_parts,
    render_problem,
    target_of,
)

if TYPE_CHECKING:  # a composing worker imports this module without the app's database
    from daemon.app import App

_LOG = logging.getLogger("ticketd.templates")

_LOCALE_ALIASES = {"zh": "zh-CN", "zh-hans": "zh-CN", "zh-chs": "zh-CN", "zh-hans-cn": "zh-CN"}
_SUFFIXES = (".txt", ".html")


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
        self._full: View | None = None
        self._packaged: View | None = None
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

    def _views(self) -> tuple[View, View | None]:
        """The view through every root, and the packaged-only fallback when there is a site."""
        roots = tuple(self.roots())
        if self._full is None or roots != self._views_for:
            self._views_for = roots
            self._full = View(roots)
            packaged = tuple(r for r in roots if r == self.default_dir)
            self._packaged = View(packaged) if packaged and packaged != roots else None
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
            except Unrenderable as exc:
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
            except (Unrenderable, TemplateError) as exc:
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

    def _render_with(self, view: View, files: TemplateFiles,
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

    def _report(self, version: Version, problem: Problem, consequence: str) -> None:
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

    def _fallback_of(self, state: FileState, version: Version, kind: str, locale: str,
                     packaged: View | None) -> str:
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

    def _check_locale_dir(self, view: View, directory: Path) -> list[Problem]:
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

    def _check_file(self, view: View, path: Path, kind: str | None,
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
            for node in tree.find_all(REFERENCES):
                if not isinstance(target_of(node), nodes.Const):
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
            rendered = render_parts(version, context)
        except Exception as exc:
            return _blame(version, render_problem(version, exc))
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


def _blame(version: Version, problem: Problem) -> list[Problem]:
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


def _reaches(edges: Sequence[Edge], start: str, goal: str) -> bool:
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
    "filesize",
    "format_datetime",
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
