from __future__ import annotations

from datetime import time, timedelta

import pytest
from _access_builders import (
    HOLIDAY,
    MONDAY,
    OTHER_SCHOOL,
    SCHOOL,
    local,
    make_card,
    make_schedule,
    make_tap,
)

from services.access.domain import (
    AttendanceDay,
    AttendanceDayClosed,
    ClosedBy,
    Direction,
    DomainEvent,
    IdempotencyConflict,
    InvalidInput,
    ManualEntry,
    ManualEntryRecorded,
    ManualEntryRejected,
    Passage,
    PassageSource,
    Student,
    StudentAbsent,
    StudentEntered,
    StudentLate,
    StudentNotInAtLessonStart,
    TapReason,
    ValidationReason,
    close_finished_days,
    day_key,
    decide_tap,
    detect_absences,
    detect_missing_at_lesson_start,
    record_manual_entry,
)

pytestmark = pytest.mark.unit

SCHEDULE = make_schedule()
STUDENT = Student("12345678", SCHOOL, "5A")
WEDNESDAY = MONDAY + timedelta(days=2)


def tap_in(day: AttendanceDay, hhmm: str, pid: str) -> list[DomainEvent]:
    passage = Passage(pid, Direction.IN, local(day.day, hhmm), PassageSource.TAP)
    return day.record(passage, SCHEDULE)


def tap_out(day: AttendanceDay, hhmm: str, pid: str) -> list[DomainEvent]:
    passage = Passage(pid, Direction.OUT, local(day.day, hhmm), PassageSource.TAP)
    return day.record(passage, SCHEDULE)


def test_an_entry_before_the_first_lesson_is_not_late() -> None:
    day = AttendanceDay.open(STUDENT, MONDAY)

    events = tap_in(day, "08:30", "t1")

    assert [type(e) for e in events] == [StudentEntered]
    assert day.is_late(SCHEDULE) is False


def test_an_entry_one_second_after_the_bell_is_late_by_one_minute() -> None:
    day = AttendanceDay.open(STUDENT, MONDAY)

    events = tap_in(day, "08:30:01", "t1")

    late = [e for e in events if isinstance(e, StudentLate)]
    assert len(late) == 1
    assert late[0].minutes_late == 1
    assert late[0].lesson_start == time(8, 30)
    assert day.late_reported is True


def test_late_is_reported_once_per_day_even_after_leaving_and_coming_back() -> None:
    day = AttendanceDay.open(STUDENT, MONDAY)
    tap_in(day, "09:10", "t1")
    tap_out(day, "10:00", "t2")

    events = tap_in(day, "10:30", "t3")

    assert not any(isinstance(e, StudentLate) for e in events)


def test_nobody_is_late_on_a_day_without_lessons() -> None:
    saturday = MONDAY + timedelta(days=5)
    day = AttendanceDay.open(STUDENT, saturday)

    events = day.record(
        Passage("t1", Direction.IN, local(saturday, "11:00"), PassageSource.TAP), SCHEDULE
    )

    assert not any(isinstance(e, StudentLate) for e in events)


def test_a_passage_recorded_twice_is_kept_once() -> None:
    day = AttendanceDay.open(STUDENT, MONDAY)
    tap_in(day, "08:00", "t1")

    assert tap_in(day, "08:00", "t1") == []
    assert len(day.passages) == 1


def test_a_passage_id_reused_with_another_time_is_a_conflict() -> None:
    day = AttendanceDay.open(STUDENT, MONDAY)
    tap_in(day, "08:00", "t1")

    with pytest.raises(IdempotencyConflict):
        tap_in(day, "08:05", "t1")


def test_a_late_delivered_passage_lands_in_time_order() -> None:
    day = AttendanceDay.open(STUDENT, MONDAY)
    tap_in(day, "08:00", "t1")
    tap_in(day, "12:30", "t3")
    tap_out(day, "12:00", "t2")

    assert [p.passage_id for p in day.passages] == ["t1", "t2", "t3"]
    assert day.inside is True
    assert day.exits_without_entry == 0


def manual(at_hhmm: str, entry_id: str = "m-1", school_id: str = SCHOOL) -> ManualEntry:
    return ManualEntry(
        entry_id, school_id, STUDENT.contract, "guard-7", "forgot card", local(MONDAY, at_hhmm)
    )


def test_a_manual_entry_counts_as_presence_and_is_audited() -> None:
    command = manual("08:10")

    outcome = record_manual_entry(None, SCHEDULE, STUDENT, command, local(MONDAY, "08:11"))

    assert outcome.day is not None and outcome.day.present
    assert outcome.day.passages[0].source is PassageSource.MANUAL
    audit = outcome.events[0]
    assert isinstance(audit, ManualEntryRecorded)
    assert (audit.guard_id, audit.reason) == ("guard-7", "forgot card")
    entered = [e for e in outcome.events if isinstance(e, StudentEntered)]
    assert entered[0].source == "manual"


def test_a_card_entry_after_a_manual_entry_is_denied_as_anti_passback() -> None:
    day = record_manual_entry(
        None, SCHEDULE, STUDENT, manual("08:10"), local(MONDAY, "08:11")
    ).day
    card = make_card()
    tap_time = local(MONDAY, "08:20")

    outcome = decide_tap(
        make_tap(tap_time), card=card, schedule=SCHEDULE, day=day, previous=None,
        now=tap_time,
    )

    assert outcome.record.reason is TapReason.ANTI_PASSBACK


def test_a_late_manual_entry_reports_late() -> None:
    outcome = record_manual_entry(None, SCHEDULE, STUDENT, manual("09:00"), local(MONDAY, "09:00"))

    assert any(isinstance(e, StudentLate) for e in outcome.events)


def test_a_repeated_manual_entry_is_a_no_op() -> None:
    first = record_manual_entry(None, SCHEDULE, STUDENT, manual("08:10"), local(MONDAY, "08:11"))

    again = record_manual_entry(
        first.day, SCHEDULE, STUDENT, manual("08:10"), local(MONDAY, "18:00")
    )

    assert again.replayed is True
    assert again.events == ()
    assert first.day is not None and len(first.day.passages) == 1


def test_a_manual_entry_id_reused_with_another_time_is_a_conflict() -> None:
    first = record_manual_entry(None, SCHEDULE, STUDENT, manual("08:10"), local(MONDAY, "08:11"))

    with pytest.raises(IdempotencyConflict):
        record_manual_entry(first.day, SCHEDULE, STUDENT, manual("08:12"), local(MONDAY, "08:13"))


def test_a_manual_entry_for_an_unknown_student_is_rejected() -> None:
    with pytest.raises(ManualEntryRejected) as caught:
        record_manual_entry(None, SCHEDULE, None, manual("08:10"), local(MONDAY, "08:11"))
    assert caught.value.reason is ValidationReason.UNKNOWN_STUDENT


def test_a_manual_entry_at_another_school_is_rejected() -> None:
    command = manual("08:10", school_id=OTHER_SCHOOL)

    with pytest.raises(ManualEntryRejected) as caught:
        record_manual_entry(None, SCHEDULE, STUDENT, command, local(MONDAY, "08:11"))
    assert caught.value.reason is ValidationReason.OTHER_SCHOOL


def test_a_manual_entry_dated_in_the_future_is_invalid() -> None:
    with pytest.raises(InvalidInput) as caught:
        record_manual_entry(None, SCHEDULE, STUDENT, manual("09:00"), local(MONDAY, "08:00"))
    assert caught.value.reason is ValidationReason.FUTURE_TIME


ROSTER = [Student(f"100000{n:02d}", SCHOOL, "5A") for n in range(5)]


def test_nobody_is_marked_absent_before_the_cut_off() -> None:
    sweep = detect_absences(SCHEDULE, ROSTER, {}, MONDAY, local(MONDAY, "09:59:59"))

    assert sweep.events == ()


def test_students_without_an_entry_by_the_cut_off_are_marked_absent_once() -> None:
    present = AttendanceDay.open(ROSTER[0], MONDAY)
    tap_in(present, "08:00", "t1")
    days = {present.key: present}

    sweep = detect_absences(SCHEDULE, ROSTER, days, MONDAY, local(MONDAY, "10:00"))
    days |= {d.key: d for d in sweep.days}
    again = detect_absences(SCHEDULE, ROSTER, days, MONDAY, local(MONDAY, "10:05"))

    absent = {e.contract for e in sweep.events if isinstance(e, StudentAbsent)}
    assert absent == {s.contract for s in ROSTER[1:]}
    assert again.events == ()
    assert all(days[day_key(s.contract, MONDAY)].absence_reported for s in ROSTER[1:])


def test_nobody_is_absent_on_a_holiday_or_a_weekend() -> None:
    saturday = MONDAY + timedelta(days=5)

    assert detect_absences(SCHEDULE, ROSTER, {}, HOLIDAY, local(HOLIDAY, "12:00")).events == ()
    assert detect_absences(SCHEDULE, ROSTER, {}, saturday, local(saturday, "12:00")).events == ()


def test_students_not_in_when_the_first_lesson_begins_are_reported_once() -> None:
    present = AttendanceDay.open(ROSTER[0], MONDAY)
    tap_in(present, "08:29", "t1")
    days = {present.key: present}

    early = detect_missing_at_lesson_start(SCHEDULE, ROSTER, days, MONDAY,
                                           local(MONDAY, "08:29:59"))
    sweep = detect_missing_at_lesson_start(SCHEDULE, ROSTER, days, MONDAY, local(MONDAY, "08:30"))
    days |= {d.key: d for d in sweep.days}
    again = detect_missing_at_lesson_start(SCHEDULE, ROSTER, days, MONDAY,
                                           local(MONDAY, "08:35"))

    assert early.events == ()
    missing = [e for e in sweep.events if isinstance(e, StudentNotInAtLessonStart)]
    assert {e.contract for e in missing} == {s.contract for s in ROSTER[1:]}
    assert {e.lesson_start_at for e in missing} == {local(MONDAY, "08:30")}
    assert again.events == ()
    # the marker survives the store: a rerun of the sweep after a restart emits nothing
    reloaded = {k: AttendanceDay.from_doc(v.to_doc()) for k, v in days.items()}
    assert detect_missing_at_lesson_start(SCHEDULE, ROSTER, reloaded, MONDAY,
                                          local(MONDAY, "09:00")).events == ()


def test_nobody_is_missing_at_lesson_start_on_a_holiday_or_a_saturday_without_lessons() -> None:
    saturday = MONDAY + timedelta(days=5)

    for day in (HOLIDAY, saturday):
        assert detect_missing_at_lesson_start(SCHEDULE, ROSTER, {}, day,
                                              local(day, "12:00")).events == ()


def test_the_lessons_sweep_is_due_from_the_first_lesson_and_before_the_absence_sweep() -> None:
    assert (MONDAY, "lessons") not in SCHEDULE.due_sweeps(local(MONDAY, "08:29"))
    assert (MONDAY, "lessons") in SCHEDULE.due_sweeps(local(MONDAY, "08:30"))
    due = SCHEDULE.due_sweeps(local(MONDAY, "10:00"))
    assert due.index((MONDAY, "lessons")) < due.index((MONDAY, "absence"))


def test_a_student_arriving_after_being_reported_absent_is_present_and_late() -> None:
    sweep = detect_absences(SCHEDULE, ROSTER[:1], {}, MONDAY, local(MONDAY, "10:00"))
    day = sweep.days[0]

    events = tap_in(day, "11:00", "t1")

    assert day.present and day.absence_reported
    assert any(isinstance(e, StudentLate) for e in events)


def test_an_afternoon_exit_after_the_last_session_closes_the_day_once() -> None:
    day = AttendanceDay.open(STUDENT, MONDAY)
    tap_in(day, "08:00", "t1")
    assert not any(isinstance(e, AttendanceDayClosed) for e in tap_out(day, "12:00", "t2"))
    tap_in(day, "12:20", "t3")

    events = tap_out(day, "14:05", "t4")
    tap_in(day, "14:30", "t5")
    later = tap_out(day, "15:00", "t6")

    closed = [e for e in events if isinstance(e, AttendanceDayClosed)]
    assert len(closed) == 1
    assert closed[0].closed_by == "last_exit"
    assert closed[0].last_exit == local(MONDAY, "14:05")
    assert not any(isinstance(e, AttendanceDayClosed) for e in later)
    assert day.closed_by is ClosedBy.LAST_EXIT


def test_an_exit_before_the_chess_club_ends_does_not_close_a_wednesday() -> None:
    day = AttendanceDay.open(STUDENT, WEDNESDAY)
    day.record(Passage("t1", Direction.IN, local(WEDNESDAY, "08:00"), PassageSource.TAP), SCHEDULE)

    events = day.record(
        Passage("t2", Direction.OUT, local(WEDNESDAY, "14:00"), PassageSource.TAP), SCHEDULE
    )

    assert not any(isinstance(e, AttendanceDayClosed) for e in events)
    assert day.closed is False


def test_days_left_open_are_closed_at_the_end_of_the_day_once() -> None:
    day = AttendanceDay.open(STUDENT, WEDNESDAY)
    day.record(Passage("t1", Direction.IN, local(WEDNESDAY, "08:00"), PassageSource.TAP), SCHEDULE)
    untouched = AttendanceDay.open(ROSTER[1], WEDNESDAY)

    early = close_finished_days(SCHEDULE, [day, untouched], local(WEDNESDAY, "18:59"))
    sweep = close_finished_days(SCHEDULE, [day, untouched], local(WEDNESDAY, "19:00"))
    again = close_finished_days(SCHEDULE, [day, untouched], local(WEDNESDAY, "23:00"))

    assert early.events == ()
    assert sweep.days == (day,)
    closed = sweep.events[0]
    assert isinstance(closed, AttendanceDayClosed)
    assert closed.closed_by == "end_of_day"
    assert closed.last_exit is None
    assert again.events == ()


def test_a_day_record_round_trips_through_a_plain_document() -> None:
    day = AttendanceDay.open(STUDENT, MONDAY)
    tap_in(day, "08:40", "t1")
    tap_out(day, "14:00", "t2")
    record_manual_entry(day, SCHEDULE, STUDENT, manual("15:00"), local(MONDAY, "15:00"))

    doc = day.to_doc()

    assert AttendanceDay.from_doc(doc) == day
    assert doc["day"] == "2025-09-01"
    assert doc["key"] == "12345678:2025-09-01"
