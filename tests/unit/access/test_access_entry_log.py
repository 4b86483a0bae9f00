"""The entry log of any period and the statistics by month with the absent days: plain domain
functions over day records, no fixtures."""

from __future__ import annotations

import csv
import io
from datetime import date, timedelta

import pytest
from _access_builders import MONDAY, SCHOOL, local, make_schedule

from services.access.domain import (
    PASSAGES_SHOWN,
    AttendanceDay,
    Direction,
    InvalidInput,
    Passage,
    PassageSource,
    Student,
    check_period,
    entry_log,
    month_spans,
    student_months,
    student_summary,
    summary_csv,
)

pytestmark = pytest.mark.unit

SCHEDULE = make_schedule()
ANNA = Student("11111111", SCHOOL, "5A")
SATURDAY = MONDAY + timedelta(days=5)


def day_of(day: date, *passages: tuple[str, str]) -> AttendanceDay:
    record = AttendanceDay.open(ANNA, day)
    for n, (direction, hhmm) in enumerate(passages):
        record.record(Passage(f"{day}-{n}", Direction(direction), local(day, hhmm),
                              PassageSource.TAP, gate_id="gate-1"), SCHEDULE)
    return record


def test_a_period_ending_before_it_starts_or_longer_than_366_days_is_refused() -> None:
    check_period(MONDAY, MONDAY)
    check_period(MONDAY, MONDAY + timedelta(days=365))
    with pytest.raises(InvalidInput) as longer:
        check_period(MONDAY, MONDAY + timedelta(days=366))
    assert longer.value.reason.value == "invalid_period"
    with pytest.raises(InvalidInput):
        check_period(MONDAY, MONDAY - timedelta(days=1))


def test_months_of_a_period_are_clipped_to_it() -> None:
    assert month_spans(date(2025, 9, 15), date(2025, 11, 3)) == [
        (date(2025, 9, 15), date(2025, 9, 30)), (date(2025, 10, 1), date(2025, 10, 31)),
        (date(2025, 11, 1), date(2025, 11, 3))]
    assert month_spans(date(2025, 12, 31), date(2026, 1, 1)) == [
        (date(2025, 12, 31), date(2025, 12, 31)), (date(2026, 1, 1), date(2026, 1, 1))]


def test_the_summary_keeps_the_absent_days_it_counts() -> None:
    days = [day_of(MONDAY, ("in", "08:10")), day_of(MONDAY + timedelta(days=2), ("in", "08:40"))]
    friday = MONDAY + timedelta(days=4)
    summary = student_summary(SCHEDULE, ANNA.contract, days, MONDAY, friday,
                              local(friday, "18:00"))
    assert summary.absent_days == (MONDAY + timedelta(days=1), MONDAY + timedelta(days=3),
                                   friday)
    assert summary.days_absent == 3 and summary.late_count == 1


def test_statistics_by_month_give_present_late_and_absent_days_of_each_month() -> None:
    sept_30, oct_1, oct_2 = date(2025, 9, 30), date(2025, 10, 1), date(2025, 10, 2)
    days = [day_of(sept_30, ("in", "08:45")), day_of(oct_2, ("in", "08:00"))]
    start, end = date(2025, 9, 29), date(2025, 10, 3)
    now = local(end, "12:00")  # Friday's cut-off has passed
    sept, october = student_months(SCHEDULE, ANNA.contract, days, start, end, now)
    assert (sept.start, sept.end) == (start, sept_30)
    assert (sept.days_present, sept.late_count, sept.absent_days) == (1, 1, (start,))
    assert (october.start, october.end) == (oct_1, end)
    assert (october.days_present, october.late_count) == (1, 0)
    assert october.absent_days == (oct_1, end)

    text = summary_csv([sept, october], absent_days=True)
    rows = list(csv.reader(io.StringIO(text)))
    assert rows[0][-1] == "absent_days"
    assert rows[2][-1] == "2025-10-01 2025-10-03"
    assert "absent_days" not in summary_csv([sept])


def test_the_entry_log_lists_every_elapsed_lesson_day_and_every_day_with_a_passage() -> None:
    days = [day_of(MONDAY, ("in", "08:10"), ("out", "12:00"), ("in", "12:30"), ("out", "14:00")),
            day_of(SATURDAY, ("out", "10:00"))]  # an exit alone, on a day without lessons
    wednesday = MONDAY + timedelta(days=2)
    log = entry_log(SCHEDULE, ANNA, days, MONDAY, SATURDAY, local(wednesday, "09:00"))
    # Wednesday's cut-off (10:00) has not passed yet: not judged, not listed.
    assert [x.row.day for x in log] == [MONDAY, MONDAY + timedelta(days=1), SATURDAY]
    monday, tuesday, saturday = log
    assert [(p.direction, p.at) for p in monday.passages] == [
        (Direction.IN, local(MONDAY, "08:10")), (Direction.OUT, local(MONDAY, "12:00")),
        (Direction.IN, local(MONDAY, "12:30")), (Direction.OUT, local(MONDAY, "14:00"))]
    assert monday.row.left_at == local(MONDAY, "14:00") and not monday.row.absent
    assert tuesday.row.absent and tuesday.passages == ()
    assert not saturday.row.absent and saturday.passage_count == 1


def test_a_day_with_very_many_passages_shows_the_first_ones_and_counts_them_all() -> None:
    many = [("in" if n % 2 == 0 else "out", f"{8 + n // 60:02d}:{n % 60:02d}")
            for n in range(PASSAGES_SHOWN + 10)]
    [monday] = entry_log(SCHEDULE, ANNA, [day_of(MONDAY, *many)], MONDAY, MONDAY,
                         local(MONDAY, "20:00"))
    assert len(monday.passages) == PASSAGES_SHOWN
    assert monday.passage_count == PASSAGES_SHOWN + 10


def test_an_entry_log_longer_than_366_days_is_refused() -> None:
    with pytest.raises(InvalidInput):
        entry_log(SCHEDULE, ANNA, [], MONDAY, MONDAY + timedelta(days=400),
                  local(MONDAY, "20:00"))
