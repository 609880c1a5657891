"""One way to show a time: clock.format_time for people, clock.iso_time for JSON, in logs too."""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest

from daemon.clock import format_time, iso_time
from daemon.logs import JsonFormatter, TextFormatter

AT = datetime(2023, 10, 27, 1, 30, 0, 654321, tzinfo=UTC)
SHANGHAI = ZoneInfo("Asia/Shanghai")


@pytest.mark.parametrize(("zone", "expected"), [
    (SHANGHAI, "2023-10-27 09:30:00 +08:00"),
    (UTC, "2023-10-27 01:30:00 +00:00"),
    (ZoneInfo("America/St_Johns"), "2023-10-26 23:00:00 -02:30"),
])
def test_format_time(zone: ZoneInfo, expected: str) -> None:
    assert format_time(AT, zone) == expected


def test_naive_times_are_utc_as_the_database_stores_them() -> None:
    assert format_time(AT.replace(tzinfo=None), SHANGHAI) == "2023-10-27 09:30:00 +08:00"


def test_iso_time_is_the_same_moment_for_json() -> None:
    assert iso_time(AT, SHANGHAI) == "2023-10-27T09:30:00+08:00"
    assert datetime.fromisoformat(iso_time(AT, SHANGHAI)) == AT.replace(microsecond=0)


def _record() -> logging.LogRecord:
    record = logging.LogRecord("ticketd.intake", logging.INFO, __file__, 1, "created %s",
                               ("TS20231027000001",), None)
    record.created = AT.timestamp()
    return record


def test_log_lines_use_the_support_timezone() -> None:
    line = TextFormatter(SHANGHAI).format(_record())
    assert line == "2023-10-27 09:30:00 +08:00 INFO ticketd.intake: created TS20231027000001"
    data = json.loads(JsonFormatter(SHANGHAI).format(_record()))
    assert data["at"] == "2023-10-27T09:30:00+08:00"
