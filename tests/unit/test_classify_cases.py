"""The reader on the table of realistic requests (tests/classify_cases.py) holds the bar."""

from __future__ import annotations

from tests.classify_cases import CASES, reader_score


def test_the_table_is_large_and_mixed() -> None:
    assert len(CASES) >= 60
    english = [c for c in CASES if c.subject.isascii()]
    assert 15 <= len(english) <= len(CASES) - 30


def test_category_and_priority_are_right_in_95_percent_and_nothing_given_is_asked() -> None:
    result = reader_score()
    assert result.category_rate >= 0.95, result.report()
    assert result.priority_rate >= 0.95, result.report()
    assert result.asked_wrongly == [], result.report()
    assert result.not_asked == [], result.report()
