"""Ticket number format and parsing (pure)."""

from __future__ import annotations

from datetime import UTC, datetime

from daemon.ticket_numbers import NumberFormat


def test_local_date_decides_the_day() -> None:
    fmt = NumberFormat("TS", 6, "Asia/Shanghai")
    # 2023-10-26 17:00 UTC is already 2023-10-27 01:00 in Shanghai.
    assert fmt.day(datetime(2023, 10, 26, 17, 0, tzinfo=UTC)) == "20231027"
    assert fmt.format("20231027", 1) == "TS20231027000001"


def test_serial_widens_past_the_width_and_never_wraps() -> None:
    fmt = NumberFormat()
    assert fmt.format("20231027", 999999) == "TS20231027999999"
    assert fmt.format("20231027", 1000000) == "TS202310271000000"
    assert fmt.parse("TS202310271000000") == ("20231027", 1000000)


def test_find_in_subjects() -> None:
    fmt = NumberFormat()
    assert fmt.find("Re: 回复: [TS20231027000001] 打印机故障") == ["TS20231027000001"]
    assert fmt.find("答复:ts20231027000002问题") == ["TS20231027000002"]
    assert fmt.find("XTS20231027000001 and TS2023102700000") == []
    assert fmt.find("TS20231027000001 TS20231028000009") == ["TS20231027000001",
                                                             "TS20231028000009"]


def test_custom_prefix_is_escaped_and_width_honoured() -> None:
    fmt = NumberFormat("HD", 4, "UTC")
    assert fmt.format("20240101", 7) == "HD202401010007"
    assert fmt.find("[HD202401010007]") == ["HD202401010007"]
    assert fmt.parse("TS202401010007") is None
