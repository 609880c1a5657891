"""From template files to Jinja sources: the loader, the sandbox, the names.

* :class:`MailLoader` is a ``FileSystemLoader`` for one root (site or packaged); the store puts
  one per root in a ``ChoiceLoader``, site first. Files are UTF-8 (a BOM is dropped); a kind's
  ``.txt`` carries its subject on line 1, which becomes a ``{% set %}`` on the same line, so
  one file is one template, read once, with the file's line numbers. A file is up to date while
  its mtime, size and inode are unchanged.
* :class:`MailEnvironment` is the immutable sandbox (``StrictUndefined``, autoescape for
  ``.html`` only) in which ``{% extends "_layout.html" %}`` means the file in the including
  template's own locale directory.
* Files whose name starts with ``_`` are layouts and partials, not kinds (:func:`is_partial`).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

from jinja2 import (
    BaseLoader,
    FileSystemLoader,
    StrictUndefined,
    TemplateNotFound,
    TemplateSyntaxError,
)
from jinja2 import select_autoescape as _select_autoescape
from jinja2.environment import Environment
from jinja2.loaders import split_template_path
from jinja2.sandbox import ImmutableSandboxedEnvironment

from daemon.replies.filters import FILTERS

_SUBJECT_LINE = re.compile(r"subject:[ \t]*(.*)", re.IGNORECASE)

#: The variable the loader assigns a ``.txt`` file's subject line to (see :class:`MailLoader`).
SUBJECT_VARIABLE = "mail_subject_line"

Key = tuple[int, int, int]  # (mtime_ns, size, inode): a file's identity for hot reload
MISSING: Key = (-1, -1, -1)


def is_partial(name: str) -> bool:
    """Layouts and partials (``_layout.html``) are used by templates; they are not kinds."""
    return name.rpartition("/")[2].startswith("_")


class FormatError(TemplateSyntaxError):
    """A file Jinja cannot take as it is: not UTF-8, unreadable, or no proper Subject line."""


def stat_key(path: Path) -> Key:
    try:
        st = path.stat()
    except OSError:
        return MISSING
    return (st.st_mtime_ns, st.st_size, st.st_ino)


class Unchanged:
    """Jinja's ``uptodate`` callable for one file; also tells the state it was read in."""

    def __init__(self, path: Path, key: Key) -> None:
        self.path = path
        self.key = key

    def __call__(self) -> bool:
        return stat_key(self.path) == self.key


def _decode(raw: bytes, name: str, filename: str) -> str:
    try:
        text = raw.decode("utf-8-sig")  # Notepad's BOM is not part of the subject
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise FormatError("not valid UTF-8; save the file as UTF-8", line, name,
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
        raise FormatError(
            "the first line must be 'Subject: ...', then a blank line, then the body",
            1, name, filename)
    if len(lines) > 1 and lines[1].strip():
        raise FormatError("the 'Subject:' line must be followed by a blank line", 2, name,
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
        key = stat_key(path)  # before reading: an edit in between is caught next time
        try:
            raw = path.read_bytes()
        except OSError as exc:
            raise FormatError(f"cannot read: {exc.strerror or exc}", 0, template,
                               str(path)) from None
        text = _decode(raw, template, str(path))
        if path.suffix == ".txt" and not is_partial(template):
            text = _subject_as_set(environment, text, template, str(path))
        return text, str(path), Unchanged(path, key)


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


def always_fresh() -> bool:
    return True


__all__ = [
    "MISSING",
    "SUBJECT_VARIABLE",
    "FormatError",
    "Key",
    "MailEnvironment",
    "MailLoader",
    "Unchanged",
    "always_fresh",
    "is_partial",
    "make_environment",
    "stat_key",
]
