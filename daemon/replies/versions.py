"""Compiled templates as frozen versions, and the views that build, reload and render them.

A :class:`Version` is one build of one kind file together with every file it uses (layout,
partials), each read once through a :class:`Snapshot` and keyed by its stat: a later edit of
the layout never changes a version, so "the last good version" stays whole. A :class:`View` is
the templates as seen through some roots (site then packaged, or packaged alone): it rebuilds
a file's version when any file it used changed or a site file now shadows a packaged one,
renders the newest, and falls back to the last good ones.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from jinja2 import (
    BaseLoader,
    ChoiceLoader,
    Template,
    TemplateNotFound,
    TemplateSyntaxError,
    nodes,
)
from jinja2.environment import Environment

from daemon.errors import TemplateError
from daemon.replies.kinds import context_of, sample
from daemon.replies.loader import (
    MISSING,
    SUBJECT_VARIABLE,
    FormatError,
    Key,
    MailLoader,
    Unchanged,
    always_fresh,
    is_partial,
    make_environment,
    stat_key,
)

KEEP_GOOD = 3  # earlier good versions kept per file, newest first
REFERENCES = (nodes.Extends, nodes.Include, nodes.Import, nodes.FromImport)


@dataclass(frozen=True)
class Problem:
    """One finding of :meth:`TemplateStore.check`; ``str()`` is ``path:line: message``."""

    path: str
    line: int | None
    message: str

    def __str__(self) -> str:
        where = f"{self.path}:{self.line}" if self.line is not None else self.path
        return f"{where}: {self.message}"


class Snapshot(BaseLoader):
    """Loads each template of one version once, through the live loaders, and keeps it.

    A version therefore never changes under a later edit of its layout: the last good version
    stays good. ``files`` records where each name was found (or that it was not) and in which
    state, which is how the store notices that a version is out of date.
    """

    def __init__(self, view: View, top: str, top_path: Path) -> None:
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
            key = uptodate.key if isinstance(uptodate, Unchanged) else stat_key(path)
            self.files[template] = (path, key)
            self._sources[template] = (source, str(path))
        source, filename = self._sources[template]
        return source, filename, always_fresh

    def source_of(self, name: str) -> tuple[str, str] | None:
        return self._sources.get(name)


@dataclass(frozen=True)
class Edge:
    source: str  # the template name that refers
    line: int
    target: str  # the template name it refers to


@dataclass(eq=False)
class Version:
    """One build of one kind file with everything it uses, frozen."""

    path: Path
    name: str
    snapshot: Snapshot
    template: Template | None = None
    problem: Problem | None = None  # why it cannot be used: does not build, or broke
    edges: list[Edge] = field(default_factory=list)
    proven: bool = False  # rendered at least once
    broken: bool = False  # failed to build, or failed before it was ever proven
    reported: bool = False  # its problem was logged
    sample_problem: Problem | None = None
    sample_checked: bool = False

    @property
    def files(self) -> dict[str, tuple[Path | None, Key]]:
        return self.snapshot.files


@dataclass
class FileState:
    current: Version | None = None
    good: list[Version] = field(default_factory=list)  # newest first


class Unrenderable(Exception):
    """No version of a file renders: the newest is broken and no earlier one helps."""

    def __init__(self, version: Version, problem: Problem, had_good: bool) -> None:
        super().__init__(str(problem))
        self.version = version
        self.problem = problem
        self.had_good = had_good


class View:
    """The templates as seen through some roots: site then packaged, or packaged alone."""

    def __init__(self, roots: Sequence[Path]) -> None:
        self.roots = list(roots)
        self.loaders = [MailLoader(root) for root in self.roots]
        self.live = ChoiceLoader(self.loaders)
        self.env = make_environment(self.live)
        self.states: dict[Path, FileState] = {}

    def where(self, name: str, pinned: Path | None = None) -> tuple[Path | None, Key]:
        """The file a name resolves to now (``pinned``: that very file), and its state."""
        if pinned is not None:
            return pinned, stat_key(pinned)
        for loader in self.loaders:
            path = loader.find(name)
            if path is not None:
                return path, stat_key(path)
        return None, MISSING

    def loader_for(self, path: Path) -> MailLoader:
        """The loader of the root a file is in (the deepest, should one root hold another)."""
        owners = [loader for loader in self.loaders if path.is_relative_to(loader.root)]
        if not owners:
            raise TemplateError(f"{path} is not under {', '.join(map(str, self.roots))}")
        return max(owners, key=lambda loader: len(loader.root.parts))

    def name_of(self, path: Path) -> str:
        return path.relative_to(self.loader_for(path).root).as_posix()

    def current(self, path: Path) -> tuple[FileState, Version]:
        """The state of a kind file and its newest version, rebuilt when anything changed."""
        state = self.states.setdefault(path, FileState())
        version = state.current
        if version is None or any(version.snapshot.where(name) != seen
                                  for name, seen in version.files.items()):
            version = self.build(path)
            state.current = version
        return state, version

    def build(self, path: Path) -> Version:
        name = self.name_of(path)
        snapshot = Snapshot(self, name, path)
        env = self.env.overlay(loader=snapshot, cache_size=-1)
        version = Version(path, name, snapshot)
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
                    ) -> tuple[tuple[str, ...], Version, Version]:
        """(parts, the version used, the newest version); raises Unrenderable."""
        state, newest = self.current(path)
        failure = newest.problem
        if not newest.broken:
            try:
                out = render_parts(newest, context)
            except Exception as exc:
                failure = render_problem(newest, exc)
                if not newest.proven:
                    newest.broken, newest.problem = True, failure
            else:
                newest.proven = True
                state.good = [newest, *(v for v in state.good if v is not newest)][:KEEP_GOOD]
                return out, newest, newest
        assert failure is not None
        for good in state.good:
            if good is newest:
                continue
            try:
                return render_parts(good, context), good, newest
            except Exception:  # an older version may fail on this data too
                continue
        raise Unrenderable(newest, failure, any(g is not newest for g in state.good))

    def sample_problem(self, version: Version, kind: str, locale: str) -> Problem | None:
        """Why the version cannot render its kind's sample data (checked once per version)."""
        if version.problem is not None:
            return version.problem
        if not version.sample_checked:
            version.sample_checked = True
            context = context_of(sample(kind, locale))
            context["locale"] = locale
            try:
                render_parts(version, context)
            except Exception as exc:
                version.sample_problem = render_problem(version, exc)
        return version.sample_problem


class _Unresolved(Exception):
    def __init__(self, problem: Problem) -> None:
        super().__init__(str(problem))
        self.problem = problem


def _walk(env: Environment, top: str, edges: list[Edge], roots: Sequence[Path]) -> None:
    """Load and parse ``top`` and every template it names, so a broken layout is found now."""
    assert env.loader is not None
    queue, seen = [top], {top}
    while queue:
        current = queue.pop(0)
        source, found_in, _ = env.loader.get_source(env, current)
        filename = found_in or current
        tree = env.parse(source, current, filename)
        for node in tree.find_all(REFERENCES):
            target = target_of(node)
            if not isinstance(target, nodes.Const) or not isinstance(target.value, str):
                continue  # a computed name: `templates check` asks for a quoted one
            dep = env.join_path(target.value, current)
            edges.append(Edge(current, node.lineno, dep))
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


def target_of(node: nodes.Node) -> nodes.Expr:
    """The template name expression of an extends, include or import tag."""
    assert isinstance(node, REFERENCES)
    return node.template


def _syntax_problem(exc: TemplateSyntaxError, path: Path) -> Problem:
    where = exc.filename or str(path)
    message = exc.message or str(exc)
    if not isinstance(exc, FormatError):
        message = f"syntax error: {message}"
    return Problem(where, exc.lineno or None, message)


def render_problem(version: Version, exc: Exception) -> Problem:
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


def render_parts(version: Version, context: dict[str, object]) -> tuple[str, ...]:
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


__all__ = [
    "KEEP_GOOD",
    "REFERENCES",
    "Edge",
    "FileState",
    "Problem",
    "Snapshot",
    "Unrenderable",
    "Version",
    "View",
    "render_parts",
    "render_problem",
    "target_of",
]
