"""Choose the readable body of a message, turn HTML into text, and fold away quoted history.

Why this module exists: a ticket shows what the requester *wrote*, not the MIME structure
their client produced. Three decisions live here:

* **Which part.** text/plain is preferred, unless it is empty or a stub ("This message
  requires HTML", "view this mail in your browser", fewer than ~20 visible characters, or
  under a fifth of the HTML's text) beside an HTML part with real content. A text part with
  a file name is an attachment (see :func:`daemon.intake.attachments.leaves`); only when the
  mail has no other text is it read as the body too, as a mail client shows it inline.
  Several text parts (a body plus a list footer, or a mixed message) are joined in order.
* **HTML to text** with inscriptis: paragraphs and lists kept, links as ``text (url)``,
  scripts, styles and 1x1 tracking pixels dropped. ``body_html`` keeps the HTML as sent.
* **New text versus quoted history.** mail-parser-reply (languages en + zh) finds the reply
  headers it knows; a small set of line patterns here adds what it misses on real mail:
  ``On ... wrote:`` split over two lines, ``-----Original Message-----`` and ``From:``/
  ``Sent:`` blocks with blank lines or ``*bold*`` labels, Chinese ``发件人：`` blocks with
  full-width colons (it only knows ``发件人:``), QQ/Foxmail ``---- 原始邮件 ----``, every
  ``... 写道：`` / ``在 ... 写道:`` attribution (it only knows ``2023年10月27日 ... 写道：``),
  attribution lines in other languages right above a ``>`` block, and bottom-posting
  (the new text *below* the quote). For HTML-only mail the quote containers clients mark
  (``gmail_quote``, ``blockquote type=cite``, ``divRplyFwdMsg``...) are found by inscriptis
  annotations.

Known limit: in an interleaved reply (answers between quoted lines) only the text above the
first quote is the new text; the whole message is still in ``body_text``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from email.message import Message
from typing import Any

from inscriptis import get_annotated_text
from inscriptis.css_profiles import CSS_PROFILES
from inscriptis.model.config import ParserConfig
from inscriptis.model.tag import CustomHtmlTagHandlerMapping
from mailparser_reply import EmailReplyParser

from daemon.intake.attachments import is_body_part, leaves
from daemon.intake.charsets import decode_bytes
from daemon.intake.parsed import CharsetNote

__all__ = ["Body", "extract_body", "html_to_text", "is_stub", "split_reply"]

# Only this much of a body is searched for reply headers; later history is history anyway.
SPLIT_SEARCH_LIMIT = 100_000
STUB_VISIBLE_CHARS = 20


@dataclass(frozen=True)
class Body:
    """The readable body of one message."""

    text: str
    html: str | None
    new_text: str
    quoted_text: str
    notes: tuple[CharsetNote, ...] = ()


# --- HTML -> text -------------------------------------------------------------------------

_QUOTE_LABEL = "quote"
_QUOTE_RULES = {
    "#class=gmail_quote": [_QUOTE_LABEL],
    "blockquote#type=cite": [_QUOTE_LABEL],
    "#id=divRplyFwdMsg": [_QUOTE_LABEL],
    "#id=appendonsend": [_QUOTE_LABEL],
    "#class=moz-cite-prefix": [_QUOTE_LABEL],
    "#class=yahoo_quoted": [_QUOTE_LABEL],
    "#class=protonmail_quote": [_QUOTE_LABEL],
    "#id=mail-editor-reference-message-container": [_QUOTE_LABEL],
    "#id=isForwardContent": [_QUOTE_LABEL],
}
_LINK = re.compile(r"\[((?:\[[^\[\]\n]*\]|[^\[\]\n])*)\]\(([^()\s]*)\)")
_META_CHARSET = re.compile(rb"<meta[^>]+charset\s*=\s*[\"']?\s*([A-Za-z0-9_.:-]+)", re.IGNORECASE)


def _dimension(value: Any) -> int | None:
    match = re.match(r"\s*(\d+)", str(value or ""))
    return int(match.group(1)) if match else None


def _is_pixel(attrs: dict[str, Any]) -> bool:
    width, height = _dimension(attrs.get("width")), _dimension(attrs.get("height"))
    style = str(attrs.get("style", "")).replace(" ", "").lower()
    tiny = (width is not None and width <= 1) or (height is not None and height <= 1)
    return tiny or "display:none" in style


def _image_handler(state: Any, attrs: dict[str, Any]) -> None:
    """Show an image as ``[alt]``; drop tracking pixels and images without alt text."""
    caption = str(attrs.get("alt") or attrs.get("title") or "").strip()
    if caption and not _is_pixel(attrs):
        state.tags[-1].write(f"[{caption}]")


def _config() -> ParserConfig:
    # "strict" CSS: the default "relaxed" profile indents every <div> by two spaces, which
    # Outlook and Gmail nest for every line of a mail.
    return ParserConfig(
        css=CSS_PROFILES["strict"],
        display_links=True,
        display_images=False,
        annotation_rules=_QUOTE_RULES,
        custom_html_tag_handler_mapping=CustomHtmlTagHandlerMapping(
            start_tag_mapping={"img": _image_handler}, end_tag_mapping={}
        ),
    )


_CONFIG = _config()


def _link(match: re.Match[str]) -> str:
    text, url = match.group(1).strip(), match.group(2).strip()
    bare = url.removeprefix("mailto:")
    if not text or not url or url.startswith(("#", "javascript:", "cid:")) or text in {url, bare}:
        return text  # an image-only link says nothing; a bare URL needs no repeat
    return f"{text} ({url})"


def _tidy(text: str) -> str:
    text = _LINK.sub(_link, text)
    lines = [line.rstrip() for line in text.replace("\xa0", " ").split("\n")]
    return re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip("\n")


def _render(html: str) -> tuple[str, int | None]:
    """Text of an HTML document and the offset where a marked quote container starts."""
    try:
        result = get_annotated_text(html, _CONFIG)
    except Exception:  # lxml raises ParserError/ValueError on documents it cannot read
        return "", None
    text = str(result.get("text", ""))
    starts = [int(start) for start, _end, label in result.get("label", ()) if label == _QUOTE_LABEL]
    return text, (min(starts) if starts else None)


def html_to_text(html: str) -> str:
    """Readable text of an HTML body: paragraphs, lists, ``text (url)`` links."""
    text, _ = _render(html)
    return _tidy(text)


def _html_with_quote(html: str) -> tuple[str, str | None]:
    """The text of an HTML body and, when a quote container is marked, the text before it."""
    text, start = _render(html)
    if start is None:
        return _tidy(text), None
    return _tidy(text), _tidy(text[:start])


# --- choosing the part --------------------------------------------------------------------

_STUB = re.compile(
    r"requires?\s+(an?\s+)?html|html[- ]?(capable|compatible|enabled|version|format)"
    r"|(view|read|open|see)\s+(this|the|it|our)\s+((e-?)?mail|message|newsletter|online)"
    r"|(in|with)\s+(a|your)\s+(web\s+)?browser|web\s+version|online\s+version"
    r"|不支持\s*html|需要.{0,12}html|请使用.{0,12}html|HTML\s*格式|浏览器|網頁版|网页版",
    re.IGNORECASE,
)
_URL_IN_PARENS = re.compile(r"\(\w+:[^\s()]*\)")
# A plain alternative shorter than this share of the HTML text is a stub of it ("view this
# mail in a browser", a one-line teaser) when the HTML has real content.
STUB_SHARE = 0.2
STUB_HTML_CHARS = 300


def is_stub(plain: str, html_text: str) -> bool:
    """Whether a text/plain part is only a placeholder for the HTML part beside it."""
    visible = "".join(plain.split())
    html_visible = "".join(_URL_IN_PARENS.sub("", html_text).split())
    if not html_visible or len(html_visible) <= len(visible):
        return False
    if not visible:
        return True
    if len(visible) < STUB_VISIBLE_CHARS and len(html_visible) >= 2 * STUB_VISIBLE_CHARS:
        return True
    if len(html_visible) >= STUB_HTML_CHARS and len(visible) < STUB_SHARE * len(html_visible):
        return True
    return len(visible) < 300 and bool(_STUB.search(plain))


def _unflow(text: str, delsp: bool) -> str:
    """Undo RFC 3676 format=flowed soft line breaks (same quote depth only)."""
    out: list[str] = []
    carry: str | None = None
    carry_depth = -1
    for line in text.split("\n"):
        depth = len(line) - len(line.lstrip(">"))
        content = line[depth:]
        if content.startswith(" "):
            content = content[1:]  # space stuffing
        if carry is not None and depth == carry_depth:
            content = carry + content
        elif carry is not None:
            out.append(">" * carry_depth + (" " if carry_depth else "") + carry)
        carry = None
        if content.endswith(" ") and content != "-- ":
            carry = content[:-1] if delsp else content
            carry_depth = depth
            continue
        out.append(">" * depth + (" " if depth else "") + content)
    if carry is not None:
        out.append(">" * carry_depth + (" " if carry_depth else "") + carry)
    return "\n".join(out)


def _declared_charset(part: Message, data: bytes) -> str | None:
    charset = part.get_content_charset()
    if charset is None and part.get_content_subtype() == "html":
        match = _META_CHARSET.search(data[:4096])
        if match:
            return match.group(1).decode("ascii")
    return charset


def _part_text(
    part: Message, position: int, hints: tuple[str, ...]
) -> tuple[str, CharsetNote]:
    data = part.get_payload(decode=True)
    payload = data if isinstance(data, bytes) else b""
    where = f"part {position} {part.get_content_type()}"
    text, note = decode_bytes(payload, _declared_charset(part, payload), where, hints)
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    flowed = str(part.get_param("format", "")).lower() == "flowed"
    if part.get_content_subtype() == "plain" and flowed:
        text = _unflow(text, str(part.get_param("delsp", "")).lower() == "yes")
    return text, note


def extract_body(message: Message, hints: Iterable[str] = ()) -> Body:
    """Decode the body parts of ``message`` and split the new text from the quoted history."""
    hint_tuple = tuple(hints)
    plains: list[str] = []
    htmls: list[str] = []
    notes: list[CharsetNote] = []
    named: list[tuple[Message, int]] = []
    for position, (part, body) in enumerate(leaves(message), start=1):
        if not body:
            if is_body_part(part):
                named.append((part, position))
            continue
        text, note = _part_text(part, position, hint_tuple)
        notes.append(note)
        if not text.strip():
            continue
        (htmls if part.get_content_subtype() == "html" else plains).append(text)
    if not plains and not htmls:
        # Nothing but named text parts shown inline (notes.txt, twice): they are attachments,
        # and, as in a mail client's window, also the text the sender wrote.
        for part, position in named:
            text, note = _part_text(part, position, hint_tuple)
            notes.append(note)
            if text.strip():
                (htmls if part.get_content_subtype() == "html" else plains).append(text)
    plain = "\n\n".join(p.strip("\n") for p in plains)
    html = "\n".join(htmls) if htmls else None
    html_text, html_new = _html_with_quote(html) if html else ("", None)
    if plain.strip() and not is_stub(plain, html_text):
        new, quoted = split_reply(plain)
        return Body(plain.strip("\n"), html, new, quoted, tuple(notes))
    if html_text.strip():
        new, quoted = split_reply(html_text, html_new)
        return Body(html_text, html, new, quoted, tuple(notes))
    new, quoted = split_reply(plain)
    return Body(plain.strip("\n"), html, new, quoted, tuple(notes))


# --- new text versus quoted history -------------------------------------------------------

_REPLY_PARSER = EmailReplyParser(languages=["en", "zh"])

_SEPARATOR = re.compile(
    r"^-{2,}\s*(?:original message|original|原始邮件|原始郵件|原邮件|回复的邮件)\s*-{2,}$",
    re.IGNORECASE,
)
_FORWARD = re.compile(
    r"^(?:-{2,}\s*(?:forwarded message|转发的邮件|轉寄的郵件)\s*-{2,}|begin forwarded message:)$",
    re.IGNORECASE,
)
_FROM_LINE = re.compile(r"^\*?(?:from|发件人|寄件者|發件人)\s*\*?\s*[:：]", re.IGNORECASE)
_HEADER_LINE = re.compile(
    r"^\*?(?:sent|date|to|subject|cc|发送时间|日期|时间|收件人|主题|抄送|寄件日期|收件者|主旨|"
    r"傳送時間|副本)\s*\*?\s*[:：]",
    re.IGNORECASE,
)
_ON_WROTE = re.compile(r"^on\b.{0,400}\bwrote:?$", re.IGNORECASE)
_ON_START = re.compile(r"^on\b", re.IGNORECASE)
_WROTE_END = re.compile(r"\bwrote:?$", re.IGNORECASE)
_XIEDAO = re.compile(r"写道\s*[:：]?$|寫道\s*[:：]?$")
_UNDERSCORES = re.compile(r"^[_\-=*]{8,}$")
_ATTRIBUTION_HINT = re.compile(
    r"@|\d{1,2}:\d{2}|\d{4}|wrote|写道|寫道|schrieb|написал|a écrit|escribió|scrisse|schreef",
    re.IGNORECASE,
)


def _normalized(lines: list[str]) -> list[str]:
    return [line.replace("\xa0", " ").replace("\u3000", " ").strip() for line in lines]


def _is_cite(line: str) -> bool:
    return line.startswith(">")


def _header_block(norm: list[str], index: int) -> bool:
    """``From:`` (or ``发件人：``) followed within five lines by Sent/Date/To/Subject."""
    if not _FROM_LINE.match(norm[index].lstrip("> ")):
        return False
    following = [line.lstrip("> ") for line in norm[index + 1 : index + 6]]
    return any(_HEADER_LINE.match(line) for line in following)


def _after_forward(norm: list[str], index: int) -> bool:
    for line in reversed(norm[max(0, index - 3) : index]):
        if line:
            return bool(_FORWARD.match(line))
    return False


def _two_line_attribution(norm: list[str], index: int) -> bool:
    """``On <date>, <name> <address>`` with ``wrote:`` wrapped onto the next line."""
    if not _ON_START.match(norm[index]) or index + 1 >= len(norm):
        return False
    following = norm[index + 1]
    return bool(_WROTE_END.search(following)) and len(norm[index]) + len(following) < 400


def _pattern_start(norm: list[str]) -> int | None:
    """First line where quoted history starts, by our own patterns."""
    for index, line in enumerate(norm):
        if not line:
            continue
        if _is_cite(line) or _SEPARATOR.match(line) or _XIEDAO.search(line):
            return index
        if _ON_WROTE.match(line):
            return index
        if _two_line_attribution(norm, index):
            return index
        if _header_block(norm, index) and not _after_forward(norm, index):
            return index
    return None


def _library_start(norm: list[str]) -> int | None:
    """First line where mail-parser-reply sees a reply header."""
    joined = "\n".join(norm)[:SPLIT_SEARCH_LIMIT]
    try:
        replies = _REPLY_PARSER.read(joined).replies
    except RecursionError:  # pathological input for its regular expressions
        return None
    for reply in replies:
        if reply.headers:
            offset = joined.find(reply.headers)
            if offset < 0:
                return None
            index = joined.count("\n", 0, offset)
            return None if _after_forward(norm, index) else index
    return None


def _attribution_start(norm: list[str], cite: int) -> int:
    """Move a ``>`` block's start up over the attribution line(s) right above it."""
    index = cite - 1
    if index >= 0 and not norm[index]:
        index -= 1
    if index < 0 or not norm[index].endswith((":", "：")):
        return cite
    above = norm[index - 1] if index > 0 else ""
    wrapped = above.endswith(("<", ",", "，")) or not norm[index][:1].isupper()
    if above and wrapped and _ATTRIBUTION_HINT.search(above + " " + norm[index]):
        return index - 1
    return index if _ATTRIBUTION_HINT.search(norm[index]) else cite


def _separator_above(norm: list[str], start: int) -> int:
    """Include an Outlook ``____`` rule that sits right above a header block."""
    index = start - 1
    while index >= 0 and not norm[index]:
        index -= 1
    if index >= 0 and _UNDERSCORES.match(norm[index]):
        return index
    return start


def _cite_end(norm: list[str], start: int) -> int | None:
    """End of the ``>`` block at or right after ``start`` (None when there is no such block)."""
    index = start
    limit = min(len(norm), start + 4)
    while index < limit and not _is_cite(norm[index]):
        index += 1
    if index >= limit:
        return None
    while index < len(norm) and (_is_cite(norm[index]) or not norm[index]):
        index += 1
    return index


def _quote_start(norm: list[str]) -> int | None:
    found = [i for i in (_pattern_start(norm), _library_start(norm)) if i is not None]
    if not found:
        return None
    start = min(found)
    if _is_cite(norm[start]):
        return _attribution_start(norm, start)
    return _separator_above(norm, start)


def _line_of(text: str, offset: int) -> int:
    return text.count("\n", 0, offset)


def split_reply(text: str, html_new: str | None = None) -> tuple[str, str]:
    """Split a body into (what the sender newly wrote, the quoted history).

    ``html_new`` is the text before a quote container marked in the HTML, when known.
    """
    lines = text.split("\n")
    norm = _normalized(lines)
    start = _quote_start(norm)
    if html_new is not None and html_new.strip():
        html_line = _line_of(text, len(html_new)) + 1
        start = html_line if start is None else min(start, html_line)
    if start is None:
        return text.strip(), ""
    new = "\n".join(lines[:start]).strip()
    if new:
        return new, "\n".join(lines[start:]).strip()
    end = _cite_end(norm, start)
    if end is None:
        return "", text.strip()
    rest = norm[end:]
    following = _quote_start(rest)
    stop = end + (following if following is not None else len(rest))
    new = "\n".join(lines[end:stop]).strip()
    quoted = "\n".join(lines[start:end] + lines[stop:]).strip()
    return new, quoted
