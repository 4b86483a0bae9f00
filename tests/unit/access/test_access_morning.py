"""A whole school morning through the pure domain: 2,000 students, 10 gates, late and absent."""

from __future__ import annotations

import time as clock
from datetime import datetime, time, timedelta

import pytest
from _access_builders import MONDAY, SCHOOL, local, schedule_data

from services.access.domain import (
    AttendanceDay,
    AttendanceDayClosed,
    CardIssued,
    CardRecord,
    Direction,
    GateTap,
    ScheduleData,
    Session,
    SessionKind,
    SetSchoolSchedule,
    StudentAbsent,
    StudentLate,
    TapReason,
    TapRecord,
    apply_schedule_command,
    class_register,
    day_key_for_tap,
    decide_tap,
    detect_absences,
    project_card,
    student_of,
)

pytestmark = pytest.mark.unit

STUDENTS = 2_000
GATES = 10
CLASSES = [f"{grade}{letter}" for grade in range(1, 11) for letter in "ABCD"]


def whole_school_schedule() -> ScheduleData:
    base = schedule_data()
    lessons = Session("lessons", SessionKind.LESSON, MONDAY.weekday(), time(8, 30), time(13, 50))
    return ScheduleData(
        base.school_id, base.timezone, base.weekdays, base.absence_cutoff, base.holidays,
        (lessons,),
    )


def expected_kind(n: int) -> str:
    if n % 23 == 0:
        return "absent"
    if n % 17 == 0:
        return "late"
    return "on_time"


def arrival(n: int) -> datetime:
    if expected_kind(n) == "late":
        return local(MONDAY, "08:31") + timedelta(seconds=(n * 37) % 1_700)
    return local(MONDAY, "07:30") + timedelta(seconds=(n * 13) % 3_540)


class School:
    """The state a store would hold, as plain dicts, and the events the domain emitted."""

    def __init__(self) -> None:
        self.schedule = apply_schedule_command(
            None, SetSchoolSchedule("setup", whole_school_schedule()), local(MONDAY, "06:00")
        ).schedule
        self.cards: dict[str, CardRecord] = {}
        self.days: dict[str, AttendanceDay] = {}
        self.taps: dict[str, TapRecord] = {}
        self.events: list[object] = []

    def issue(self, n: int) -> None:
        uid = f"UID{n:05d}"
        fact = CardIssued(
            f"iss-{n}", uid, f"{n:08d}", SCHOOL, CLASSES[n % len(CLASSES)], local(MONDAY, "00:00")
        )
        self.cards[uid] = project_card(None, fact).card

    def tap(self, tap: GateTap) -> TapRecord:
        card = self.cards.get(tap.card_uid)
        key = day_key_for_tap(tap, card, self.schedule)
        outcome = decide_tap(
            tap,
            card=card,
            schedule=self.schedule,
            day=None if key is None else self.days.get(key),
            previous=self.taps.get(tap.tap_id),
            now=tap.tapped_at + timedelta(milliseconds=50),
        )
        if not outcome.replayed:
            self.taps[tap.tap_id] = outcome.record
        if outcome.day is not None:
            self.days[outcome.day.key] = outcome.day
        self.events.extend(outcome.events)
        return outcome.record


def test_a_morning_of_two_thousand_students_yields_the_right_register_and_events() -> None:
    started = clock.perf_counter()
    school = School()
    for n in range(STUDENTS):
        school.issue(n)
    present = [n for n in range(STUDENTS) if expected_kind(n) != "absent"]
    taps = sorted(
        (
            GateTap(
                f"in-{n}", f"gate-{n % GATES}", SCHOOL, f"UID{n:05d}", Direction.IN, arrival(n)
            )
            for n in present
        ),
        key=lambda t: t.tapped_at,
    )

    decisions = [school.tap(t) for t in taps]
    # Every 101st student taps a second time at another gate; one tap is redelivered.
    doubles = [
        school.tap(
            GateTap(f"again-{n}", "gate-0", SCHOOL, f"UID{n:05d}", Direction.IN,
                    arrival(n) + timedelta(seconds=20))
        )
        for n in present[::101]
    ]
    replay = school.tap(taps[0])

    assert all(d.allowed for d in decisions)
    assert {d.reason for d in doubles} == {TapReason.ANTI_PASSBACK}
    assert replay == decisions[0]
    assert len(school.taps) == len(present) + len(doubles)

    sweep = detect_absences(
        school.schedule,
        [s for c in school.cards.values() if (s := student_of(c)) is not None],
        school.days,
        MONDAY,
        local(MONDAY, "10:00"),
    )
    school.days.update({d.key: d for d in sweep.days})
    school.events.extend(sweep.events)

    afternoon = sorted(
        (
            GateTap(
                f"out-{n}", f"gate-{(n + 3) % GATES}", SCHOOL, f"UID{n:05d}", Direction.OUT,
                local(MONDAY, "13:50") + timedelta(seconds=(n * 11) % 5_400),
            )
            for n in present
        ),
        key=lambda t: t.tapped_at,
    )
    assert all(school.tap(t).allowed for t in afternoon)
    elapsed = clock.perf_counter() - started

    late_expected = {f"{n:08d}" for n in range(STUDENTS) if expected_kind(n) == "late"}
    absent_expected = {f"{n:08d}" for n in range(STUDENTS) if expected_kind(n) == "absent"}
    late_events = [e for e in school.events if isinstance(e, StudentLate)]
    absent_events = [e for e in school.events if isinstance(e, StudentAbsent)]
    closed_events = [e for e in school.events if isinstance(e, AttendanceDayClosed)]
    assert sorted(e.contract for e in late_events) == sorted(late_expected)
    assert sorted(e.contract for e in absent_events) == sorted(absent_expected)
    assert len(closed_events) == len(present)
    assert all(e.closed_by == "last_exit" for e in closed_events)

    roster = [s for c in school.cards.values() if (s := student_of(c)) is not None]
    rows = [
        row
        for class_name in CLASSES
        for row in class_register(school.schedule, roster, school.days, MONDAY, class_name)
    ]
    assert len(rows) == STUDENTS
    assert {r.contract for r in rows if r.late} == late_expected
    assert {r.contract for r in rows if r.absent} == absent_expected
    by_contract = {r.contract: r for r in rows}
    for n in (1, 17, 23, 1_999):
        row = by_contract[f"{n:08d}"]
        if expected_kind(n) == "absent":
            assert row.arrived is None and row.left is None
        else:
            assert row.arrived == school.schedule.local(arrival(n)).time()
            assert row.left is not None and row.left >= time(13, 50)
    assert elapsed < 20
