"""Times as requesters write them (zh/en), read into ISO 8601 in the support time zone.

Why this module exists: ``发生时间: 昨天下午3点`` or ``期望完成时间：10/27 9:00`` is worth
more to a handler (and to any deadline) as ``2023-10-26T15:00:00+08:00``. :func:`read_time`
reads one field value; it returns None for anything it is not sure of (``尽快``, ``ASAP``,
``上周``), and the caller keeps the text as written.

A time that depends on *when* it was written (``今天14:00``, ``昨天``, ``10/27`` without a
year, ``周五``) needs ``now``, the mail's date or the injected clock; without it such a value
stays unread. A date without a time of day reads as a date (``2023-10-27``), with a time as a
full timestamp with the zone's offset (``2023-10-27T10:15:00+08:00``).
"""

from __future__ import annotations

import re
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

__all__ = ["read_time"]

_CN_DIGITS = {"零": 0, "〇": 0, "一": 1, "二": 2, "两": 2, "三": 3, "四": 4, "五": 5, "六": 6,
              "七": 7, "八": 8, "九": 9, "十": 10}
_NUM = r"(?:\d{1,2}|[一二两三四五六七八九十]{1,3})"

_RELATIVE_DAYS = {"今天": 0, "今日": 0, "今早": 0, "今晚": 0, "今晨": 0, "昨天": -1, "昨日": -1,
                  "昨晚": -1, "前天": -2, "明天": 1, "明日": 1, "明早": 1, "后天": 2,
                  "today": 0, "tonight": 0, "this morning": 0, "this afternoon": 0,
                  "yesterday": -1, "tomorrow": 1}
_WEEKDAYS = {"一": 0, "二": 1, "三": 2, "四": 3, "五": 4, "六": 5, "日": 6, "天": 6,
             "monday": 0, "tuesday": 1, "wednesday": 2, "thursday": 3, "friday": 4,
             "saturday": 5, "sunday": 6, "mon": 0, "tue": 1, "wed": 2, "thu": 3, "fri": 4,
             "sat": 5, "sun": 6}
# Parts of the day that move an hour written 1-11 into the afternoon or evening.
_PM_WORDS = ("下午", "晚上", "傍晚", "今晚", "昨晚", "pm", "p.m.", "tonight", "this afternoon")
_AM_WORDS = ("上午", "早上", "早晨", "凌晨", "今早", "明早", "今晨", "am", "a.m.", "this morning")

_YMD = re.compile(r"(?<!\d)(\d{4})\s*[-/.年]\s*(\d{1,2})\s*[-/.月]\s*(\d{1,2})\s*[日号]?")
_MD_ZH = re.compile(rf"(?<!\d)({_NUM})\s*月\s*({_NUM})\s*[日号]")
_MD_NUM = re.compile(r"(?<![\d/.-])(\d{1,2})[/-](\d{1,2})(?![\d/-])")
_CLOCK = re.compile(r"(?<!\d)(\d{1,2})[:：](\d{2})(?::\d{2})?(?!\d)")
_HOUR_ZH = re.compile(rf"({_NUM})\s*[点點时](?:\s*(半|{_NUM}\s*分?|\d{{1,2}}\s*分?))?")
_HOUR_EN = re.compile(r"(?<![\d:])(\d{1,2})(?::(\d{2}))?\s*(am|pm|a\.m\.|p\.m\.)", re.IGNORECASE)
_WEEKDAY_ZH = re.compile(r"(本|这|下|上)?(?:个)?(?:周|星期|礼拜)([一二三四五六日天])")
_WEEKDAY_EN = re.compile(r"\b(next|this|last)?\s*(monday|tuesday|wednesday|thursday|friday|"
                         r"saturday|sunday|mon|tue|wed|thu|fri|sat|sun)\b", re.IGNORECASE)


def _number(text: str) -> int:
    """``12`` or ``十二`` / ``二十三`` as an int."""
    if text.isdigit():
        return int(text)
    if "十" in text:
        tens, _, ones = text.partition("十")
        return (_CN_DIGITS.get(tens, 1) if tens else 1) * 10 + (_CN_DIGITS.get(ones, 0)
                                                                  if ones else 0)
    value = 0
    for char in text:
        value = value * 10 + _CN_DIGITS.get(char, 0)
    return value


def _time_of_day(text: str) -> time | None:
    """The clock time a value names: ``14:00``, ``下午3点``, ``3点半``, ``9am``."""
    lowered = text.lower()
    hour: int | None = None
    minute = 0
    if match := _CLOCK.search(text):
        hour, minute = int(match.group(1)), int(match.group(2))
    elif match := _HOUR_EN.search(text):
        hour, minute = int(match.group(1)), int(match.group(2) or 0)
        lowered += " " + match.group(3).lower()
    elif match := _HOUR_ZH.search(text):
        hour = _number(match.group(1))
        rest = (match.group(2) or "").replace("分", "").strip()
        minute = 30 if rest == "半" else (_number(rest) if rest else 0)
    if hour is None:
        return None
    if any(w in lowered for w in _PM_WORDS) and 1 <= hour < 12:
        hour += 12
    elif any(w in lowered for w in _AM_WORDS) and hour == 12:
        hour = 0
    if not (0 <= hour <= 23 and 0 <= minute <= 59):
        return None
    return time(hour, minute)


def _day(text: str, today: date | None) -> date | bool | None:
    """The calendar day a value names; False when it names none, None when it needs ``now``."""
    try:
        if match := _YMD.search(text):
            return date(int(match.group(1)), int(match.group(2)), int(match.group(3)))
        lowered = text.lower()
        if match := _MD_ZH.search(text) or _MD_NUM.search(text):
            if today is None:
                return None
            day = date(today.year, _number(match.group(1)), _number(match.group(2)))
            # "12/30" written on 2 January is last year's 30 December.
            if (day - today).days > 180:
                day = day.replace(year=day.year - 1)
            elif (today - day).days > 180:
                day = day.replace(year=day.year + 1)
            return day
    except ValueError:
        return False
    for word, offset in _RELATIVE_DAYS.items():
        if word in lowered:
            return None if today is None else today + timedelta(days=offset)
    weekday = _WEEKDAY_ZH.search(text)
    week_en = _WEEKDAY_EN.search(text)
    if weekday or week_en:
        if today is None:
            return None
        if weekday:
            which, target = weekday.group(1) or "", _WEEKDAYS[weekday.group(2)]
            which = {"下": "next", "上": "last"}.get(which, "this")
        else:
            assert week_en is not None
            which = (week_en.group(1) or "this").lower()
            target = _WEEKDAYS[week_en.group(2).lower()]
        monday = today - timedelta(days=today.weekday())
        shift = {"next": 7, "last": -7}.get(which, 0)
        return monday + timedelta(days=target + shift)
    return False


def read_time(text: str, zone: ZoneInfo, now: datetime | None = None) -> str | None:
    """``text`` as an ISO 8601 date or timestamp in ``zone``, or None when it is not one.

    ``now`` resolves relative days (``今天``, ``昨天下午3点``, ``周五``) and years left out
    (``10/27 9:00``); when it is None, such values are not read.
    """
    today = now.astimezone(zone).date() if now is not None else None
    day = _day(text, today)
    clock = _time_of_day(text)
    if day is False:
        # A bare time of day ("14:00") is today's only when the writer's day is known.
        if clock is None or today is None or not _only_a_time(text):
            return None
        day = today
    if day is None or isinstance(day, bool):
        return None
    if clock is None:
        return day.isoformat()
    return datetime.combine(day, clock, tzinfo=zone).isoformat()


def _only_a_time(text: str) -> bool:
    """Whether ``text`` is nothing but a time of day (``14:00``, ``下午3点``)."""
    rest = _CLOCK.sub("", _HOUR_EN.sub("", _HOUR_ZH.sub("", text)))
    for word in (*_PM_WORDS, *_AM_WORDS, "左右", "大约", "约", "中午", "around", "at", "about"):
        rest = rest.replace(word, "")
    return not rest.strip(" ，,。.")
