"""The Jinja filters mail templates may use (documented for admins in templates/mail/README.md).

Each one formats a value for a reader: sizes, times and spans in the mail's language, quoted
text, and plain text made safe HTML. They never reach outside the value they are given.
"""

from __future__ import annotations

import re
from datetime import date, timedelta

from jinja2 import pass_context
from jinja2.runtime import Context
from markupsafe import Markup, escape


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


__all__ = ["FILTERS", "duration", "filesize", "format_datetime", "linebreaks", "quote"]
