"""Attendance statistics: pure functions over day records, with CSV and SVG renderings.

Times shown to people are local school times. "Absent" means a lesson day with no entry;
non-lesson days (weekends, holidays) are never counted absent, but an entry on one still counts
as a day present (a Saturday club).
"""

from __future__ import annotations

import calendar
import csv
import io
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from xml.sax.saxutils import escape, quoteattr

from .attendance import AttendanceDay, Passage, PassageSource, Student, day_key, local_time_of
from .common import InvalidInput, ValidationReason, require_aware, seconds_of_day, time_of_seconds
from .schedule import SchoolSchedule


@dataclass(frozen=True, slots=True)
class RegisterRow:
    """One student on one day: local arrival/exit times (and the UTC instants), late, absent."""

    day: date
    contract: str
    class_name: str
    arrived: time | None
    left: time | None
    late: bool
    absent: bool
    manual: bool
    arrived_at: datetime | None = None
    left_at: datetime | None = None


def day_row(
    schedule: SchoolSchedule, student: Student, record: AttendanceDay | None, day: date
) -> RegisterRow:
    """The register line of a student for a day; no record and a lesson day means absent."""
    if record is None:
        return RegisterRow(
            day, student.contract, student.class_name, None, None, False,
            schedule.has_lessons(day), False,
        )
    return RegisterRow(
        day=day,
        contract=record.contract,
        class_name=record.class_name,
        arrived=local_time_of(schedule, record.first_arrival),
        left=local_time_of(schedule, record.last_exit),
        late=record.is_late(schedule),
        absent=not record.present and schedule.has_lessons(day),
        manual=any(p.source is PassageSource.MANUAL for p in record.entries),
        arrived_at=record.first_arrival,
        left_at=record.last_exit,
    )


def class_register(
    schedule: SchoolSchedule,
    students: Iterable[Student],
    days: Mapping[str, AttendanceDay],
    day: date,
    class_name: str,
) -> list[RegisterRow]:
    """A class's register for a day, sorted by contract.

    ``students`` is the roster (from the card projection); ``days`` maps :func:`day_key` to day
    records. A day record of the class whose student is no longer on the roster still appears:
    the register reports what happened. Absence is only meaningful once the cut-off has passed.
    """
    roster = {
        s.contract: s
        for s in students
        if s.class_name == class_name and s.school_id == schedule.school_id
    }
    for record in days.values():
        if record.day == day and record.class_name == class_name and record.contract not in roster:
            roster[record.contract] = Student(record.contract, record.school_id, record.class_name)
    return [
        day_row(schedule, student, days.get(day_key(contract, day)), day)
        for contract, student in sorted(roster.items())
    ]


def _hhmm(value: time | None) -> str:
    return "" if value is None else value.strftime("%H:%M")


def _yes(flag: bool) -> str:
    return "yes" if flag else "no"


def register_csv(rows: Iterable[RegisterRow]) -> str:
    """CSV (RFC 4180, CRLF) with header ``date,contract,class,arrived,left,late,absent,manual``."""
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["date", "contract", "class", "arrived", "left", "late", "absent", "manual"])
    for row in rows:
        writer.writerow(
            [
                row.day.isoformat(), row.contract, row.class_name, _hhmm(row.arrived),
                _hhmm(row.left), _yes(row.late), _yes(row.absent), _yes(row.manual),
            ]
        )
    return out.getvalue()


@dataclass(frozen=True, slots=True)
class StudentSummary:
    """A student's period: lesson days elapsed, days present, absent, late, mean arrival."""

    contract: str
    start: date
    end: date
    lesson_days: int
    days_present: int
    days_absent: int
    late_count: int
    average_arrival: time | None
    absent_days: tuple[date, ...] = ()


MAX_PERIOD_DAYS = 366
"""The longest period one attendance query covers (a school year and a leap day): what bounds
its reply (one line per day at most) and the days read for it."""


def check_period(start: date, end: date, *, max_days: int = MAX_PERIOD_DAYS) -> None:
    """Refuse a period that ends before it starts or is longer than ``max_days`` days."""
    if end < start:
        raise InvalidInput(ValidationReason.INVALID_PERIOD,
                           f"date_to {end} is before date_from {start}")
    if (end - start).days + 1 > max_days:
        raise InvalidInput(ValidationReason.INVALID_PERIOD,
                           f"the period has {(end - start).days + 1} days; at most {max_days} "
                           "per request")


def _elapsed(schedule: SchoolSchedule, day: date, now: datetime) -> bool:
    """A lesson day counts once its absence cut-off has passed (today before it does not)."""
    return require_aware(now, "now") >= schedule.cutoff_at(day)


def average_local_time(schedule: SchoolSchedule, instants: Iterable[datetime]) -> time | None:
    """Mean local time of day, rounded half up to the second; None for no instants.

    Arrivals never straddle midnight, so a plain mean of seconds-since-midnight is right.
    """
    seconds = [seconds_of_day(schedule.local(at).time()) for at in instants]
    if not seconds:
        return None
    return time_of_seconds((2 * sum(seconds) + len(seconds)) // (2 * len(seconds)))


def student_summary(
    schedule: SchoolSchedule,
    contract: str,
    days: Iterable[AttendanceDay],
    start: date,
    end: date,
    now: datetime,
) -> StudentSummary:
    """Summarise ``[start, end]`` for one student, counting only days elapsed by ``now``."""
    by_day = {d.day: d for d in days if d.contract == contract and start <= d.day <= end}
    lesson_days = [d for d in schedule.school_days(start, end) if _elapsed(schedule, d, now)]
    present = [r for r in by_day.values() if r.present]
    absent = [d for d in lesson_days if d not in by_day or not by_day[d].present]
    arrivals = [r.first_arrival for r in present if r.first_arrival is not None]
    return StudentSummary(
        contract=contract,
        start=start,
        end=end,
        lesson_days=len(lesson_days),
        days_present=len(present),
        days_absent=len(absent),
        late_count=sum(1 for r in present if r.is_late(schedule)),
        average_arrival=average_local_time(schedule, arrivals),
        absent_days=tuple(sorted(absent)),
    )


def month_spans(start: date, end: date) -> list[tuple[date, date]]:
    """The calendar months ``[start, end]`` touches, each clipped to the period."""
    spans: list[tuple[date, date]] = []
    first = start
    while first <= end:
        last = min(end, month_bounds(first.year, first.month)[1])
        spans.append((first, last))
        first = last + timedelta(days=1)
    return spans


def student_months(
    schedule: SchoolSchedule,
    contract: str,
    days: Iterable[AttendanceDay],
    start: date,
    end: date,
    now: datetime,
) -> list[StudentSummary]:
    """One summary per calendar month of ``[start, end]`` (the first and last clipped to the
    period), each with its absent days; the same rules as :func:`student_summary`."""
    records = list(days)
    return [student_summary(schedule, contract, records, first, last, now)
            for first, last in month_spans(start, end)]


def week_bounds(any_day: date) -> tuple[date, date]:
    """Monday to Sunday of the ISO week containing ``any_day``."""
    monday = any_day - timedelta(days=any_day.weekday())
    return monday, monday + timedelta(days=6)


def month_bounds(year: int, month: int) -> tuple[date, date]:
    return date(year, month, 1), date(year, month, calendar.monthrange(year, month)[1])


def student_week(
    schedule: SchoolSchedule,
    contract: str,
    days: Iterable[AttendanceDay],
    any_day: date,
    now: datetime,
) -> StudentSummary:
    start, end = week_bounds(any_day)
    return student_summary(schedule, contract, days, start, end, now)


def student_month(
    schedule: SchoolSchedule,
    contract: str,
    days: Iterable[AttendanceDay],
    year: int,
    month: int,
    now: datetime,
) -> StudentSummary:
    start, end = month_bounds(year, month)
    return student_summary(schedule, contract, days, start, end, now)


def student_day_rows(
    schedule: SchoolSchedule,
    student: Student,
    days: Iterable[AttendanceDay],
    start: date,
    end: date,
    now: datetime,
) -> list[RegisterRow]:
    """Per-day lines of one student: lesson days elapsed by ``now`` and any day present."""
    by_day = {d.day: d for d in days if d.contract == student.contract and start <= d.day <= end}
    wanted = {d for d in schedule.school_days(start, end) if _elapsed(schedule, d, now)}
    wanted |= {d for d, r in by_day.items() if r.present}
    return [day_row(schedule, student, by_day.get(d), d) for d in sorted(wanted)]


def summary_csv(summaries: Iterable[StudentSummary], *, absent_days: bool = False) -> str:
    """CSV with header ``contract,from,to,lesson_days,present,absent,late,average_arrival``
    (and ``absent_days``, the dates separated by spaces, when asked)."""
    out = io.StringIO()
    writer = csv.writer(out)
    header = ["contract", "from", "to", "lesson_days", "present", "absent", "late",
              "average_arrival"]
    writer.writerow([*header, "absent_days"] if absent_days else header)
    for s in summaries:
        row: list[object] = [
            s.contract, s.start.isoformat(), s.end.isoformat(), s.lesson_days,
            s.days_present, s.days_absent, s.late_count, _hhmm(s.average_arrival),
        ]
        if absent_days:
            row.append(" ".join(d.isoformat() for d in s.absent_days))
        writer.writerow(row)
    return out.getvalue()


PASSAGES_SHOWN = 48
"""Most passages one day of the entry log lists (a day has a handful; the cap bounds the
reply whatever a broken gate recorded): ``passage_count`` still tells them all."""


@dataclass(frozen=True, slots=True)
class EntryLogDay:
    """One day of a student's entry log: the register line and the entries and exits."""

    row: RegisterRow
    passages: tuple[Passage, ...]
    passage_count: int


def entry_log(
    schedule: SchoolSchedule,
    student: Student,
    days: Iterable[AttendanceDay],
    start: date,
    end: date,
    now: datetime,
) -> list[EntryLogDay]:
    """The student's days in ``[start, end]`` by date: every lesson day elapsed by ``now``
    (absent ones too) and every day with a passage, each with its entries and exits in time
    order (at most :data:`PASSAGES_SHOWN`)."""
    check_period(start, end)
    by_day = {d.day: d for d in days if d.contract == student.contract and start <= d.day <= end}
    wanted = {d for d in schedule.school_days(start, end) if _elapsed(schedule, d, now)}
    wanted |= {d for d, r in by_day.items() if r.passages}
    log: list[EntryLogDay] = []
    for day in sorted(wanted):
        record = by_day.get(day)
        passages = tuple(record.passages) if record is not None else ()
        log.append(EntryLogDay(day_row(schedule, student, record, day),
                               passages[:PASSAGES_SHOWN], len(passages)))
    return log


# Chart geometry, in SVG user units.
_W, _H = 720, 360
_LEFT, _RIGHT, _TOP, _BOTTOM = 64, 16, 40, 52
_PLOT_W, _PLOT_H = _W - _LEFT - _RIGHT, _H - _TOP - _BOTTOM
_STEP = 30 * 60


def arrival_chart_svg(
    schedule: SchoolSchedule,
    contract: str,
    days: Iterable[AttendanceDay],
    year: int,
    month: int,
) -> str:
    """A dot-and-line chart of a student's first arrival (local time) per day of a month.

    One ``circle`` with class ``arrival`` (plus ``late`` when late) per present day, days of the
    month on x, local time on y (later is higher), a dashed ``first-lesson`` mark per lesson day.
    Hand-built SVG 1.1, standalone and well-formed XML.
    """
    start, end = month_bounds(year, month)
    n_days = end.day
    records = sorted(
        (d for d in days if d.contract == contract and start <= d.day <= end and d.present),
        key=lambda d: d.day,
    )
    points: list[tuple[date, int, bool]] = []
    for record in records:
        arrival = local_time_of(schedule, record.first_arrival)
        if arrival is not None:
            points.append((record.day, seconds_of_day(arrival), record.is_late(schedule)))
    lessons = [
        (d, seconds_of_day(t))
        for d in schedule.school_days(start, end)
        if (t := schedule.first_lesson_on(d)) is not None
    ]
    values = [s for _, s, _ in points] + [s for _, s in lessons] or [8 * 3600]
    lo = max(0, (min(values) - 15 * 60) // _STEP * _STEP)
    hi = min(24 * 3600, -(-(max(values) + 15 * 60) // _STEP) * _STEP)
    if hi - lo < 2 * _STEP:
        hi = min(24 * 3600, lo + 2 * _STEP)

    col = _PLOT_W / n_days

    def x_of(day: date) -> float:
        return _LEFT + (day.day - 0.5) * col

    def y_of(seconds: int) -> float:
        return _TOP + _PLOT_H - (seconds - lo) / (hi - lo) * _PLOT_H

    title = f"Arrival times, contract {contract}, {year:04d}-{month:02d}"
    parts = [
        '<?xml version="1.0" encoding="UTF-8"?>',
        f'<svg xmlns="http://www.w3.org/2000/svg" version="1.1" width="{_W}" height="{_H}" '
        f'viewBox="0 0 {_W} {_H}" role="img" font-family="sans-serif" font-size="11">',
        f"<title>{escape(title)}</title>",
        f'<rect x="0" y="0" width="{_W}" height="{_H}" fill="#ffffff"/>',
        f'<text x="{_W / 2:.1f}" y="22" text-anchor="middle" font-size="14">{escape(title)}</text>',
    ]
    for tick in range(lo, hi + 1, _STEP):
        y = y_of(tick)
        label = time_of_seconds(tick).strftime("%H:%M") if tick < 24 * 3600 else "24:00"
        parts.append(
            f'<line class="grid" x1="{_LEFT}" y1="{y:.1f}" x2="{_W - _RIGHT}" y2="{y:.1f}" '
            f'stroke="#e0e0e0"/>'
        )
        parts.append(
            f'<text class="y-label" x="{_LEFT - 6}" y="{y + 4:.1f}" '
            f'text-anchor="end">{label}</text>'
        )
    for n in range(1, n_days + 1):
        x = x_of(date(year, month, n))
        parts.append(
            f'<text class="x-label" x="{x:.1f}" y="{_TOP + _PLOT_H + 16}" '
            f'text-anchor="middle">{n}</text>'
        )
    for day, seconds in lessons:
        x, y = x_of(day), y_of(seconds)
        parts.append(
            f'<line class="first-lesson" x1="{x - col / 2:.1f}" y1="{y:.1f}" '
            f'x2="{x + col / 2:.1f}" y2="{y:.1f}" stroke="#d32f2f" stroke-dasharray="4 3"/>'
        )
    parts.append(
        f'<line class="axis" x1="{_LEFT}" y1="{_TOP}" x2="{_LEFT}" y2="{_TOP + _PLOT_H}" '
        f'stroke="#000000"/>'
    )
    parts.append(
        f'<line class="axis" x1="{_LEFT}" y1="{_TOP + _PLOT_H}" x2="{_W - _RIGHT}" '
        f'y2="{_TOP + _PLOT_H}" stroke="#000000"/>'
    )
    if len(points) > 1:
        coords = " ".join(f"{x_of(d):.1f},{y_of(s):.1f}" for d, s, _ in points)
        parts.append(
            f'<polyline class="arrivals" points="{coords}" fill="none" stroke="#1976d2"/>'
        )
    for day, seconds, late in points:
        css = "arrival late" if late else "arrival"
        fill = "#d32f2f" if late else "#1976d2"
        tip = f"{day.isoformat()} {time_of_seconds(seconds).strftime('%H:%M')}"
        parts.append(
            f'<circle class={quoteattr(css)} cx="{x_of(day):.1f}" cy="{y_of(seconds):.1f}" r="4" '
            f'fill="{fill}"><title>{escape(tip)}{" (late)" if late else ""}</title></circle>'
        )
    parts.append(
        f'<text x="{_LEFT + _PLOT_W / 2:.1f}" y="{_H - 12}" '
        f'text-anchor="middle">Day of month</text>'
    )
    parts.append(
        f'<text x="14" y="{_TOP + _PLOT_H / 2:.1f}" text-anchor="middle" '
        f'transform="rotate(-90 14 {_TOP + _PLOT_H / 2:.1f})">Arrival (local time)</text>'
    )
    parts.append(
        f'<text x="{_W - _RIGHT}" y="{_TOP - 6}" text-anchor="end" fill="#d32f2f">'
        f"- - first lesson</text>"
    )
    parts.append("</svg>")
    return "\n".join(parts) + "\n"
