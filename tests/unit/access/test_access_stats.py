from __future__ import annotations

import csv
import io
import xml.etree.ElementTree as ET
from datetime import date, time, timedelta

import pytest
from _access_builders import HOLIDAY, MONDAY, SCHOOL, local, make_schedule

from services.access.domain import (
    AttendanceDay,
    Direction,
    ManualEntry,
    Passage,
    PassageSource,
    Student,
    arrival_chart_svg,
    average_local_time,
    class_register,
    month_bounds,
    record_manual_entry,
    register_csv,
    student_day_rows,
    student_month,
    student_week,
    summary_csv,
    week_bounds,
)

pytestmark = pytest.mark.unit

SCHEDULE = make_schedule()
ANNA = Student("11111111", SCHOOL, "5A")
BORIS = Student("22222222", SCHOOL, "5A")
VERA = Student("33333333", SCHOOL, "5A")
GLEB = Student("44444444", SCHOOL, "5B")
SVG = "{http://www.w3.org/2000/svg}"


def attended(student: Student, day: date, arrive: str, leave: str | None = None) -> AttendanceDay:
    record = AttendanceDay.open(student, day)
    pid = f"{student.contract}-{day}"
    entry = Passage(f"{pid}-in", Direction.IN, local(day, arrive), PassageSource.TAP)
    record.record(entry, SCHEDULE)
    if leave is not None:
        record.record(
            Passage(f"{pid}-out", Direction.OUT, local(day, leave), PassageSource.TAP),
            SCHEDULE,
        )
    return record


def test_a_class_register_lists_arrival_exit_late_and_absent_per_student() -> None:
    days = {
        d.key: d
        for d in (
            attended(ANNA, MONDAY, "08:12", "14:03"),
            attended(BORIS, MONDAY, "08:47"),
            attended(GLEB, MONDAY, "08:00"),
        )
    }

    rows = class_register(SCHEDULE, [VERA, BORIS, ANNA, GLEB], days, MONDAY, "5A")

    assert [(r.contract, r.arrived, r.left, r.late, r.absent) for r in rows] == [
        ("11111111", time(8, 12), time(14, 3), False, False),
        ("22222222", time(8, 47), None, True, False),
        ("33333333", None, None, False, True),
    ]
    assert rows[0].arrived_at == local(MONDAY, "08:12")
    assert rows[2].left_at is None


def test_a_register_includes_a_day_record_of_the_class_missing_from_the_roster() -> None:
    record = attended(ANNA, MONDAY, "08:12")

    rows = class_register(SCHEDULE, [], {record.key: record}, MONDAY, "5A")

    assert [r.contract for r in rows] == ["11111111"]


def test_a_register_marks_a_guard_admitted_student_as_manual() -> None:
    outcome = record_manual_entry(
        None, SCHEDULE, ANNA,
        ManualEntry("m1", SCHOOL, ANNA.contract, "g1", "forgot card", local(MONDAY, "08:05")),
        local(MONDAY, "08:06"),
    )
    assert outcome.day is not None

    rows = class_register(SCHEDULE, [ANNA], {outcome.day.key: outcome.day}, MONDAY, "5A")

    assert rows[0].manual is True


def test_the_register_csv_has_a_header_and_one_line_per_student() -> None:
    days = {d.key: d for d in (attended(ANNA, MONDAY, "08:12", "14:03"),)}
    rows = class_register(SCHEDULE, [ANNA, BORIS], days, MONDAY, "5A")

    parsed = list(csv.reader(io.StringIO(register_csv(rows))))

    assert parsed == [
        ["date", "contract", "class", "arrived", "left", "late", "absent", "manual"],
        ["2025-09-01", "11111111", "5A", "08:12", "14:03", "no", "no", "no"],
        ["2025-09-01", "22222222", "5A", "", "", "no", "yes", "no"],
    ]


def test_a_week_counts_present_late_and_absent_days_up_to_now() -> None:
    days = [
        attended(ANNA, MONDAY, "08:10"),
        attended(ANNA, MONDAY + timedelta(days=1), "08:40"),
        attended(ANNA, MONDAY + timedelta(days=3), "08:20"),
        attended(ANNA, MONDAY + timedelta(days=5), "10:00"),
    ]
    friday_morning = local(MONDAY + timedelta(days=4), "09:00")

    week = student_week(SCHEDULE, ANNA.contract, days, MONDAY + timedelta(days=2), friday_morning)

    assert (week.start, week.end) == (MONDAY, MONDAY + timedelta(days=6))
    assert week.lesson_days == 4  # Friday's cut-off has not passed yet
    assert week.days_present == 4  # including the Saturday club
    assert week.days_absent == 1
    assert week.late_count == 1
    assert week.average_arrival == time(8, 47, 30)


def test_a_month_excludes_holidays_from_lesson_days() -> None:
    november = [attended(ANNA, date(2025, 11, 3), "08:00")]

    december = local(date(2025, 12, 1), "00:00")

    month = student_month(SCHEDULE, ANNA.contract, november, 2025, 11, december)

    assert HOLIDAY.month == 11
    assert month.lesson_days == 19  # 20 weekdays in November 2025, minus the holiday
    assert month.days_present == 1
    assert month.days_absent == 18


def test_the_average_arrival_rounds_half_a_second_up() -> None:
    arrivals = [local(MONDAY, "08:00:00"), local(MONDAY, "08:00:01")]

    assert average_local_time(SCHEDULE, arrivals) == time(8, 0, 1)
    assert average_local_time(SCHEDULE, []) is None


def test_the_summary_csv_renders_each_period() -> None:
    days = [attended(ANNA, MONDAY, "08:10")]
    week = student_week(SCHEDULE, ANNA.contract, days, MONDAY, local(MONDAY, "12:00"))

    parsed = list(csv.reader(io.StringIO(summary_csv([week]))))

    assert parsed[0][0] == "contract"
    assert parsed[1] == ["11111111", "2025-09-01", "2025-09-07", "1", "1", "0", "0", "08:10"]


def test_a_students_day_lines_cover_elapsed_lesson_days_and_present_days() -> None:
    days = [attended(ANNA, MONDAY + timedelta(days=1), "08:10")]
    start, end = week_bounds(MONDAY)

    rows = student_day_rows(SCHEDULE, ANNA, days, start, end, local(MONDAY + timedelta(2), "11:00"))

    assert [(r.day.day, r.absent) for r in rows] == [(1, True), (2, False), (3, True)]


def september_days() -> list[AttendanceDay]:
    start, end = month_bounds(2025, 9)
    result = []
    for n, day in enumerate(SCHEDULE.school_days(start, end)):
        if n % 5 == 4:
            continue  # absent
        minute = 10 + (n * 7) % 40
        result.append(attended(ANNA, day, f"08:{minute:02d}", "14:00"))
    return result


def test_the_arrival_chart_is_valid_svg_with_one_point_per_present_day() -> None:
    days = september_days()

    svg = arrival_chart_svg(SCHEDULE, ANNA.contract, days, 2025, 9)

    root = ET.fromstring(svg.encode("utf-8"))
    assert root.tag == f"{SVG}svg"
    circles = [c for c in root.iter(f"{SVG}circle") if "arrival" in c.get("class", "").split()]
    assert len(circles) == len(days)
    late = [c for c in circles if "late" in c.get("class", "").split()]
    assert len(late) == sum(1 for d in days if d.is_late(SCHEDULE))
    lessons = [ln for ln in root.iter(f"{SVG}line") if ln.get("class") == "first-lesson"]
    assert len(lessons) == len(SCHEDULE.school_days(*month_bounds(2025, 9)))
    labels = {t.text for t in root.iter(f"{SVG}text") if t.get("class") == "y-label"}
    assert "08:30" in labels
    x_labels = [t.text for t in root.iter(f"{SVG}text") if t.get("class") == "x-label"]
    assert x_labels == [str(n) for n in range(1, 31)]
    assert root.find(f"{SVG}title") is not None


def test_a_later_arrival_is_drawn_higher_on_the_chart() -> None:
    days = [attended(ANNA, MONDAY, "08:00"), attended(ANNA, MONDAY + timedelta(1), "08:50")]

    root = ET.fromstring(arrival_chart_svg(SCHEDULE, ANNA.contract, days, 2025, 9))

    early, late = (float(c.get("cy", "0")) for c in root.iter(f"{SVG}circle"))
    assert late < early


def test_an_empty_month_still_renders_a_valid_chart_without_points() -> None:
    root = ET.fromstring(arrival_chart_svg(SCHEDULE, "<&>", [], 2025, 9))

    assert list(root.iter(f"{SVG}circle")) == []
    title = root.find(f"{SVG}title")
    assert title is not None and "<&>" in (title.text or "")
